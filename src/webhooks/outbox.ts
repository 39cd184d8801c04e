import type { V1ConfigMap } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_VERSION, GROUP, SESSION_KIND } from '../api/group.js';
import { classifyError } from '../kube/errors.js';
import type { Kube } from '../kube/client.js';
import type { Writer } from '../kube/writes.js';
import { EventReason } from '../reconcile/reasons.js';
import type { Caches } from '../read-model/caches.js';
import { backoffMs, EVENT_ID_HEADER, sign, SIGNATURE_HEADER, solveEventId, TIMESTAMP_HEADER, unrecordedSolves, type SolveEvent } from './events.js';

/*
 * The webhook outbox lives in the cluster: one ConfigMap per event (`webhook-<event id>`), with
 * no owner, so it outlives a session stopped or expired right after its solve, and survives any
 * engine restart. The API writes it right after recording the solve; the leader delivers due
 * events, marks the session (status.solveReportedAt) and deletes the entry once the receiver
 * answered 2xx, and otherwise records the attempt and the next time (exponential backoff with
 * jitter). Events that keep failing stay pending, counted in challenge_engine_webhook_pending and
 * reported once by a Warning Event on their session. A solve the API recorded without its event
 * (it stopped between the two writes) is found by the leader from the session and recorded then.
 */

export const LABEL_OUTBOX = `${GROUP}/outbox`;
export const OUTBOX_WEBHOOK = 'webhook';
const ANNOTATION_ATTEMPTS = `${GROUP}/attempts`;
const ANNOTATION_NEXT = `${GROUP}/next-attempt-at`;
const ANNOTATION_ERROR = `${GROUP}/last-error`;
/** How long a delivered event is remembered while the cache catches up with its session's mark. */
const DELIVERED_MEMORY_MS = 60_000;
/** After this many failed attempts the session gets a Warning Event (once). */
export const REPORT_AFTER_ATTEMPTS = 5;

export function outboxName(event: SolveEvent): string {
  return `webhook-${event.id}`.slice(0, 253);
}

export function outboxEntry(namespace: string, event: SolveEvent): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: outboxName(event), namespace, labels: { [LABEL_OUTBOX]: OUTBOX_WEBHOOK }, annotations: { [ANNOTATION_ATTEMPTS]: '0' } },
    data: { 'event.json': JSON.stringify(event) },
  };
}

/** The event an outbox entry holds; undefined when it holds none that parses. */
function eventOf(cm: V1ConfigMap): SolveEvent | undefined {
  const body = cm.data?.['event.json'];
  if (!body) return undefined;
  try {
    return JSON.parse(body) as SolveEvent;
  } catch {
    return undefined;
  }
}

/** Records an event for delivery; an entry already there (the same event) is left alone. */
export async function recordEvent(writer: Writer, namespace: string, event: SolveEvent): Promise<void> {
  try {
    await writer.createOutbox(namespace, outboxEntry(namespace, event));
  } catch (err) {
    if (classifyError(err).kind !== 'AlreadyExists') throw err;
  }
}

export interface DeliveryOptions {
  kube: Kube;
  writer: Writer;
  namespace: string;
  url: string;
  secret: string;
  log: Logger;
  metrics: { webhookDeliveries: { inc(labels: { result: string }): void }; webhookPending: { set(v: number): void } };
  maxBackoffMs: number;
  /** The sessions, to find solves recorded without their event and to mark delivered ones. */
  caches?: Caches;
  /** Checked before each pass (the receiver's name may resolve elsewhere later); a reason refuses delivery. */
  checkTarget?: () => Promise<string | undefined>;
  pollMs?: number;
  timeoutMs?: number;
  now?: () => Date;
  random?: () => number;
}

/** The leader's delivery loop over the outbox. */
export class WebhookDelivery {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = true;
  /** Events this replica delivered lately, by id, until its cache shows their sessions marked. */
  private readonly delivered = new Map<string, number>();

  constructor(private readonly o: DeliveryOptions) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((err: unknown) => this.o.log.warn({ err: classifyError(err).message }, 'Webhook outbox pass failed'))
        .finally(() => this.schedule(this.o.pollMs ?? 1000));
    }, ms);
  }

  /** One pass: every due entry is delivered once. */
  async tick(): Promise<void> {
    const now = (this.o.now ?? (() => new Date()))();
    const list = await this.o.kube.core.listNamespacedConfigMap({ namespace: this.o.namespace, labelSelector: `${LABEL_OUTBOX}=${OUTBOX_WEBHOOK}` });
    await this.recordMissing(list.items, now);
    this.o.metrics.webhookPending.set(list.items.length);
    const refused = list.items.length > 0 ? await this.o.checkTarget?.() : undefined;
    const due = list.items.filter((cm) => Date.parse(cm.metadata?.annotations?.[ANNOTATION_NEXT] ?? '') <= now.getTime() || !cm.metadata?.annotations?.[ANNOTATION_NEXT]);
    for (let i = 0; i < due.length && !this.stopped; i += 8) await Promise.all(due.slice(i, i + 8).map((cm) => this.deliver(cm, now, refused)));
  }

  /** Records the events of solves found without one; they are delivered from the next pass. */
  private async recordMissing(entries: V1ConfigMap[], now: Date): Promise<void> {
    if (!this.o.caches) return;
    for (const [id, at] of this.delivered) if (now.getTime() - at > DELIVERED_MEMORY_MS) this.delivered.delete(id);
    // Entries are found by the event id they carry, as delivery reads it.
    const pending = new Set<string>();
    for (const cm of entries) {
      const id = eventOf(cm)?.id;
      if (id) pending.add(id);
    }
    for (const event of unrecordedSolves(this.o.caches.allSessions(), pending, new Set(this.delivered.keys()))) {
      await recordEvent(this.o.writer, this.o.namespace, event);
      this.o.log.warn({ event: event.id, session: event.session }, 'Recorded the webhook event of a solve that had none');
    }
  }

  /** Marks the delivered event's session, when it is still there (the same one: names are reused). */
  private async markDelivered(event: SolveEvent, now: Date): Promise<void> {
    this.delivered.set(event.id, now.getTime());
    const cached = this.o.caches?.session(event.session);
    const s = cached?.ok ? cached.value : undefined;
    if (!s || solveEventId(s) !== event.id || !s.status?.solvedBy || s.status.solveReportedAt) return;
    await this.o.writer.patchSessionStatus(this.o.namespace, event.session, { solveReportedAt: now.toISOString() }).catch((err: unknown) => {
      if (classifyError(err).kind !== 'NotFound') throw err;
    });
  }

  private async deliver(cm: V1ConfigMap, now: Date, refused: string | undefined): Promise<void> {
    const name = cm.metadata?.name ?? '';
    const body = cm.data?.['event.json'];
    const event = eventOf(cm);
    if (!body || !event) return;
    const ts = Math.floor(now.getTime() / 1000);
    let failure = refused ? `delivery refused: ${refused}` : undefined;
    if (!failure) {
      try {
        const res = await fetch(this.o.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: sign(this.o.secret, ts, body), [TIMESTAMP_HEADER]: String(ts), [EVENT_ID_HEADER]: event.id },
          body,
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (!res.ok) failure = `the receiver answered ${res.status}`;
      } catch (err) {
        failure = `the receiver cannot be reached (${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.name) : 'error'})`;
      }
    }
    if (!failure) {
      this.o.metrics.webhookDeliveries.inc({ result: 'delivered' });
      // Marked first: an entry gone before its mark would be recorded again (delivered twice).
      await this.markDelivered(event, now);
      await this.o.writer.deleteOutbox(this.o.namespace, name).catch((err: unknown) => {
        if (classifyError(err).kind !== 'NotFound') throw err;
      });
      this.o.log.info({ event: event.id, session: event.session }, 'Webhook delivered');
      return;
    }
    this.o.metrics.webhookDeliveries.inc({ result: 'failed' });
    const attempts = Number(cm.metadata?.annotations?.[ANNOTATION_ATTEMPTS] ?? '0') + 1;
    const next = new Date(now.getTime() + backoffMs(attempts - 1, this.o.maxBackoffMs, this.o.random ?? Math.random));
    await this.o.writer.patchOutbox(this.o.namespace, name, { metadata: { annotations: { [ANNOTATION_ATTEMPTS]: String(attempts), [ANNOTATION_NEXT]: next.toISOString(), [ANNOTATION_ERROR]: failure } } });
    this.o.log.warn({ event: event.id, attempts, next: next.toISOString(), reason: failure }, 'Webhook delivery failed; retrying');
    if (attempts === REPORT_AFTER_ATTEMPTS) {
      const involved = { apiVersion: API_VERSION, kind: SESSION_KIND, name: event.session, namespace: this.o.namespace };
      await this.o.writer.event(involved, 'Warning', EventReason.WebhookFailing, `Solve webhook ${event.id} failed ${attempts} times (${failure}); still retrying`);
    }
  }
}
