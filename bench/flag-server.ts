/**
 * The engine as src/main.ts composes it (caches, controller, player API on a real port), except
 * that the wrong-flag limiter is off: the flag-throughput scenario measures checking, not
 * limiting, and the limiter cannot be switched off through the environment. Run as a child
 * process by bench/scenarios/flags.ts with the same environment as the engine.
 */
import { loadConfig } from '../src/config.js';
import { sessionService, startEngine } from '../src/engine.js';
import { buildApp } from '../src/http/app.js';
import { createTokenVerifier } from '../src/http/auth.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel, pretty: false });
  const metrics = createMetrics();
  const engine = await startEngine(config, log, { metrics });
  if (!config.tokenSecret) throw new Error('CTF_TOKEN_SECRET is required');
  const service = sessionService(engine, log);
  const app = await buildApp({ service, tokens: createTokenVerifier(config.tokenSecret), metrics, log, corsOrigins: [], rateLimit: false });
  await app.listen({ port: config.port, host: config.host });
  const shutdown = () => {
    app
      .close()
      .then(() => engine.stop())
      .then(() => process.exit(0))
      .catch(() => process.exit(1));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((err: unknown) => {
  process.stderr.write(`flag-server: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
