import { pino, type Logger } from 'pino';

/**
 * JSON logs in Kubernetes style. Anything that could carry a flag or a token is redacted by path,
 * whatever the caller passes.
 */
export const REDACT_PATHS = [
  'flag',
  '*.flag',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  'data',
  '*.data',
  'stringData',
  '*.stringData',
];

export function createLogger(opts: { level: string; pretty: boolean; destination?: NodeJS.WritableStream }): Logger {
  const base = { level: opts.level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { component: 'challenge-engine' } };
  if (opts.pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,component' } } });
  }
  return opts.destination ? pino(base, opts.destination as pino.DestinationStream) : pino(base);
}
