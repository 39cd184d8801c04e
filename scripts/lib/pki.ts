import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of the throwaway PKI of one local cluster. */
export interface Pki {
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args, { maxBuffer: 1 << 20 });
}

/**
 * Creates a CA, an apiserver serving certificate for loopback, an admin client certificate in
 * group system:masters and a service-account signing key pair. EC P-256 keeps generation fast.
 */
export async function createPki(dir: string): Promise<Pki> {
  const p = (f: string) => join(dir, f);
  const pki: Pki = {
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    servingCert: p('apiserver.crt'),
    servingKey: p('apiserver.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', pki.caKey, '-out', pki.caCert, '-days', '30', '-subj', '/CN=challenge-engine-local-ca']);

  const sign = async (name: string, subj: string, ext: string) => {
    const extFile = p(`${name}.ext`);
    await writeFile(extFile, ext);
    await openssl(['req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', subj]);
    await openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', pki.caCert, '-CAkey', pki.caKey, '-CAcreateserial', '-out', p(`${name}.crt`), '-days', '30', '-extfile', extFile]);
  };
  await sign(
    'apiserver',
    '/CN=kube-apiserver',
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n',
  );
  await sign('admin', '/O=system:masters/CN=challenge-engine-admin', 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  await openssl(['genrsa', '-out', pki.saKey, '2048']);
  await openssl(['rsa', '-in', pki.saKey, '-pubout', '-out', pki.saPub]);
  return pki;
}
