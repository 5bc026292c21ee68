import * as net from 'node:net';
import { adoptSlabReads } from '@plait/node';
import type { Dialer } from './dialer.js';
import { serveForward, type ForwardSpec } from './forward.js';
import { serveHttpConnect, type HttpConnectOptions } from './http-connect.js';
import { serveSocks5, type Socks5Options } from './socks5.js';
import { TransparentFrontend, type TransparentOptions } from './transparent.js';

/** Listen on host:port, handing each connection to `serve`; resolves with the bound server. */
export function listenTcp(host: string, port: number, serve: (socket: net.Socket) => Promise<void>): Promise<net.Server> {
  return listenOn({ port, host }, serve);
}

/** As listenTcp, at any net.Server listen target (an address, or a descriptor made elsewhere). */
function listenOn(at: net.ListenOptions | { fd: number }, serve: (socket: net.Socket) => Promise<void>): Promise<net.Server> {
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
    const listening = (): void => {
      server.off('error', reject);
      resolve(server);
    };
    if ('fd' in at) server.listen({ fd: at.fd }, listening);
    else server.listen(at, listening);
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

/**
 * `--redirect` (a plain listener; REDIRECT rules send connections here) or
 * `--tproxy` (a listener with IP_TRANSPARENT, made by `listenTransparentFd`).
 */
export async function listenTransparent(at: { host: string; port: number } | { fd: number }, opts: TransparentOptions, dial: Dialer): Promise<net.Server> {
  const frontend = new TransparentFrontend(opts, dial);
  const server = await listenOn('fd' in at ? { fd: at.fd } : { host: at.host, port: at.port }, frontend.serve);
  frontend.listening((server.address() as net.AddressInfo).port);
  return server;
}
