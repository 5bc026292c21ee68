/** TCP echo server on loopback for relay/proxy tests. */
import net from 'node:net';
import { listenEphemeral } from './listen.js';

export interface EchoServer {
  readonly port: number;
  readonly host: string;
  /** Connections accepted since start (lets tests see whether a SYN got through). */
  readonly connections: number;
  close(): Promise<void>;
}

export async function startEchoServer(host = '127.0.0.1'): Promise<EchoServer> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  // allowHalfOpen: echo everything that arrives before the client's FIN, then FIN back.
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    connections++;
    sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('error', () => {}); // peers reset on purpose in tests
    sock.on('close', () => sockets.delete(sock));
    sock.pipe(sock);
  });
  const port = await listenEphemeral(server, host);
  return {
    port,
    host,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
