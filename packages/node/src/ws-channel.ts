import type { Socket } from 'node:net';
import type { ByteChannel, ChannelHandlers, KernelPathInfo } from '@plait/core';
import WebSocket from 'ws';
import { kernelInfoOf } from './socket-channel.js';

const NOOP: ChannelHandlers = { data: () => undefined, drain: () => undefined, close: () => undefined };

/**
 * Largest WebSocket message either side accepts (ws `maxPayload`), and the
 * most one `write` puts in one message. Messages carry no meaning beyond
 * their bytes (PROTOCOL.md, WebSocket transport), so a long write is split;
 * a peer's bigger message is refused (close 1009) before it is buffered.
 */
export const WS_MAX_PAYLOAD = 256 * 1024;

/** `write` returns false once this much waits in ws's and the socket's queues; drain comes when it falls below. */
export const WS_HIGH_WATER_MARK = 256 * 1024;

/** The subprotocol a plait client offers and a plait server selects (optional on the server side). */
export const WS_SUBPROTOCOL = 'plait';

/** A graceful close that the peer does not complete is cut after this (ms). */
const CLOSE_LINGER_MS = 5_000;

/** Why a WebSocket subflow broke the transport's rules. */
export class WebSocketChannelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebSocketChannelError';
  }
}

export interface WebSocketChannelOptions {
  localLabel: string;
  remoteLabel: string;
  /** The TCP connection underneath (under TLS, if any): its TCP_INFO is the subflow's kernel view. */
  tcp?: Socket;
  /** Default WS_HIGH_WATER_MARK. */
  highWaterMark?: number;
}

/**
 * An open WebSocket as a subflow channel: the byte stream travels in binary
 * messages whose boundaries mean nothing. Backpressure is real: `write`
 * returns false while `bufferedAmount` is at or over the high-water mark,
 * and `drain` fires when a completed send brings it below. `pause`/`resume`
 * stop and restart reading from the socket (messages ws had already parsed
 * are held, not delivered, until `resume`).
 */
export class WebSocketChannel implements ByteChannel {
  private handlers: ChannelHandlers = NOOP;
  private attached = false;
  /** Received before a consumer was attached, or while paused: at most what ws parsed from one socket read. */
  private held: Uint8Array[] = [];
  private paused = false;
  private drainOwed = false;
  private closed = false;
  /** A text message or other breach: nothing more is delivered. */
  private failed = false;
  private closeError: Error | undefined;
  private readonly highWaterMark: number;
  private readonly tcp: Socket | undefined;
  readonly localLabel: string;
  readonly remoteLabel: string;

  constructor(
    readonly ws: WebSocket,
    opts: WebSocketChannelOptions,
  ) {
    this.localLabel = opts.localLabel;
    this.remoteLabel = opts.remoteLabel;
    this.highWaterMark = opts.highWaterMark ?? WS_HIGH_WATER_MARK;
    this.tcp = opts.tcp;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('error', (err: Error) => {
      this.closeError ??= describeWsError(err);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.closed) return;
      this.closed = true;
      if (!this.closeError && code !== 1000 && code !== 1005) {
        const why = reason.length > 0 ? `: ${reason.toString('utf8').slice(0, 200)}` : '';
        this.closeError = new WebSocketChannelError(`WebSocket closed with code ${code}${why}`);
      }
      // Bytes that arrived before the close are still the peer's, in order: an attached
      // consumer gets them now (even if paused: no more will come), a later one on attach.
      if (this.attached) this.deliverHeld(true);
      this.handlers.close(this.closeError);
    });
  }

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (this.failed || this.closed) return;
    if (!isBinary) {
      this.fail(1003, 'plait: binary messages only', 'the peer sent a WebSocket text message; plait subflows carry binary messages only');
      return;
    }
    const chunk = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data;
    if (chunk.length === 0) return;
    if (!this.attached || this.paused || this.held.length > 0) this.held.push(chunk);
    else this.handlers.data(chunk);
  }

  /** Close with `code` and remember why; the consumer hears `message` in its close. */
  private fail(code: number, reason: string, message: string): void {
    this.failed = true;
    this.held = [];
    this.closeError ??= new WebSocketChannelError(message);
    this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), 1_000).unref();
  }

  setHandlers(h: ChannelHandlers): void {
    this.handlers = h;
    this.attached = true;
    this.deliverHeld(this.closed);
    if (this.closed) h.close(this.closeError);
  }

  private deliverHeld(evenIfPaused = false): void {
    while (this.attached && (evenIfPaused || !this.paused) && this.held.length > 0 && !this.failed) {
      const c = this.held.shift()!;
      this.handlers.data(c);
    }
  }

  write(data: Uint8Array): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    for (let off = 0; off < data.length; off += WS_MAX_PAYLOAD) {
      const part = off === 0 && data.length <= WS_MAX_PAYLOAD ? data : data.subarray(off, Math.min(data.length, off + WS_MAX_PAYLOAD));
      this.ws.send(part, { binary: true, compress: false }, this.afterSend);
    }
    if (this.ws.bufferedAmount < this.highWaterMark) return true;
    this.drainOwed = true;
    return false;
  }

  /** A send reached the socket: if a writer is waiting and the queue fell below the mark, let it go on. */
  private readonly afterSend = (err?: Error): void => {
    if (err || !this.drainOwed || this.closed) return;
    if (this.ws.bufferedAmount >= this.highWaterMark) return;
    this.drainOwed = false;
    this.handlers.drain();
  };

  end(): void {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close(1000);
    // A peer that never answers our close frame must not keep the socket forever.
    setTimeout(() => this.ws.terminate(), CLOSE_LINGER_MS).unref();
  }

  destroy(error?: Error): void {
    if (error) this.closeError ??= error;
    this.ws.terminate();
  }

  kernelInfo(): KernelPathInfo | undefined {
    return this.tcp ? kernelInfoOf(this.tcp) : undefined;
  }

  pause(): void {
    this.paused = true;
    this.ws.pause();
  }

  resume(): void {
    this.paused = false;
    this.ws.resume();
    this.deliverHeld();
  }
}

/** ws's errors (bad frames, oversize messages) in words that name the transport. */
function describeWsError(err: Error): Error {
  const code = (err as { code?: unknown }).code;
  if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
    return new WebSocketChannelError(`the peer sent a WebSocket message over ${WS_MAX_PAYLOAD} bytes (${err.message})`);
  }
  if (typeof code === 'string' && code.startsWith('WS_ERR_')) return new WebSocketChannelError(`bad WebSocket frame from the peer: ${err.message}`);
  return err;
}
