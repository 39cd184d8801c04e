import { ApiException } from '@kubernetes/client-node';

/**
 * The small set of outcomes the controller and the HTTP API act on. Everything that is not a
 * definite answer from the apiserver is Transient and retried with backoff.
 */
export type KubeErrorKind = 'NotFound' | 'Conflict' | 'AlreadyExists' | 'Invalid' | 'Forbidden' | 'Transient';

export interface KubeError {
  kind: KubeErrorKind;
  code: number;
  reason: string;
  /** The apiserver's message; may quote user input, never secrets the engine holds. */
  message: string;
}

interface StatusBody {
  reason?: string;
  message?: string;
}

function parseBody(body: unknown): StatusBody {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as StatusBody;
    } catch {
      return { message: body.slice(0, 500) };
    }
  }
  if (body && typeof body === 'object') return body;
  return {};
}

export function classifyError(err: unknown): KubeError {
  if (err instanceof ApiException) {
    const status = parseBody(err.body);
    const code = err.code;
    const reason = status.reason ?? '';
    const message = status.message ?? `HTTP ${code}`;
    // Server-side apply reports an object it cannot type (duplicate list-map keys, ...) as a 500,
    // but the same object will always fail: treat it as invalid input, not a transient fault.
    const unbuildable = code === 500 && message.includes('failed to create typed patch object');
    const kind: KubeErrorKind =
      unbuildable ? 'Invalid' : code === 404
        ? 'NotFound'
        : code === 409
          ? reason === 'AlreadyExists'
            ? 'AlreadyExists'
            : 'Conflict'
          : code === 422 || code === 400
            ? 'Invalid'
            : code === 403
              ? 'Forbidden'
              : 'Transient';
    return { kind, code, reason, message };
  }
  const code = (err as { statusCode?: number; code?: number } | undefined)?.statusCode;
  return { kind: 'Transient', code: code ?? 0, reason: 'Transient', message: err instanceof Error ? err.message : String(err) };
}

/** Awaits an apiserver call, with NotFound as undefined; every other error is rethrown. */
export async function ignoreNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (classifyError(err).kind === 'NotFound') return undefined;
    throw err;
  }
}
