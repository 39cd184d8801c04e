import type { ExposedPort } from '../api/challenge.js';
import { childMetadata, type SessionMeta } from './labels.js';
import { childNames, exposedPortName } from './names.js';
import type { ChallengeRuntime } from './runtime.js';

/**
 * Gateway API routes of a session: one HTTPRoute per `http` port and one TLSRoute per `tcp`
 * port, each for the port's own public host and attached to the organiser's Gateway listener.
 * TCP goes through a TLS listener that terminates TLS and routes the plain stream by SNI, so
 * every TCP challenge shares one port. HTTP rules carry the configured filter (forward auth)
 * so that knowing a host is not enough to reach an instance.
 */

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_API_VERSION = `${GATEWAY_GROUP}/v1`;

export interface GatewayOptions {
  gateway: { namespace: string; name: string };
  /** Listener (sectionName) for HTTPRoutes; undefined: http ports cannot be routed. */
  httpListener?: string;
  /** Listener for TLSRoutes; undefined: tcp ports cannot be routed. */
  tlsListener?: string;
  /** An ExtensionRef filter on every HTTP rule, e.g. a Traefik ForwardAuth Middleware. */
  authFilter?: { group: string; kind: string; name: string };
}

export interface RouteObject {
  apiVersion: string;
  kind: 'HTTPRoute' | 'TLSRoute';
  metadata: ReturnType<typeof childMetadata>;
  spec: Record<string, unknown>;
}

/** Name of the route of one exposed port. */
export function routeName(session: string, expose: Pick<ExposedPort, 'name' | 'port' | 'protocol'>): string {
  return `${session}-${exposedPortName(expose)}`;
}

/** The ports of `runtime` no configured listener can carry, as "name (protocol)". */
export function unroutablePorts(runtime: Pick<ChallengeRuntime, 'expose'>, gw: GatewayOptions): string[] {
  return runtime.expose
    .filter((e) => (e.protocol === 'http' ? !gw.httpListener : !gw.tlsListener))
    .map((e) => `${exposedPortName(e)} (${e.protocol})`);
}

function parentRef(gw: GatewayOptions, sectionName: string) {
  return [{ group: GATEWAY_GROUP, kind: 'Gateway', namespace: gw.gateway.namespace, name: gw.gateway.name, sectionName }];
}

function backend(session: SessionMeta, port: number) {
  return [{ group: '', kind: 'Service', name: childNames(session.metadata.name).service, port }];
}

/** The routes of every routable port; `hostOf` gives a port's public host. */
export function desiredRoutes(session: SessionMeta, runtime: Pick<ChallengeRuntime, 'expose'>, gw: GatewayOptions, hostOf: (portName: string) => string): RouteObject[] {
  const out: RouteObject[] = [];
  for (const e of runtime.expose) {
    const name = routeName(session.metadata.name, e);
    const hostnames = [hostOf(exposedPortName(e))];
    if (e.protocol === 'http' && gw.httpListener) {
      const filters = gw.authFilter ? [{ type: 'ExtensionRef', extensionRef: gw.authFilter }] : undefined;
      out.push({
        apiVersion: GATEWAY_API_VERSION,
        kind: 'HTTPRoute',
        metadata: childMetadata(session, name),
        spec: {
          parentRefs: parentRef(gw, gw.httpListener),
          hostnames,
          rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], ...(filters ? { filters } : {}), backendRefs: backend(session, e.port) }],
        },
      });
    } else if (e.protocol === 'tcp' && gw.tlsListener) {
      out.push({
        apiVersion: GATEWAY_API_VERSION,
        kind: 'TLSRoute',
        metadata: childMetadata(session, name),
        spec: { parentRefs: parentRef(gw, gw.tlsListener), hostnames, rules: [{ backendRefs: backend(session, e.port) }] },
      });
    }
  }
  return out;
}
