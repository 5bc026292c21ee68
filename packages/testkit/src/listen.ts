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
