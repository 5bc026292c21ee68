import { createHash, timingSafeEqual } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type * as net from 'node:net';
import { realClock, ResetCode, type Clock } from '@plait/core';
import { DialError, endGracefully, pipeBoth, type Dialer, type Target, servingUntilClosed } from './dialer.js';

export interface HttpConnectOptions {
  /** Drop a client that has not sent a complete header block by then (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Largest accepted request header block, request line included (default 16 KiB). */
  maxHeaderBytes?: number;
  /** Require these credentials in a `Proxy-Authorization: Basic` header (RFC 7617), else answer 407. */
  auth?: { username: string; password: string };
  /** Timers of the handshake and of the linger after an error response (tests give a virtual one). */
  clock?: Clock;
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^(\S+) (\S+) HTTP\/(\d)\.(\d)$/;
const HEADER_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\0\r\n]*$/;

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function errorResponse(status: number, body: string, extraHeaders: string[] = []): string {
  const text = `${body}\n`;
  return [
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}`,
    ...extraHeaders,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(text)}`,
    'Connection: close',
    '',
    text,
  ].join('\r\n');
}

/** Compares without leaking where (or whether the lengths) differ. */
function safeEqual(a: Buffer, b: Buffer): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

const BASIC = /^basic +([A-Za-z0-9+/]+={0,2})$/i;

/**
 * Whether the header block's Proxy-Authorization carries `auth`: 'ok',
 * 'denied' (missing or wrong), or 'ambiguous' (more than one such header).
 * User name and password are both compared in constant time, always.
 */
export function checkProxyAuthorization(headerLines: string[], auth: { username: string; password: string }): 'ok' | 'denied' | 'ambiguous' {
  const values: string[] = [];
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (line.slice(0, colon).toLowerCase() === 'proxy-authorization') values.push(line.slice(colon + 1).trim());
  }
  if (values.length > 1) return 'ambiguous';
  const m = BASIC.exec(values[0] ?? '');
  const decoded = m ? Buffer.from(m[1]!, 'base64') : Buffer.alloc(0);
  const colon = decoded.indexOf(0x3a);
  const user = colon < 0 ? decoded : decoded.subarray(0, colon);
  const pass = colon < 0 ? Buffer.alloc(0) : decoded.subarray(colon + 1);
  const userOk = safeEqual(user, Buffer.from(auth.username, 'utf8'));
  const passOk = safeEqual(pass, Buffer.from(auth.password, 'utf8'));
  return m !== null && colon >= 0 && userOk && passOk ? 'ok' : 'denied';
}

/** HTTP status for a failed dial, with a short explanation. */
export function httpStatusFor(err: unknown): { status: number; body: string } {
  if (!(err instanceof DialError)) return { status: 502, body: 'could not connect to the target' };
  switch (err.code) {
    case ResetCode.TIMEOUT:
      return { status: 504, body: 'connecting to the target timed out' };
    case ResetCode.NOT_ALLOWED:
      return { status: 403, body: 'the target is not allowed by the server' };
    case ResetCode.REFUSED:
      return { status: 502, body: 'the target refused the connection' };
    case ResetCode.HOST_UNREACHABLE:
    case ResetCode.NETWORK_UNREACHABLE:
      return { status: 502, body: 'the target is unreachable' };
    case ResetCode.DNS_FAILED:
      return { status: 502, body: 'the target host name could not be resolved' };
    case ResetCode.LIMIT:
      return { status: 503, body: 'too many connections' };
    default:
      return { status: 502, body: 'could not connect to the target' };
  }
}

/** Parses CONNECT's authority-form target: "host:port" or "[v6]:port". Null when malformed. */
export function parseAuthority(s: string): Target | null {
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') return null;
    host = s.slice(1, close);
    if (!isIPv6(host) || host.includes('%')) return null;
    portText = s.slice(close + 2);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon <= 0) return null;
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    // An unbracketed colon would make the host/port split ambiguous.
    if (host.includes(':') || /[\s/\\@[\]?#%]/.test(host)) return null;
  }
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535) return null;
  return { host, port };
}

/** Index just past the blank line ending the header block, searching from `from`; -1 if not there yet. */
function headerEnd(buf: Buffer, from: number): number {
  for (let i = buf.indexOf(0x0a, from); i >= 0; i = buf.indexOf(0x0a, i + 1)) {
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/**
 * Serves one accepted HTTP proxy connection: a single CONNECT request, then
 * a raw tunnel. Resolves when the client socket has closed; never rejects.
 */
export function serveHttpConnect(socket: net.Socket, opts: HttpConnectOptions, dial: Dialer): Promise<void> {
  return servingUntilClosed(socket, () => {
    const maxHeaderBytes = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    let buf: Buffer = Buffer.alloc(0);
    let searched = 0;
    let handshakeOver = false;
    const clock = opts.clock ?? realClock;

    const stopReading = (): void => {
      handshakeOver = true;
      timer.cancel();
      socket.off('data', onData);
      socket.pause();
    };
    const respond = (status: number, body: string, extra?: string[]): void => {
      stopReading();
      endGracefully(socket, errorResponse(status, body, extra), undefined, clock);
    };

    const timer = clock.setTimeout(
      () => respond(408, 'request header not received in time'),
      opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    );

    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      // Empty lines before the request line are tolerated (RFC 9112 section 2.2).
      if (searched === 0) {
        let skip = 0;
        while (buf[skip] === 0x0d || buf[skip] === 0x0a) skip++;
        buf = buf.subarray(skip);
      }
      // Only the new bytes need scanning; back up 2 for a terminator split across chunks.
      const end = headerEnd(buf, Math.max(0, searched - 2));
      searched = buf.length;
      if (end < 0) {
        if (buf.length > maxHeaderBytes) respond(431, 'request header too large');
        return;
      }
      if (end > maxHeaderBytes) {
        respond(431, 'request header too large');
        return;
      }
      const head = buf.subarray(0, end).toString('latin1');
      const rest = buf.subarray(end);
      buf = Buffer.alloc(0);
      try {
        handle(head, rest);
      } catch {
        // A parser bug must cost this connection, not the process with every other one.
        stopReading();
        socket.destroy();
      }
    };

    const handle = (head: string, rest: Buffer): void => {
      const lines = head.split(/\r?\n/);
      // The block ends with a blank line, so split leaves two empty strings at the end.
      lines.splice(-2);
      const m = REQUEST_LINE.exec(lines[0] ?? '');
      if (!m || !TOKEN.test(m[1] ?? '') || m[3] !== '1' || (m[4] !== '0' && m[4] !== '1')) {
        respond(400, 'malformed request');
        return;
      }
      for (const line of lines.slice(1)) {
        if (!HEADER_LINE.test(line)) {
          respond(400, 'malformed header line');
          return;
        }
      }
      if (m[1] !== 'CONNECT') {
        respond(405, 'this proxy only supports CONNECT', ['Allow: CONNECT']);
        return;
      }
      // Checked before the target is even parsed: a stranger learns nothing about it.
      if (opts.auth) {
        const verdict = checkProxyAuthorization(lines.slice(1), opts.auth);
        if (verdict === 'ambiguous') {
          respond(400, 'more than one Proxy-Authorization header');
          return;
        }
        if (verdict === 'denied') {
          respond(407, 'proxy credentials required', ['Proxy-Authenticate: Basic realm="plait"']);
          return;
        }
      }
      const target = parseAuthority(m[2] ?? '');
      if (!target) {
        respond(400, 'CONNECT target must be host:port');
        return;
      }
      stopReading();
      void connect(target, rest);
    };

    const connect = async (target: Target, early: Buffer): Promise<void> => {
      let remote;
      try {
        remote = await dial(target);
      } catch (err) {
        if (socket.destroyed) return;
        const { status, body } = httpStatusFor(err);
        endGracefully(socket, errorResponse(status, body), undefined, clock);
        return;
      }
      if (socket.destroyed) {
        remote.destroy();
        return;
      }
      socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
      // Bytes the client sent right after the header block (e.g. a TLS ClientHello).
      if (early.length > 0) remote.write(early);
      pipeBoth(socket, remote);
    };

    socket.on('data', onData);
    socket.once('end', () => {
      if (!handshakeOver) {
        stopReading();
        socket.destroy();
      }
    });
  });
}
