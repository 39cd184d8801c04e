import type { Logger } from 'pino';
import type { InvolvedObject, Writer } from './writes.js';

/**
 * Events are best effort: an Event that cannot be written must never fail the reconcile or the
 * request that caused it. Every Event goes through a recorder, which writes it in the background
 * and only logs a failure.
 *
 * Events also never compete with the writes that make sessions real: a recorder keeps at most
 * `inFlight` Event writes open and queues the rest, so during a burst of spawns the apiserver
 * serves the children and status writes first and the Events follow as it frees up. Beyond
 * `maxQueued` waiting Events, new ones are dropped and counted (client-go's broadcaster drops
 * the same way once 1,000 are queued).
 */
export interface EventRecorder {
  normal(involved: InvolvedObject, reason: string, message: string, related?: InvolvedObject): void;
  warning(involved: InvolvedObject, reason: string, message: string, related?: InvolvedObject): void;
}

export interface RecorderOptions {
  /** Event writes open at once (default 1). */
  inFlight?: number;
  /** Events waiting beyond those (default 1000); more are dropped. */
  maxQueued?: number;
  /** Called for every dropped Event. */
  onDropped?: (reason: string) => void;
}

export function createRecorder(writer: Pick<Writer, 'event'>, log: Logger, opts: RecorderOptions = {}): EventRecorder {
  const inFlight = opts.inFlight ?? 1;
  const maxQueued = opts.maxQueued ?? 1000;
  const waiting: (() => Promise<void>)[] = [];
  let open = 0;
  const pump = () => {
    while (open < inFlight) {
      const next = waiting.shift();
      if (!next) return;
      open++;
      void next().finally(() => {
        open--;
        pump();
      });
    }
  };
  const record = (type: 'Normal' | 'Warning', involved: InvolvedObject, reason: string, message: string, related?: InvolvedObject) => {
    if (waiting.length >= maxQueued) {
      opts.onDropped?.(reason);
      log.debug({ reason, object: involved.name }, 'Dropped an Event: too many waiting');
      return;
    }
    waiting.push(() =>
      Promise.resolve()
        .then(() => writer.event(involved, type, reason, message, related))
        .catch((err: unknown) => log.debug({ err: err instanceof Error ? err.message : String(err), reason, object: involved.name }, 'Could not record an Event')),
    );
    pump();
  };
  return {
    normal: (involved, reason, message, related) => record('Normal', involved, reason, message, related),
    warning: (involved, reason, message, related) => record('Warning', involved, reason, message, related),
  };
}
