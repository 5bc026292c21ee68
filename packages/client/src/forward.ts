import { isIPv6 } from 'node:net';
import type * as net from 'node:net';
import { pipeBoth, type Dialer, type Target, servingUntilClosed } from './dialer.js';

export interface ForwardSpec {
  listenHost: string;
  listenPort: number;
  target: Target;
}

const DEFAULT_LISTEN_HOST = '127.0.0.1';
const USAGE = 'expected LPORT:HOST:PORT or LHOST:LPORT:HOST:PORT (IPv6 hosts in brackets)';

/** Splits on ':' outside brackets; bracketed parts keep their brackets so the caller can tell. */
export function splitSpec(spec: string): string[] | string {
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    let part: string;
    if (spec[i] === '[') {
      const close = spec.indexOf(']', i);
      if (close < 0) return 'unclosed "["';
      part = spec.slice(i, close + 1);
      i = close + 1;
      if (i < spec.length && spec[i] !== ':') return `unexpected "${spec[i] ?? ''}" after "${part}"`;
    } else {
      const colon = spec.indexOf(':', i);
      part = colon < 0 ? spec.slice(i) : spec.slice(i, colon);
      i = colon < 0 ? spec.length : colon;
    }
    parts.push(part);
    if (i >= spec.length) return parts;
    i++; // skip ':'
  }
}

/** A spec's host part: a name, an IPv4 address or a bracketed IPv6 one (returned without brackets). */
export function parseHost(part: string, what: string, spec: string, kind = 'forward'): string {
  const fail = (why: string): never => {
    throw new Error(`invalid ${kind} spec "${spec}": ${what} ${why}`);
  };
  if (part.startsWith('[')) {
    const inner = part.slice(1, -1);
    if (!isIPv6(inner)) fail(`"${part}" is not a bracketed IPv6 address`);
    return inner;
  }
  if (part === '') fail('is empty');
  if (/[\s/\\@[\]?#%]/.test(part)) fail(`"${part}" is not a valid host`);
  return part;
}

export function parsePort(part: string, what: string, spec: string, min: number, kind = 'forward'): number {
  const port = /^\d{1,5}$/.test(part) ? Number(part) : NaN;
  if (!(port >= min && port <= 65535)) {
    throw new Error(`invalid ${kind} spec "${spec}": ${what} "${part}" is not a number from ${min} to 65535`);
  }
  return port;
}

/**
 * Parses "LPORT:HOST:PORT" or "LHOST:LPORT:HOST:PORT" (IPv6 hosts in
 * brackets, e.g. "[::1]:8080:[2001:db8::1]:80"). The listen host defaults to
 * 127.0.0.1 so a forward is not exposed to the network by accident; listen
 * port 0 asks for any free port.
 */
export function parseForwardSpec(spec: string): ForwardSpec {
  const parts = splitSpec(spec.trim());
  if (typeof parts === 'string') throw new Error(`invalid forward spec "${spec}": ${parts}; ${USAGE}`);
  let listenHost = DEFAULT_LISTEN_HOST;
  let rest = parts;
  if (parts.length === 4) {
    listenHost = parseHost(parts[0] ?? '', 'listen host', spec);
    rest = parts.slice(1);
  } else if (parts.length !== 3) {
    throw new Error(`invalid forward spec "${spec}": ${USAGE}`);
  }
  const [lport = '', host = '', port = ''] = rest;
  return {
    listenHost,
    listenPort: parsePort(lport, 'listen port', spec, 0),
    target: { host: parseHost(host, 'target host', spec), port: parsePort(port, 'target port', spec, 1) },
  };
}

/**
 * Serves one connection accepted on a forward's listener: dials the fixed
 * target and joins the two. Bytes the client sends meanwhile wait in the
 * socket. On a failed dial the client gets a reset, so it sees an error
 * rather than an empty but successful connection. Resolves when the client
 * socket has closed; never rejects.
 */
export function serveForward(socket: net.Socket, target: Target, dial: Dialer): Promise<void> {
  return servingUntilClosed(socket, () => {
    socket.pause();
    dial(target).then(
      (remote) => {
        if (socket.destroyed) remote.destroy();
        else pipeBoth(socket, remote);
      },
      () => {
        if (!socket.destroyed) socket.resetAndDestroy();
      },
    );
  });
}
