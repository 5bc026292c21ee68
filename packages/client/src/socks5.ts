import { createHash, timingSafeEqual } from 'node:crypto';
import type * as net from 'node:net';
import { formatIPv6, isPlausibleName, realClock, type Clock } from '@plait/core';
import { startUdpAssociation, type Socks5UdpOptions } from './socks5-udp.js';
import { DialError, endGracefully, pipeBoth, socksReplyFor, type Dialer, type Target, servingUntilClosed } from './dialer.js';

export interface Socks5Options {
  /** Require RFC 1929 username/password authentication with these credentials. */
  auth?: { username: string; password: string };
  /** Drop a client that has not sent a complete request by then (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Timers of the handshake and of the linger after an error reply (tests give a virtual one). */
  clock?: Clock;
  /** UDP ASSOCIATE through the session's datagram flows; without it the command is refused (0x07). */
  udp?: Socks5UdpOptions;
}

const VERSION = 0x05;
const AUTH_VERSION = 0x01; // RFC 1929 subnegotiation version
const METHOD_NONE = 0x00;
const METHOD_USERPASS = 0x02;
const METHOD_UNACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const CMD_UDP_ASSOCIATE = 0x03;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

export const SOCKS_REPLY = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** A reply with BND.ADDR 0.0.0.0:0: the address the server bound is not meaningful to the client. */
function reply(code: number): Buffer {
  return Buffer.from([VERSION, code, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}

/** Compares without leaking where (or whether the lengths) differ. */
function safeEqual(a: Buffer, b: Buffer): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

// Moved to the core (datagrams need it too); re-exported for this module's users.
export { formatIPv6 } from '@plait/core';

type Step = 'more' | 'next' | 'stop';

/**
 * Serves one accepted SOCKS5 connection (RFC 1928, CONNECT, and UDP
 * ASSOCIATE when `opts.udp` is given; RFC 1929
 * authentication when `opts.auth` is set). Resolves when the client socket
 * has closed; never rejects.
 */
export function serveSocks5(socket: net.Socket, opts: Socks5Options, dial: Dialer): Promise<void> {
  return servingUntilClosed(socket, () => {
    let phase: 'greeting' | 'auth' | 'request' = 'greeting';
    let buf: Buffer = Buffer.alloc(0);
    let handshakeOver = false;

    const clock = opts.clock ?? realClock;
    const timer = clock.setTimeout(() => socket.destroy(), opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);

    const stopReading = (): void => {
      handshakeOver = true;
      timer.cancel();
      socket.off('data', onData);
      socket.pause();
    };
    const abort = (): void => {
      stopReading();
      socket.destroy();
    };
    const fail = (code: number): void => {
      stopReading();
      endGracefully(socket, reply(code), undefined, clock);
    };

    const greeting = (): Step => {
      if (buf.length < 2) return 'more';
      if (buf[0] !== VERSION) {
        abort();
        return 'stop';
      }
      const n = buf[1] ?? 0;
      if (buf.length < 2 + n) return 'more';
      const methods = buf.subarray(2, 2 + n);
      buf = buf.subarray(2 + n);
      const wanted = opts.auth ? METHOD_USERPASS : METHOD_NONE;
      if (!methods.includes(wanted)) {
        stopReading();
        endGracefully(socket, Buffer.from([VERSION, METHOD_UNACCEPTABLE]), undefined, clock);
        return 'stop';
      }
      socket.write(Buffer.from([VERSION, wanted]));
      phase = opts.auth ? 'auth' : 'request';
      return 'next';
    };

    const auth = (): Step => {
      const creds = opts.auth;
      if (!creds) throw new Error('unreachable: auth phase without credentials');
      if (buf.length < 2) return 'more';
      if (buf[0] !== AUTH_VERSION) {
        abort();
        return 'stop';
      }
      const ulen = buf[1] ?? 0;
      if (buf.length < 2 + ulen + 1) return 'more';
      const plen = buf[2 + ulen] ?? 0;
      const end = 3 + ulen + plen;
      if (buf.length < end) return 'more';
      const user = buf.subarray(2, 2 + ulen);
      const pass = buf.subarray(3 + ulen, end);
      buf = buf.subarray(end);
      // Both compared every time, so timing does not reveal which one was wrong.
      const userOk = safeEqual(user, Buffer.from(creds.username, 'utf8'));
      const passOk = safeEqual(pass, Buffer.from(creds.password, 'utf8'));
      if (!(userOk && passOk)) {
        stopReading();
        endGracefully(socket, Buffer.from([AUTH_VERSION, 0x01]), undefined, clock);
        return 'stop';
      }
      socket.write(Buffer.from([AUTH_VERSION, 0x00]));
      phase = 'request';
      return 'next';
    };

    const request = (): Step => {
      if (buf.length < 5) return 'more';
      if (buf[0] !== VERSION) {
        abort();
        return 'stop';
      }
      const cmd = buf[1];
      const atyp = buf[3];
      let addrLen: number;
      if (atyp === ATYP_IPV4) addrLen = 4;
      else if (atyp === ATYP_IPV6) addrLen = 16;
      else if (atyp === ATYP_DOMAIN) addrLen = 1 + (buf[4] ?? 0);
      else {
        // Unknown address type: its length is unknown too, so nothing more can be parsed.
        fail(SOCKS_REPLY.ADDRESS_TYPE_NOT_SUPPORTED);
        return 'stop';
      }
      const end = 4 + addrLen + 2;
      if (buf.length < end) return 'more';
      const addr = buf.subarray(4, 4 + addrLen);
      const port = buf.readUInt16BE(4 + addrLen);
      const rest = buf.subarray(end);
      buf = Buffer.alloc(0);
      if (cmd === CMD_UDP_ASSOCIATE && opts.udp) {
        stopReading();
        // DST.ADDR is the client's own address as it knows it (often 0.0.0.0): only the port is used.
        startUdpAssociation(socket, port, opts.udp, fail);
        return 'stop';
      }
      if (cmd !== CMD_CONNECT) {
        fail(SOCKS_REPLY.COMMAND_NOT_SUPPORTED);
        return 'stop';
      }
      let host: string;
      if (atyp === ATYP_IPV4) host = Array.from(addr).join('.');
      else if (atyp === ATYP_IPV6) host = formatIPv6(addr);
      else {
        const name = addr.subarray(1);
        if (!isPlausibleName(name)) {
          fail(SOCKS_REPLY.GENERAL_FAILURE);
          return 'stop';
        }
        host = name.toString('latin1');
      }
      stopReading();
      void connect({ host, port }, rest);
      return 'stop';
    };

    const connect = async (target: Target, early: Buffer): Promise<void> => {
      let remote;
      try {
        remote = await dial(target);
      } catch (err) {
        if (socket.destroyed) return;
        fail(err instanceof DialError ? socksReplyFor(err.code) : SOCKS_REPLY.GENERAL_FAILURE);
        return;
      }
      if (socket.destroyed) {
        remote.destroy();
        return;
      }
      socket.write(reply(SOCKS_REPLY.SUCCEEDED));
      // Bytes the client sent right behind its request, before our reply.
      if (early.length > 0) remote.write(early);
      pipeBoth(socket, remote);
    };

    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      try {
        for (;;) {
          const step = phase === 'greeting' ? greeting() : phase === 'auth' ? auth() : request();
          if (step !== 'next') return;
        }
      } catch {
        // A parser bug must cost this connection, not the process with every other one.
        abort();
      }
    };

    socket.on('data', onData);
    socket.once('end', () => {
      // EOF before a complete request: nothing to proxy.
      if (!handshakeOver) abort();
    });
  });
}
