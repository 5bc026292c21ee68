import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';

/** Paths of the TEST-ONLY certificates (fixtures/test-only-tls/README.md): never trust them outside tests. */
export const TEST_ONLY_TLS_DIR = fileURLToPath(new URL('../fixtures/test-only-tls/', import.meta.url));

export interface TestOnlyTls {
  /** The test CA (PEM) and its path. */
  ca: Buffer;
  caPath: string;
  /** A certificate for 127.0.0.1, ::1 and localhost signed by it, and its key. */
  cert: Buffer;
  key: Buffer;
}

export function testOnlyTls(): TestOnlyTls {
  const caPath = `${TEST_ONLY_TLS_DIR}ca.pem`;
  return { ca: readFileSync(caPath), caPath, cert: readFileSync(`${TEST_ONLY_TLS_DIR}server.pem`), key: readFileSync(`${TEST_ONLY_TLS_DIR}server-key.pem`) };
}

export interface TlsTerminator {
  port: number;
  close(): Promise<void>;
}

/**
 * A TLS-terminating TCP relay on 127.0.0.1 (what nginx or a CDN does in
 * front of a plait WebSocket listener): TLS with the test certificate
 * outside, plain TCP to `targetPort` inside.
 */
export function startTlsTerminator(targetPort: number, targetHost = '127.0.0.1'): Promise<TlsTerminator> {
  const { cert, key } = testOnlyTls();
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert, key }, (outer) => {
    const inner = net.connect(targetPort, targetHost);
    for (const s of [outer, inner]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    outer.pipe(inner).pipe(outer);
    outer.on('close', () => inner.destroy());
    inner.on('close', () => outer.destroy());
  });
  server.on('tlsClientError', () => undefined);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
