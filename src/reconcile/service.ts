import type { V1Service, V1ServicePort } from '@kubernetes/client-node';
import { childMetadata, sessionSelector, type SessionMeta } from './labels.js';
import { childNames, exposedPortName } from './names.js';
import type { ChallengeRuntime } from './runtime.js';

/**
 * The session's ClusterIP Service: one TCP port per exposed port, selecting only this session's
 * Pod. Both exposed protocols run over TCP; `appProtocol` tells gateways which ports speak HTTP.
 */
export function desiredService(session: SessionMeta, runtime: Pick<ChallengeRuntime, 'expose'>): V1Service {
  const ports: V1ServicePort[] = runtime.expose.map((e) => ({
    name: exposedPortName(e),
    port: e.port,
    targetPort: e.port,
    protocol: 'TCP',
    ...(e.protocol === 'http' ? { appProtocol: 'http' } : {}),
  }));
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMetadata(session, childNames(session.metadata.name).service),
    spec: { type: 'ClusterIP', selector: sessionSelector(session), ports },
  };
}
