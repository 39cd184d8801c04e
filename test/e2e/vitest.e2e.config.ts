import { defineConfig } from 'vitest/config';

// The real-node end-to-end suite: one local control plane plus a real node (containerd, kubelet,
// kube-proxy, kube-router) for the whole run. Root only; see docs/real-node.md.
//   npx vitest run --config test/e2e/vitest.e2e.config.ts
export default defineConfig({
  test: {
    name: 'e2e',
    include: ['test/e2e/**/*.e2e.ts'],
    environment: 'node',
    globalSetup: ['test/e2e/real-node-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
