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
 * Loads the kubeconfig from an explicit path, KUBECONFIG, ~/.kube/config or the in-cluster
 * service account, in the usual order of @kubernetes/client-node.
 */
export function createKube(kubeconfigPath?: string): Kube {
  const kc = new k8s.KubeConfig();
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
