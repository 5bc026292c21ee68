import { isIP, type Socket } from 'node:net';
import * as tls from 'node:tls';
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { hostPort } from './socket-channel.js';
import { WebSocketChannel, WS_MAX_PAYLOAD, WS_SUBPROTOCOL } from './ws-channel.js';

export interface WebSocketDialOptions {
  /** ws://HOST:PORT/PATH or wss://HOST:PORT/PATH. */
  url: URL;
  /**
   * A TCP connection to the URL's host and port, already made by the caller
   * (so a path's source address or interface applies to WebSocket subflows too).
   */
  socket: Socket;
  /** wss: the CAs to trust instead of Node's built-in list (a private CA); PEM. */
  ca?: string | Buffer;
}

/** The dial failed at the TLS, HTTP or WebSocket step; `code` says which, for the path's problem report. */
export class WebSocketDialError extends Error {
  constructor(
    readonly code: 'WS_TLS' | 'WS_HTTP_STATUS' | 'WS_NOT_PLAIT' | 'WS_HANDSHAKE',
    message: string,
    readonly tlsCode?: string,
  ) {
    super(message);
    this.name = 'WebSocketDialError';
  }
}

/**
 * Opens a plait WebSocket subflow over `socket`: TLS first for wss://
 * (certificate and host name verified, always), then the HTTP upgrade
 * offering the `plait` subprotocol. Resolves with the channel once the
 * server has switched protocols; on failure the socket is destroyed.
 * The caller bounds the time (its clock's deadline).
 */
export async function dialWebSocket(opts: WebSocketDialOptions): Promise<WebSocketChannel> {
  const { url, socket } = opts;
  const localLabel = hostPort(socket.localAddress, socket.localPort);
  let transport: Socket = socket;
  if (url.protocol === 'wss:') transport = await startTls(socket, hostOf(url), opts.ca);
  const remoteLabel = `${url.protocol}//${url.host}${url.pathname}`;
  return new Promise<WebSocketChannel>((resolve, reject) => {
    const ws = new WebSocket(url, [WS_SUBPROTOCOL], {
      createConnection: () => transport,
      maxPayload: WS_MAX_PAYLOAD,
      perMessageDeflate: false, // records are encrypted: nothing to compress
      followRedirects: false,
      skipUTF8Validation: true, // text messages are refused anyway
    });
    let settled = false;
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      ws.terminate();
      transport.destroy();
      reject(e);
    };
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume();
      fail(new WebSocketDialError('WS_HTTP_STATUS', `${remoteLabel} answered HTTP ${res.statusCode ?? '?'} instead of a WebSocket upgrade (wrong URL path, or the proxy does not pass WebSocket upgrades)`));
    });
    ws.once('error', (e: Error) => {
      const notPlait = /subprotocol/i.test(e.message);
      fail(
        notPlait
          ? new WebSocketDialError('WS_NOT_PLAIT', `${remoteLabel} is a WebSocket endpoint but not a plait server (${e.message})`)
          : Object.assign(new WebSocketDialError('WS_HANDSHAKE', `WebSocket upgrade at ${remoteLabel} failed: ${e.message}`), errnoOf(e)),
      );
    });
    ws.once('open', () => {
      if (settled) return;
      settled = true;
      ws.removeAllListeners('error');
      resolve(new WebSocketChannel(ws, { localLabel, remoteLabel, tcp: socket }));
    });
  });
}

function hostOf(url: URL): string {
  // URL keeps IPv6 hosts in brackets.
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

function errnoOf(e: Error): { errno?: string } {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? { errno: code } : {};
}

/** TLS over the connected socket with verification on; the host name (or IP) must match the certificate. */
function startTls(socket: Socket, host: string, ca: string | Buffer | undefined): Promise<tls.TLSSocket> {
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const t = tls.connect({
      socket,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      host,
      ...(ca !== undefined ? { ca } : {}),
      ALPNProtocols: ['http/1.1'],
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
    });
    t.once('secureConnect', () => {
      t.removeAllListeners('error');
      resolve(t);
    });
    t.once('error', (e: Error) => {
      t.destroy();
      socket.destroy();
      const code = (e as { code?: unknown }).code;
      const tlsCode = typeof code === 'string' ? code : undefined;
      const hint = ca === undefined && tlsCode !== undefined && /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME/.test(tlsCode)
        ? ' (for a private CA, give its certificate with --ca FILE)'
        : '';
      reject(new WebSocketDialError('WS_TLS', `TLS with ${host} failed: ${e.message}${hint}`, tlsCode));
    });
  });
}
