/**
 * `plait client --redirect` / `--tproxy`: connections the router's firewall
 * sent to us instead of to where they were going (nftables/iptables REDIRECT,
 * or TPROXY). Each one is carried like a SOCKS stream to its original
 * destination: for REDIRECT the kernel's NAT table knows it (SO_ORIGINAL_DST),
 * for TPROXY it is the accepted socket's own local address.
 *
 * A connection with no original destination (koffi missing, a connection made
 * straight to our port, or one whose destination is this listener itself, a
 * loop) is dropped with a reset and counted; each kind is logged once at warn
 * (repeats at debug), since a misconfigured rule would otherwise log per
 * connection.
 */
import * as net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Counters, TRANSPARENT_COUNTERS } from '@plait/core';
import type { OriginalDst } from '@plait/node';
import type { Dialer } from './dialer.js';
import { serveForward } from './forward.js';
import type { ClientLogger } from './client.js';

export type TransparentMode = 'redirect' | 'tproxy';

export type TransparentCounters = Counters<typeof TRANSPARENT_COUNTERS>;

export interface TransparentOptions {
  mode: TransparentMode;
  /** SO_ORIGINAL_DST (REDIRECT mode); `loadSockOpts().originalDst` in production. */
  originalDst: (socket: net.Socket) => OriginalDst;
  counters: TransparentCounters;
  log: ClientLogger;
  /** Whether an address is this machine's (default: any address of any interface, from os.networkInterfaces). */
  isOwnAddress?: (host: string) => boolean;
}

type DropKind = 'no-destination' | 'loop';

/**
 * One per listener: knows how to find where a connection was going, and
 * which drops it has already logged at warn.
 */
export class TransparentFrontend {
  private readonly warned = new Set<DropKind>();
  private readonly isOwnAddress: (host: string) => boolean;
  /** The port we listen on, once bound (listenTransparent says). */
  private listenerPort: number | undefined;

  constructor(
    private readonly opts: TransparentOptions,
    private readonly dial: Dialer,
  ) {
    this.isOwnAddress = opts.isOwnAddress ?? ownInterfaceAddress;
  }

  listening(port: number): void {
    this.listenerPort = port;
  }

  /** Serves one accepted connection; resolves when it has closed, never rejects. */
  serve = (socket: net.Socket): Promise<void> => {
    const dst = this.destination(socket);
    if (!dst.ok) {
      this.drop(socket, dst.kind, dst.reason);
      return Promise.resolve();
    }
    this.opts.counters.transparentAccepted++;
    return serveForward(socket, { host: dst.host, port: dst.port }, this.dial);
  };

  private destination(socket: net.Socket): { ok: true; host: string; port: number } | { ok: false; kind: DropKind; reason: string } {
    let dst: OriginalDst;
    if (this.opts.mode === 'tproxy') {
      // TPROXY leaves the packet's destination alone: the socket's local end is where it was going.
      const host = socket.localAddress;
      const port = socket.localPort;
      dst = host !== undefined && port !== undefined ? { ok: true, host: unmapped(host), port } : { ok: false, reason: 'the connection is already closed' };
    } else {
      dst = this.opts.originalDst(socket);
    }
    if (!dst.ok) return { ok: false, kind: 'no-destination', reason: dst.reason };
    // Not redirected at all (REDIRECT: the NAT entry is unchanged; either mode: someone connected to
    // our port directly): carrying it would have the server connect back to us, or to nothing useful.
    const unchanged = this.opts.mode === 'redirect' && sameEndpoint(dst, socket.localAddress, socket.localPort);
    if (unchanged || (dst.port === this.listenerPort && this.isOwnAddress(dst.host))) {
      return { ok: false, kind: 'loop', reason: `the original destination ${hostPort(dst.host, dst.port)} is this listener itself (a loop: the connection was made to plait's port directly, or the firewall rule redirects plait's own traffic)` };
    }
    return { ok: true, host: dst.host, port: dst.port };
  }

  private drop(socket: net.Socket, kind: DropKind, reason: string): void {
    if (kind === 'loop') this.opts.counters.transparentLoops++;
    else this.opts.counters.transparentNoDestination++;
    const fields = { from: hostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0), mode: this.opts.mode };
    const msg = `--${this.opts.mode}: dropped a connection: ${reason}`;
    if (this.warned.has(kind)) this.opts.log.debug(fields, msg);
    else {
      this.warned.add(kind);
      this.opts.log.warn(fields, `${msg} (further drops like this are logged at debug level; counted in /stats)`);
    }
    socket.resetAndDestroy();
  }
}

/** ::ffff:a.b.c.d (an IPv4 connection on a dual-stack socket) as a.b.c.d, so the server dials IPv4. */
function unmapped(host: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return m ? m[1]! : host;
}

function sameEndpoint(dst: { host: string; port: number }, host: string | undefined, port: number | undefined): boolean {
  return host !== undefined && dst.port === port && unmapped(dst.host).toLowerCase() === unmapped(host).toLowerCase();
}

function ownInterfaceAddress(host: string): boolean {
  const h = unmapped(host).toLowerCase();
  if (h === '0.0.0.0' || h === '::') return true;
  return Object.values(networkInterfaces()).some((list) => list?.some((a) => a.address.toLowerCase() === h) ?? false);
}

function hostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
