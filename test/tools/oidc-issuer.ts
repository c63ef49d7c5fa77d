/**
 * A small OIDC issuer for tests (after kube-oidc-proxy's test/tools/issuer):
 * HTTPS on loopback with a test-generated CA, serving discovery and JWKS,
 * signing tokens with its current key, and rotating keys on demand. Counts
 * JWKS fetches so tests can see caching and refetch-on-unknown-kid.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { createCA, issueCert } from '../../certs/generate.ts';

/** A signing key the issuer publishes. */
export interface IssuerKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** A running test issuer. */
export interface OidcIssuer {
  /** The issuer URL (`iss`). */
  readonly url: string;
  /** PEM of the CA that signed the issuer's serving certificate. */
  readonly caPem: string;
  /** The key new tokens are signed with. */
  readonly current: IssuerKey;
  /** Number of JWKS documents served. */
  readonly jwksFetches: number;
  /** Signs `claims` (iss and a 5-minute exp are filled in unless given) with the current key or `key`. */
  sign(claims: JWTPayload, opts?: { key?: IssuerKey; kid?: string; alg?: string }): Promise<string>;
  /** A fresh key that is NOT published. */
  newKey(alg?: string): Promise<IssuerKey>;
  /** Publishes a new key (replacing the old ones) and signs with it from now on. */
  rotate(): Promise<IssuerKey>;
  close(): Promise<void>;
}

let kidCounter = 0;

async function makeKey(alg: string): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `k${++kidCounter}-${alg}`;
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

/** Starts an issuer on 127.0.0.1 with one RS256 key. */
export async function startOidcIssuer(opts: { path?: string } = {}): Promise<OidcIssuer> {
  const ca = createCA({ commonName: 'test-oidc-ca' });
  const serving = issueCert(ca, { commonName: 'test-oidc', ips: ['127.0.0.1'], dnsNames: ['localhost'] });
  let keys: IssuerKey[] = [await makeKey('RS256')];
  let jwksFetches = 0;
  let url = '';
  const base = opts.path ?? '';
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const p = (req.url ?? '/').split('?')[0];
    if (p === `${base}/.well-known/openid-configuration`) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: url, jwks_uri: `${url}/keys`, id_token_signing_alg_values_supported: ['RS256', 'ES256'] }));
      return;
    }
    if (p === `${base}/keys`) {
      jwksFetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}${base}`;
  return {
    url,
    caPem: ca.certPem,
    get current() {
      return keys[keys.length - 1] as IssuerKey;
    },
    get jwksFetches() {
      return jwksFetches;
    },
    async sign(claims, o = {}) {
      const key = o.key ?? (keys[keys.length - 1] as IssuerKey);
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: url, iat: now, exp: now + 300, ...claims })
        .setProtectedHeader({ alg: o.alg ?? key.alg, kid: o.kid ?? key.kid, typ: 'JWT' })
        .sign(key.privateKey);
    },
    newKey: (alg = 'RS256') => makeKey(alg),
    async rotate() {
      const k = await makeKey('RS256');
      keys = [k];
      return k;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
