import * as http from 'node:http';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { hostPort, WebSocketChannel, WS_MAX_PAYLOAD, WS_SUBPROTOCOL } from '@plait/node';
import { WebSocketServer } from 'ws';

export interface WebSocketListenOptions {
  host: string;
  port: number;
  /** The URL path clients upgrade at, e.g. /plait; other paths get 404. */
  path: string;
  /**
   * A WebSocket subflow is open. `source` is the client's address for the
   * per-source handshake limits: the connection's peer, or, when that peer
   * is a reverse proxy on this machine (loopback), the address the proxy
   * appended to X-Forwarded-For.
   */
  onChannel(channel: WebSocketChannel, source: string, tcp: Socket): void;
  /** A connection that has not sent its whole upgrade request by then is closed (ms; default 5000). */
  headersTimeoutMs?: number;
  /**
   * Connections still before their upgrade, held at once (default 512);
   * one more evicts the oldest, so idle strangers cannot keep a client out.
   */
  maxPendingUpgrades?: number;
}

/** The HTTP request before the upgrade must come at once and be small: strangers get a few KiB and seconds. */
const HEADERS_TIMEOUT_MS = 5_000;
const MAX_HEADER_BYTES = 8 * 1024;

/**
 * Accepts plait subflows as WebSockets at ws://HOST:PORT/PATH (plain HTTP:
 * TLS, if any, ends at a reverse proxy in front). Every other request is
 * answered with an error and closed.
 */
export class WebSocketListener {
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  /** Requests and upgrades refused before reaching the handshake (wrong path, not an upgrade). */
  refused = 0;
  /** Connections evicted before their upgrade because too many were pending. */
  evicted = 0;
  /** Connections not yet upgraded, oldest first (a Set keeps insertion order). */
  private readonly pending = new Set<Socket>();

  constructor(private readonly opts: WebSocketListenOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: WS_MAX_PAYLOAD,
      perMessageDeflate: false,
      clientTracking: false,
      skipUTF8Validation: true,
      // Select `plait` when offered; a client that offers nothing is served too.
      handleProtocols: (offered) => (offered.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
    const timeout = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
    this.http = http.createServer(
      {
        maxHeaderSize: MAX_HEADER_BYTES,
        requestTimeout: timeout,
        headersTimeout: timeout,
        // Node checks those timeouts only this often (default 30 s): check at a fraction of the timeout.
        connectionsCheckingInterval: Math.max(100, Math.floor(timeout / 5)),
      },
      (req, res) => {
        this.refused++;
        res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket', connection: 'close' });
        res.end(`plait WebSocket endpoint: point a plait client at ws://HOST:PORT${opts.path}\n`);
      },
    );
    this.http.keepAliveTimeout = 1_000;
    const maxPending = opts.maxPendingUpgrades ?? 512;
    this.http.on('connection', (socket: Socket) => {
      this.pending.add(socket);
      socket.once('close', () => this.pending.delete(socket));
      if (this.pending.size > maxPending) {
        const oldest = this.pending.values().next().value!;
        this.pending.delete(oldest);
        this.evicted++;
        oldest.destroy();
      }
    });
    this.http.on('clientError', (_err, socket: Duplex) => socket.destroy());
    this.http.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket as Socket, head));
  }

  private onUpgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    this.pending.delete(socket); // from here the acceptor's handshake limits apply
    socket.on('error', () => undefined); // reported through the channel's close, or nobody's business before it
    const path = (req.url ?? '').split('?')[0];
    if (path !== this.opts.path || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      this.refused++;
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      setTimeout(() => socket.destroy(), 1_000).unref();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const peer = hostPort(socket.remoteAddress, socket.remotePort);
      const forwarded = forwardedFor(socket.remoteAddress, req.headers['x-forwarded-for']);
      const channel = new WebSocketChannel(ws, {
        localLabel: `ws://${hostPort(socket.localAddress, socket.localPort)}${this.opts.path}`,
        remoteLabel: forwarded ? `${forwarded} via ${peer}` : peer,
        tcp: socket,
      });
      this.opts.onChannel(channel, forwarded ?? socket.remoteAddress ?? '?', socket);
    });
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => {
        this.http.off('error', reject);
        resolve(this.http.address() as AddressInfo);
      });
    });
  }

  get address(): AddressInfo {
    return this.http.address() as AddressInfo;
  }

  close(): Promise<void> {
    this.http.closeAllConnections();
    return new Promise<void>((r) => this.http.close(() => r()));
  }
}

/**
 * The client address a reverse proxy on this machine reports: the last
 * X-Forwarded-For entry (the one the proxy itself appended; earlier ones are
 * whatever the client claimed). Ignored unless the peer is loopback, so a
 * remote client cannot pick its own source address for the limits.
 */
export function forwardedFor(peer: string | undefined, header: string | string[] | undefined): string | undefined {
  if (!peer || header === undefined) return undefined;
  const v4 = peer.startsWith('::ffff:') ? peer.slice(7) : peer;
  const loopback = v4 === '::1' || (isIP(v4) === 4 && v4.startsWith('127.'));
  if (!loopback) return undefined;
  const list = (Array.isArray(header) ? header.join(',') : header).split(',');
  const last = list[list.length - 1]!.trim();
  return isIP(last) !== 0 ? last : undefined;
}
