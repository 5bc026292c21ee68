import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { realClock, type Clock, type Timer } from '@plait/core';

export interface LivePushOptions {
  /** The stats JSON to push (computed once per tick for every client). */
  snapshot(): string;
  /**
   * False once the stats server is closing: live pages are then cut at the
   * next tick (an http.Server's close waits for every upgraded socket).
   */
  isOpen?(): boolean;
  /** Push period (ms); the page expects at least one a second. Default 1000. */
  intervalMs?: number;
  /** Live pages at once; one more is refused with 503. Default 16. */
  maxClients?: number;
  /**
   * A client with more than this still queued when the next push is due is
   * not keeping up: it is dropped, not buffered for. Default 1 MiB.
   */
  maxBufferedBytes?: number;
  /** Times the pushes (default: the real clock, unref'd); tests drive a virtual one. */
  clock?: Clock;
}

/**
 * The stats port's `/live` WebSocket: pushes the stats JSON to each live
 * page on connect and then every `intervalMs`. The caller has checked the
 * request (Host, Origin, ...) before handing the upgrade here. Clients send
 * nothing: any message over a few bytes closes them.
 */
export class LivePush {
  private readonly wss: WebSocketServer;
  private readonly clients = new Set<WebSocket>();
  private timer: Timer | undefined;
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly maxClients: number;
  private readonly maxBuffered: number;
  /** Dropped for not keeping up (for tests and logs). */
  dropped = 0;

  constructor(private readonly opts: LivePushOptions) {
    this.clock = opts.clock ?? realClock;
    this.intervalMs = opts.intervalMs ?? 1_000;
    this.maxClients = opts.maxClients ?? 16;
    this.maxBuffered = opts.maxBufferedBytes ?? 1024 * 1024;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false, clientTracking: false });
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Take an upgrade request for /live (already checked by the caller). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.clients.size >= this.maxClients) {
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nplait stats: ${this.maxClients} live pages open already; the page polls /stats instead\n`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.add(ws));
  }

  private add(ws: WebSocket): void {
    this.clients.add(ws);
    ws.on('error', () => undefined);
    ws.on('message', () => ws.close(1008, 'this endpoint only pushes'));
    ws.on('close', () => {
      this.clients.delete(ws);
      if (this.clients.size === 0) this.stopTimer();
    });
    this.send(ws, this.opts.snapshot());
    this.timer ??= this.clock.setTimeout(() => this.tick(), this.intervalMs);
  }

  private tick(): void {
    this.timer = undefined;
    if (this.opts.isOpen?.() === false) {
      this.close();
      return;
    }
    if (this.clients.size === 0) return;
    const json = this.opts.snapshot();
    for (const ws of this.clients) this.send(ws, json);
    // Re-armed after each push (the clock has one-shot timers only).
    this.timer = this.clock.setTimeout(() => this.tick(), this.intervalMs);
  }

  private send(ws: WebSocket, json: string): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > this.maxBuffered) {
      // A stalled reader: drop it (the page falls back to polling) rather than queue for it without bound.
      this.dropped++;
      this.clients.delete(ws);
      ws.terminate();
      return;
    }
    ws.send(json);
  }

  private stopTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  close(): void {
    this.stopTimer();
    for (const ws of this.clients) ws.terminate();
    this.clients.clear();
  }
}

/**
 * Whether a WebSocket request may read the stats: browsers do not apply
 * the same-origin policy to WebSockets, so a page on another site could
 * open ws://127.0.0.1:PORT/live (its Host header would be allowed). Such a
 * request carries that site's Origin; only the stats page's own origin
 * (http://HOST with the request's Host), or no Origin (not a browser), is let in.
 */
export function isAllowedLiveOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  if (host === undefined) return false;
  return origin.toLowerCase() === `http://${host.toLowerCase()}`;
}
