/*
 * The local gateway's objects, as pure builders: namespace, ServiceAccount and bindings, the
 * wildcard certificate Secret, Traefik's Deployment and Service, the GatewayClass and the Gateway.
 */

export const GATEWAY_NAMESPACE = 'ctf-gateway';
export const GATEWAY_NAME = 'ctf';
export const GATEWAY_CLASS = 'traefik';
export const GATEWAY_CONTROLLER = 'traefik.io/gateway-controller';
export const TLS_SECRET = 'ctf-gateway-tls';
/** The entry-point labels: NetworkPolicies of session namespaces admit the gateway by these. */
export const GATEWAY_POD_LABELS = { 'app.kubernetes.io/name': 'traefik', 'app.kubernetes.io/component': 'gateway' } as const;
const SERVICE_ACCOUNT = 'traefik';

export interface GatewaySpec {
  domain: string;
  /** Fixed ClusterIP of the Service, also Traefik's statusAddress.ip. */
  address: string;
  httpPort: number;
  tlsPort: number;
  node: string;
  image: string;
  /** Where the Pod reaches the apiserver (the relay on the bridge). */
  apiserver: { ip: string; port: number };
  tls: { cert: string; key: string };
}

type Obj = Record<string, unknown>;
const b64 = (s: string) => Buffer.from(s).toString('base64');

function rbac(): Obj[] {
  const subjects = [{ kind: 'ServiceAccount', name: SERVICE_ACCOUNT, namespace: GATEWAY_NAMESPACE }];
  const binding = (role: string): Obj => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: role },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
    subjects,
  });
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: SERVICE_ACCOUNT, namespace: GATEWAY_NAMESPACE } },
    binding('ctf-gateway-traefik-gateway'),
    binding('ctf-gateway-traefik-crd'),
  ];
}

function deployment(spec: GatewaySpec): Obj {
  const port = (name: string, containerPort: number) => ({ name, containerPort, protocol: 'TCP' });
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'traefik', namespace: GATEWAY_NAMESPACE, labels: GATEWAY_POD_LABELS },
    spec: {
      replicas: 1,
      selector: { matchLabels: GATEWAY_POD_LABELS },
      // One node and fixed ports: never two Traefiks at once.
      strategy: { type: 'Recreate' },
      template: {
        metadata: { labels: GATEWAY_POD_LABELS },
        spec: {
          serviceAccountName: SERVICE_ACCOUNT,
          nodeSelector: { 'kubernetes.io/hostname': spec.node },
          enableServiceLinks: false,
          // The relay's address under a name the apiserver certificate carries.
          hostAliases: [{ ip: spec.apiserver.ip, hostnames: ['kubernetes.default.svc'] }],
          terminationGracePeriodSeconds: 5,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'traefik',
              image: spec.image,
              imagePullPolicy: 'Never',
              args: ['--configFile=/etc/traefik/traefik.yml'],
              env: [
                { name: 'KUBERNETES_SERVICE_HOST', value: 'kubernetes.default.svc' },
                { name: 'KUBERNETES_SERVICE_PORT', value: String(spec.apiserver.port) },
              ],
              ports: [port('web', spec.httpPort), port('websecure', spec.tlsPort), port('ping', 8082)],
              readinessProbe: { httpGet: { path: '/ping', port: 'ping' }, periodSeconds: 2, failureThreshold: 2 },
              livenessProbe: { httpGet: { path: '/ping', port: 'ping' }, periodSeconds: 10, failureThreshold: 3 },
              resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '512Mi' } },
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            },
          ],
          volumes: [{ name: 'tmp', emptyDir: { sizeLimit: '16Mi' } }],
        },
      },
    },
  };
}

function service(spec: GatewaySpec): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'traefik', namespace: GATEWAY_NAMESPACE, labels: GATEWAY_POD_LABELS },
    spec: {
      type: 'ClusterIP',
      clusterIP: spec.address,
      selector: GATEWAY_POD_LABELS,
      ports: [
        { name: 'web', port: spec.httpPort, targetPort: 'web', protocol: 'TCP' },
        { name: 'websecure', port: spec.tlsPort, targetPort: 'websecure', protocol: 'TCP' },
      ],
    },
  };
}

function gateway(spec: GatewaySpec): Obj {
  const hostname = `*.${spec.domain}`;
  // Routes live in the sessions' namespaces.
  const allowed = (kind: string) => ({ namespaces: { from: 'All' }, kinds: [{ group: 'gateway.networking.k8s.io', kind }] });
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: GATEWAY_NAME, namespace: GATEWAY_NAMESPACE },
    spec: {
      gatewayClassName: GATEWAY_CLASS,
      listeners: [
        { name: 'http', protocol: 'HTTP', port: spec.httpPort, hostname, allowedRoutes: allowed('HTTPRoute') },
        {
          // Raw TCP challenges: TLS terminated here, the plain stream routed by SNI (TLSRoute).
          name: 'tls',
          protocol: 'TLS',
          port: spec.tlsPort,
          hostname,
          tls: { mode: 'Terminate', certificateRefs: [{ group: '', kind: 'Secret', name: TLS_SECRET }] },
          allowedRoutes: allowed('TLSRoute'),
        },
      ],
    },
  };
}

/** Everything but the CRDs and the upstream ClusterRoles, in apply order. */
export function gatewayManifests(spec: GatewaySpec): Obj[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: GATEWAY_NAMESPACE, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
    },
    ...rbac(),
    {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: TLS_SECRET, namespace: GATEWAY_NAMESPACE },
      data: { 'tls.crt': b64(spec.tls.cert), 'tls.key': b64(spec.tls.key) },
    },
    deployment(spec),
    service(spec),
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GatewayClass',
      metadata: { name: GATEWAY_CLASS },
      spec: { controllerName: GATEWAY_CONTROLLER },
    },
    gateway(spec),
  ];
}
