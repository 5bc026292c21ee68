import type * as net from 'node:net';

/** Listen on an ephemeral port of `host`; resolves with the port. */
export async function listenEphemeral(server: net.Server, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('unexpected server address');
  return addr.port;
}

/**
 * A port that is free now and lies below the kernel's ephemeral range
 * (Linux: 32768-60999), for a test that must name a port before something
 * else binds it (a published port, a users file). An ephemeral port freed
 * by a probe can be taken meanwhile as the local port of any outgoing
 * connection on the machine; one below the range can only be taken by a
 * listener that names it.
 */
export async function freeFixedPort(host = '127.0.0.1'): Promise<number> {
  const { createServer } = await import('node:net');
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port in 20000-31999');
}
