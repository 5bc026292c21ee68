import type { Socket } from 'node:net';
import { RecordSealer, type ByteChannel, type ChannelHandlers, type KernelPathInfo } from '@plait/core';
import { slabOf, type ReadSlab } from './slab-read.js';
import { loadSockOpts } from './tcp-sockopt.js';

const NOOP: ChannelHandlers = { data: () => undefined, drain: () => undefined, close: () => undefined };

/** A TCP socket as a subflow channel. Handlers can be swapped (handshake, then session). */
export class SocketChannel implements ByteChannel {
  private handlers: ChannelHandlers = NOOP;
  private early: Uint8Array[] = [];
  private earlyBytes = 0;
  /** Bytes the socket delivered (its read slab's position at the end of the last chunk delivered). */
  private received = 0;
  private slab: ReadSlab | undefined;
  private attached = false;
  private closed = false;
  private closeError: Error | undefined;
  readonly localLabel: string;
  readonly remoteLabel: string;

  constructor(readonly socket: Socket) {
    socket.setNoDelay(true); // records are batched already; Nagle would only add delay
    socket.setKeepAlive(true, 10_000);
    this.localLabel = hostPort(socket.localAddress, socket.localPort);
    this.remoteLabel = hostPort(socket.remoteAddress, socket.remotePort);
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.attached) this.handlers.data(chunk);
      else {
        this.early.push(chunk);
        this.earlyBytes += chunk.length;
      }
    });
    socket.on('drain', () => this.handlers.drain());
    socket.on('error', (err) => {
      this.closeError ??= err;
    });
    socket.on('close', () => {
      if (this.closed) return;
      this.closed = true;
      this.handlers.close(this.closeError);
    });
  }

  setHandlers(h: ChannelHandlers): void {
    this.handlers = h;
    this.attached = true;
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    for (const c of early) h.data(c);
    if (this.closed) h.close(this.closeError);
  }

  write(data: Uint8Array): boolean {
    if (this.socket.destroyed) return false;
    const ok = this.socket.write(data);
    // Nothing queued: the kernel took the bytes synchronously and Node keeps
    // no reference, so a sealed record's memory can be reused for the next
    // one (fewer external allocations, fewer full GCs). No-op for other data.
    if (this.socket.writableLength === 0) RecordSealer.recycle(data);
    return ok;
  }
  /**
   * The consumer keeps views of only its last `bytes` bytes: the socket's
   * read slabs before them can be reused (see ReadSlab.release).
   */
  holding(bytes: number): void {
    this.slab ??= slabOf(this.socket);
    this.slab?.release(this.received - this.earlyBytes - bytes);
  }
  end(): void {
    this.socket.end();
    // A peer that never answers our FIN must not keep the socket forever.
    setTimeout(() => this.socket.destroy(), 5_000).unref();
  }
  destroy(error?: Error): void {
    this.socket.destroy(error);
  }
  pause(): void {
    this.socket.pause();
  }
  kernelInfo(): KernelPathInfo | undefined {
    return kernelInfoOf(this.socket);
  }
  resume(): void {
    this.socket.resume();
  }
}

/** Linux TCP_INFO of a socket as a subflow's kernel view (undefined where unavailable). */
export function kernelInfoOf(socket: Socket): KernelPathInfo | undefined {
  const i = loadSockOpts().tcpInfo(socket);
  if (!i) return undefined;
  return {
    rttMs: i.rttUs / 1000,
    minRttMs: i.minRttUs / 1000,
    cwnd: i.sndCwnd,
    unackedSegments: i.unacked,
    notsentBytes: i.notsentBytes,
    totalRetrans: i.totalRetrans,
    deliveryRateBytesPerSec: Number.isFinite(i.deliveryRateBytesPerSec) ? i.deliveryRateBytesPerSec : 0,
    caState: i.caState,
    mss: i.sndMss,
  };
}

export function hostPort(host: string | undefined, port: number | undefined): string {
  if (!host) return '?';
  return host.includes(':') ? `[${host}]:${port ?? '?'}` : `${host}:${port ?? '?'}`;
}
