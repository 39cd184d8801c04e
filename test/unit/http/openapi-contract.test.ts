import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { harness } from './harness.js';

/**
 * The published /openapi.json against the server it describes, the way a client generated from
 * the document meets it: every query parameter, path parameter and JSON body the document allows
 * is accepted (not a 400 about that input), everything it forbids is refused with a 400 naming it,
 * and every method the document does not declare on a path is 405 with the declared ones in Allow.
 * The document is checked with a real JSON Schema validator (ajv, draft 2020-12).
 */

type Schema = Record<string, unknown>;
interface Operation { parameters?: { in: string; name: string; required?: boolean; schema: Schema }[]; requestBody?: { content: Record<string, { schema: Schema }> } }
interface Doc { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Schema> } }

const OPENAPI_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
/** Candidate values: for each input, every one of these is tried against the document and the server. */
const STRINGS = ['', '0', '7', '30', '59', '60', '61', '66', '99', '100', '-1', '1.5', '01', ' 5', 'true', 'false', '1', 'soon', 's-abc-1', 'web-notes', 'Web_Notes', 'CTF{x}', 'x'.repeat(300)];

async function setup() {
  const h = await harness();
  const doc = (await h.app.inject({ method: 'GET', url: '/openapi.json' })).json<Doc>();
  const ajv = new Ajv2020({ strict: false, allErrors: false });
  ajv.addSchema({ $id: 'doc', components: doc.components });
  const valid = (schema: Schema, value: unknown) => ajv.validate({ $ref: undefined, ...rewriteRefs(schema) }, value);
  return { ...h, doc, valid };
}

/** #/components/schemas/X -> doc#/components/schemas/X, so ajv resolves refs against the document. */
function rewriteRefs(s: Schema): Schema {
  return JSON.parse(JSON.stringify(s).replace(/"#\/components\//g, '"doc#/components/')) as Schema;
}

/** A value of the path parameter's schema (the first candidate it allows). */
function pathSample(schema: Schema, valid: (s: Schema, v: unknown) => boolean): string {
  const v = STRINGS.find((c) => c && valid(schema, c));
  if (v === undefined) throw new Error(`no sample for ${JSON.stringify(schema)}`);
  return v;
}

const fill = (path: string, params: Record<string, string>) => path.replace(/\{(\w+)\}/g, (_, n: string) => params[n] ?? '');

describe('the published OpenAPI document is the contract', () => {
  it('states every query parameter rule the server enforces, and the server accepts all it allows', async () => {
    const { app, doc, valid, auth } = await setup();
    const h = await auth('alice');
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const pathParams = Object.fromEntries((op.parameters ?? []).filter((p) => p.in === 'path').map((p) => [p.name, pathSample(p.schema, valid)]));
        for (const q of (op.parameters ?? []).filter((p) => p.in === 'query')) {
          for (const value of STRINGS) {
            const allowed = valid(q.schema, value);
            const res = await app.inject({ method: method.toUpperCase() as 'GET', url: `${fill(path, pathParams)}?${q.name}=${encodeURIComponent(value)}`, headers: h });
            const refused = res.statusCode === 400 && String(res.json<{ detail?: string }>().detail).startsWith(`query.${q.name}`);
            expect(refused, `${method.toUpperCase()} ${path}?${q.name}=${JSON.stringify(value)}: the document ${allowed ? 'allows' : 'forbids'} it, the server answered ${res.statusCode} ${res.body.slice(0, 120)}`).toBe(!allowed);
            checked += 1;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it('states every body rule the server enforces (exactly-one-of included), and the server accepts all it allows', async () => {
    const { app, doc, valid, auth } = await setup();
    const h = await auth('alice');
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const schema = op.requestBody?.content['application/json']?.schema;
        if (!schema) continue;
        const pathParams = Object.fromEntries((op.parameters ?? []).filter((p) => p.in === 'path').map((p) => [p.name, pathSample(p.schema, valid)]));
        for (const body of candidateBodies(schema, doc)) {
          const allowed = valid(schema, body);
          const res = await app.inject({ method: method.toUpperCase() as 'POST', url: fill(path, pathParams), headers: h, payload: body as Record<string, unknown> });
          const refused = res.statusCode === 400 && String(res.json<{ detail?: string }>().detail).startsWith('body');
          expect(refused, `${method.toUpperCase()} ${path} ${JSON.stringify(body).slice(0, 100)}: the document ${allowed ? 'allows' : 'forbids'} it, the server answered ${res.statusCode} ${res.body.slice(0, 160)}`).toBe(!allowed);
          checked += 1;
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it('answers every method the document does not declare with 405 and the declared ones in Allow', async () => {
    const { app, doc, valid } = await setup();
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      const params = Object.fromEntries(Object.values(ops).flatMap((op) => (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => [p.name, pathSample(p.schema, valid)])));
      const declared = Object.keys(ops).map((m) => m.toUpperCase());
      for (const method of OPENAPI_METHODS.map((m) => m.toUpperCase())) {
        if (declared.includes(method) || (method === 'HEAD' && declared.includes('GET'))) continue;
        const res = await app.inject({ method: method as 'GET', url: fill(path, params) });
        expect(res.statusCode, `${method} ${path}`).toBe(405);
        const allow = String(res.headers.allow).split(', ');
        for (const m of declared) expect(allow, `${method} ${path}: Allow ${String(res.headers.allow)}`).toContain(m);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(30);
  });
});

/**
 * Bodies to try for an object schema: each property present or absent (every combination of up
 * to four properties), with a value the document allows and with one it forbids.
 */
function candidateBodies(schema: Schema, doc: Doc): unknown[] {
  const resolved = resolve(schema, doc);
  const props = Object.entries((resolved.properties ?? {}) as Record<string, Schema>);
  const good = (name: string, p: Schema): unknown => {
    const r = resolve(p, doc);
    if (r.type === 'array') return [goodObject(resolve(r.items as Schema, doc), doc)];
    if (name === 'sessionId') return 's-abc-1';
    if (name === 'challenge') return 'web-notes';
    return 'CTF{x}';
  };
  const bad = (p: Schema): unknown => (resolve(p, doc).type === 'array' ? [] : '');
  const out: unknown[] = [{}, { unexpected: 1 }];
  const n = Math.min(props.length, 4);
  for (let mask = 0; mask < 1 << n; mask++) {
    const body: Record<string, unknown> = {};
    props.slice(0, n).forEach(([name, p], i) => {
      if (mask & (1 << i)) body[name] = good(name, p);
    });
    out.push(body);
    for (const [name, p] of props.slice(0, n)) if (name in body) out.push({ ...body, [name]: bad(p) });
  }
  return out;
}

function goodObject(schema: Schema, doc: Doc): Record<string, unknown> {
  const props = Object.keys((resolve(schema, doc).properties ?? {}));
  return props.includes('sessionId') ? { sessionId: 's-abc-1', flag: 'CTF{x}' } : {};
}

function resolve(s: Schema, doc: Doc): Schema {
  const ref = s.$ref;
  if (typeof ref === 'string' && ref.startsWith('#/components/schemas/')) return resolve(doc.components.schemas[ref.slice('#/components/schemas/'.length)] ?? {}, doc);
  return s;
}
