import * as net from 'node:net';
import { adoptSlabReads } from '@plait/node';
import type { Dialer } from './dialer.js';
import { serveForward, type ForwardSpec } from './forward.js';
import { serveHttpConnect, type HttpConnectOptions } from './http-connect.js';
import { serveSocks5, type Socks5Options } from './socks5.js';

/** Listen on host:port, handing each connection to `serve`; resolves with the bound server. */
export function listenTcp(host: string, port: number, serve: (socket: net.Socket) => Promise<void>): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: a client's FIN must pass through the tunnel as a half-close.
    // highWaterMark: a record's frames (up to 64 KiB) fit in the write buffer,
    // so pipeBoth's per-tick cork batches them (16 KiB paused after one frame).
    const server = net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: 256 * 1024 }, (socket) => {
      socket.on('error', () => undefined);
      adoptSlabReads(socket); // reads into 1 MiB slabs, not a fresh 64 KiB buffer each (less GC)
      void serve(socket).catch(() => socket.destroy());
    });
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

export function listenSocks5(host: string, port: number, opts: Socks5Options, dial: Dialer): Promise<net.Server> {
  return listenTcp(host, port, (s) => serveSocks5(s, opts, dial));
}

export function listenHttpConnect(host: string, port: number, dial: Dialer, opts: HttpConnectOptions = {}): Promise<net.Server> {
  return listenTcp(host, port, (s) => serveHttpConnect(s, opts, dial));
}

export function listenForward(spec: ForwardSpec, dial: Dialer): Promise<net.Server> {
  return listenTcp(spec.listenHost, spec.listenPort, (s) => serveForward(s, spec.target, dial));
}
