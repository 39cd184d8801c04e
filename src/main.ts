/**
 * Composition root: configuration -> kube clients -> caches and leader-elected controller ->
 * HTTP API -> graceful shutdown. Every replica serves the API; only the leader reconciles.
 */
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { loadConfig, ConfigError } from './config.js';
import { createLogger } from './log.js';
import { createMetrics } from './metrics.js';
import { sessionService, startEngine } from './engine.js';
import { buildApp } from './http/app.js';
import { createTokenVerifier } from './http/auth.js';
import { combinedVerifier, createOidcVerifier } from './http/oidc.js';
import { defaultPageDir } from './http/routes/page.js';
import { webhookTargetProblem } from './webhooks/target.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) exitAtStart(err.message, 2);
    throw err;
  }
  if (config.webhook && !config.webhook.allowPrivate) {
    const problem = await webhookTargetProblem(config.webhook.url);
    if (problem) exitAtStart(`invalid configuration:\n  CTF_WEBHOOK_URL: ${problem}; set CTF_WEBHOOK_ALLOW_PRIVATE=true if that receiver is meant`, 2);
  }
  const log = createLogger({ level: config.logLevel, pretty: config.logPretty });
  const metrics = createMetrics();
  log.info({ namespace: config.namespace, identity: config.identity, controller: config.runController, api: config.runApi }, 'Starting challenge-engine');
  const engine = await startEngine(config, log, { metrics });

  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  if (config.runApi && (config.tokenSecret || config.oidc)) {
    const service = sessionService(engine, log);
    const tokens = combinedVerifier(config.tokenSecret ? createTokenVerifier(config.tokenSecret) : undefined, config.oidc ? createOidcVerifier(config.oidc) : undefined);
    app = await buildApp({ service, tokens, metrics, log, corsOrigins: config.corsOrigins, page: { dir: config.page.dir ?? defaultPageDir(), scoreboardUrl: config.page.scoreboardUrl } });
    await app.listen({ port: config.port, host: config.host });
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'Shutting down');
    const force = setTimeout(() => process.exit(1), 25_000);
    force.unref();
    try {
      // Stop accepting and finish in-flight requests, then hand the lease over.
      await app?.close();
      await engine.stop();
      log.info('Stopped');
      process.exit(0);
    } catch (err) {
      log.error({ err }, 'Error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * Ends a start that cannot succeed. The message goes to stderr and to the termination message
 * file, so `kubectl describe pod` shows why the container stopped without reading its logs.
 * kubelet creates that file; it is never created here (as root outside Kubernetes, /dev is
 * writable), and failing to write it changes nothing.
 */
function exitAtStart(message: string, code: number): never {
  const line = `challenge-engine: ${message}\n`;
  process.stderr.write(line);
  try {
    const fd = openSync(process.env.CTF_TERMINATION_LOG || '/dev/termination-log', constants.O_WRONLY | constants.O_TRUNC);
    try {
      writeSync(fd, line);
    } finally {
      closeSync(fd);
    }
  } catch {
    // not in a Pod, or not writable: stderr has the message
  }
  process.exit(code);
}

main().catch((err: unknown) => exitAtStart(err instanceof Error ? err.message : String(err), 1));
