# syntax=docker/dockerfile:1
# challenge-engine: docker build -t challenge-engine:0.1.0 .
ARG NODE_IMAGE=node:20-bookworm-slim

# Compiles TypeScript to dist/ with the full dependency tree.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY web ./web
COPY scripts/build-web.ts ./scripts/
RUN npm run build

# Runtime dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
# glibc malloc arenas: see ENGINE_ENV in scripts/lib/engine-command.ts.
ENV MALLOC_ARENA_MAX=2
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# package.json carries "type": "module", which dist/*.js needs.
COPY package.json ./
# Numeric, so runAsNonRoot can verify it without an /etc/passwd entry.
USER 65532:65532
EXPOSE 8080
# V8 heap flags: see scripts/lib/engine-command.ts.
CMD ["node", "--max-semi-space-size=8", "--heap-growing-percent=20", "dist/main.js"]
