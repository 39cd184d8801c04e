/**
 * A reference receiver of solve webhooks, and the one the tests use: it checks the signature and
 * the timestamp, deduplicates on the event id (answering 200 to a repeat, so the engine stops
 * retrying it), and appends each new event to a JSON-lines file. A scoreboard's own receiver does
 * the same three things, then awards the solve.
 *
 *   CTF_WEBHOOK_SECRET=... tsx scripts/webhook-receiver.ts [--port 9000] [--out solves.jsonl]
 */
import { appendFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { pathToFileURL } from 'node:url';
import { EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature, type SolveEvent } from '../src/webhooks/events.js';

export interface Receiver {
  server: Server;
  /** New events in arrival order (each id once). */
  events: SolveEvent[];
  /** Every delivery, repeats included, with whether its signature verified. */
  deliveries: { id: string; signed: boolean }[];
  /** `ok` (default), or `fail` to answer 500 to everything. */
  mode: 'ok' | 'fail';
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      body += d;
      if (body.length > 64 * 1024) req.destroy(new Error('body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

export function createReceiver(secret: string, opts: { out?: string } = {}): Receiver {
  const seen = new Set<string>();
  const r: Receiver = {
    events: [],
    deliveries: [],
    mode: 'ok',
    server: createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        const header = (n: string) => (typeof req.headers[n] === 'string' ? (req.headers[n]) : undefined);
        const signed = verifySignature(secret, { signature: header(SIGNATURE_HEADER), timestamp: header(TIMESTAMP_HEADER) }, body, Math.floor(Date.now() / 1000));
        const id = header(EVENT_ID_HEADER) ?? '';
        r.deliveries.push({ id, signed });
        if (r.mode === 'fail') return res.writeHead(500).end('unavailable');
        if (!signed) return res.writeHead(401).end('bad signature');
        const event = JSON.parse(body) as SolveEvent;
        if (event.id !== id) return res.writeHead(400).end('id mismatch');
        if (!seen.has(id)) {
          seen.add(id);
          r.events.push(event);
          if (opts.out) await appendFile(opts.out, `${body}\n`);
        }
        res.writeHead(200).end('ok');
      })().catch(() => res.writeHead(400).end('bad request'));
    }),
  };
  return r;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const secret = process.env.CTF_WEBHOOK_SECRET;
  if (!secret) {
    console.error('CTF_WEBHOOK_SECRET is required');
    process.exit(2);
  }
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const port = Number(arg('--port') ?? 9000);
  const r = createReceiver(secret, { out: arg('--out') ?? 'solves.jsonl' });
  r.server.listen(port, () => console.error(`receiving solve webhooks on :${port}`));
}
