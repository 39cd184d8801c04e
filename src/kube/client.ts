import { Agent as HttpAgent } from 'node:http';
import { Agent, type RequestOptions } from 'node:https';
import * as k8s from '@kubernetes/client-node';

/** The typed clients the engine uses; created once in main.ts and passed down. */
export interface Kube {
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  net: k8s.NetworkingV1Api;
  coord: k8s.CoordinationV1Api;
  events: k8s.EventsV1Api;
  objects: k8s.KubernetesObjectApi;
}

/**
 * One keep-alive connection pool per kubeconfig. @kubernetes/client-node 1.x gives every request
 * a new https.Agent, so every call builds a TLS context and does a full handshake; profiles of a
 * spawn burst put that at 45% of the engine's CPU. Credentials that change per request (bearer
 * tokens, including rotated in-cluster ones) still go in headers; only TLS material is pooled.
 */
const agents = new WeakMap<k8s.KubeConfig, Promise<Agent | HttpAgent>>();

/**
 * The pooled agent for the kubeconfig's current cluster: https with its TLS material, or plain
 * http for a cluster reached through `kubectl proxy` or another local proxy.
 */
export function sharedAgent(kc: k8s.KubeConfig): Promise<Agent | HttpAgent> {
  let agent = agents.get(kc);
  if (!agent) {
    agent = (async () => {
      const server = kc.getCurrentCluster()?.server ?? '';
      if (server.startsWith('http:')) return new HttpAgent({ keepAlive: true, maxSockets: 128 });
      const opts: RequestOptions = {};
      await kc.applyToHTTPSOptions(opts);
      return new Agent({ keepAlive: true, maxSockets: 128, ca: opts.ca, cert: opts.cert, key: opts.key, rejectUnauthorized: opts.rejectUnauthorized });
    })();
    agents.set(kc, agent);
  }
  return agent;
}

/** A KubeConfig whose typed clients share the pooled agent. */
export class PooledKubeConfig extends k8s.KubeConfig {
  override async applySecurityAuthentication(context: Parameters<k8s.KubeConfig['applySecurityAuthentication']>[0]): Promise<void> {
    await super.applySecurityAuthentication(context);
    context.setAgent(await sharedAgent(this));
  }
}

/**
 * Loads the kubeconfig from an explicit path, KUBECONFIG, ~/.kube/config or the in-cluster
 * service account, in the usual order of @kubernetes/client-node.
 */
export function createKube(kubeconfigPath?: string): Kube {
  const kc = new PooledKubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromDefault();
  return fromKubeConfig(kc);
}

export function fromKubeConfig(kc: k8s.KubeConfig): Kube {
  return {
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    net: kc.makeApiClient(k8s.NetworkingV1Api),
    coord: kc.makeApiClient(k8s.CoordinationV1Api),
    events: kc.makeApiClient(k8s.EventsV1Api),
    objects: k8s.KubernetesObjectApi.makeApiClient(kc),
  };
}

export { k8s };
