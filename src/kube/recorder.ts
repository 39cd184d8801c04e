import type { Logger } from 'pino';
import type { InvolvedObject, Writer } from './writes.js';

/**
 * Events are best effort: an Event that cannot be written must never fail the reconcile or the
 * request that caused it. Every Event goes through a recorder, which writes it in the background
 * and only logs a failure.
 */
export interface EventRecorder {
  normal(involved: InvolvedObject, reason: string, message: string, related?: InvolvedObject): void;
  warning(involved: InvolvedObject, reason: string, message: string, related?: InvolvedObject): void;
}

export function createRecorder(writer: Pick<Writer, 'event'>, log: Logger): EventRecorder {
  const record = (type: 'Normal' | 'Warning', involved: InvolvedObject, reason: string, message: string, related?: InvolvedObject) => {
    Promise.resolve()
      .then(() => writer.event(involved, type, reason, message, related))
      .catch((err: unknown) => log.debug({ err: err instanceof Error ? err.message : String(err), reason, object: involved.name }, 'Could not record an Event'));
  };
  return {
    normal: (involved, reason, message, related) => record('Normal', involved, reason, message, related),
    warning: (involved, reason, message, related) => record('Warning', involved, reason, message, related),
  };
}
