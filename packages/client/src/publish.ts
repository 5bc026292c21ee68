/**
 * The client's published ports (--publish SERVERPORT:HOST:PORT, PROTOCOL.md
 * 7.1), like `ssh -R`: asks the server, on every session, to listen on
 * SERVERPORT, and connects each stream the server opens for it to HOST:PORT
 * on this side. The target is this flag's, always: the server's stream
 * names only the publication, so a hostile server can reach nothing but the
 * hosts and ports this client chose to publish.
 */
import * as net from 'node:net';
import { PublishCode, publishCodeName, ResetCode, type Clock, type Counters, type CLIENT_COUNTERS, type InboundHeader, type Session, type Stream } from '@plait/core';
import { noteSlabReads, pipeBoth, resetCodeForErrno, slabOnread, SocketBytes, StreamDuplex } from '@plait/node';
import type { Target } from './dialer.js';
import { parseHost, parsePort, splitSpec } from './forward.js';

export interface PublishSpec {
  /** The port the server listens on. */
  serverPort: number;
  /** Where connections to it go, on this side. */
  target: Target;
}

/** Publications one client asks for (the server's default per-session limit). */
export const MAX_PUBLICATIONS = 16;

/**
 * Parses "SERVERPORT:HOST:PORT" (HOST a name, an IPv4 address or a
 * bracketed IPv6 one, e.g. "8443:[fd00::5]:443").
 */
export function parsePublishSpec(spec: string): PublishSpec {
  const usage = 'expected SERVERPORT:HOST:PORT (IPv6 hosts in brackets)';
  const parts = splitSpec(spec.trim());
  if (typeof parts === 'string') throw new Error(`invalid publish spec "${spec}": ${parts}; ${usage}`);
  if (parts.length !== 3) throw new Error(`invalid publish spec "${spec}": ${usage}`);
  const [sport = '', host = '', port = ''] = parts;
  return {
    serverPort: parsePort(sport, 'server port', spec, 1, 'publish'),
    target: { host: parseHost(host, 'target host', spec, 'publish'), port: parsePort(port, 'target port', spec, 1, 'publish') },
  };
}

/** `requested` until the server answers; `open` while it listens; `refused` / `taken` as it said (its code and reason kept). */
export type PublishState = 'requested' | 'open' | 'refused' | 'taken' | 'no-session';

export interface ClientPublicationStats {
  serverPort: number;
  target: string;
  state: PublishState;
  /** The server's last word: OPEN, NOT_ALLOWED, IN_USE, LIMIT, FAILED, TAKEN. */
  code?: string;
  reason?: string;
  /** Connections carried in now, in total, and those whose target failed or that were refused here. */
  connections: number;
  connectionsTotal: number;
  connectionsFailed: number;
  /** Bytes from the remote peers to the target (in) and back (out). */
  bytesIn: number;
  bytesOut: number;
}

interface Entry {
  spec: PublishSpec;
  state: PublishState;
  code: number | undefined;
  reason: string;
  /** The code last logged, so a refusal repeated by every new session is logged once. */
  logged: number | undefined;
  /** Connections to the target: in = written to it, out = read from it. */
  sockets: SocketBytes;
  failed: number;
}

export interface PublicationsOptions {
  clock: Clock;
  /** A target that has not connected by then fails the connection (ms). */
  connectTimeoutMs?: number;
  /** Connections one publication carries at once; the server's are reset beyond it. */
  maxConnections?: number;
  counters: Counters<typeof CLIENT_COUNTERS>;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONNECTIONS = 256;

export class Publications {
  private readonly entries = new Map<number, Entry>();
  private session: Session | undefined;

  constructor(
    specs: readonly PublishSpec[],
    private readonly opts: PublicationsOptions,
  ) {
    for (const spec of specs) {
      if (this.entries.has(spec.serverPort)) throw new Error(`server port ${spec.serverPort} is published twice`);
      this.entries.set(spec.serverPort, { spec, state: 'no-session', code: undefined, reason: '', logged: undefined, sockets: new SocketBytes(), failed: 0 });
    }
  }

  get size(): number {
    return this.entries.size;
  }

  /** A new session: ask for every publication again (the server forgot them with the old one). */
  attach(session: Session): void {
    this.session = session;
    for (const e of this.entries.values()) {
      e.state = 'requested';
      e.code = undefined;
      e.reason = '';
      session.requestPublish(e.spec.serverPort);
    }
  }

  /** The session ended: nothing is published until the next one. */
  detach(session: Session): void {
    if (this.session !== session) return;
    this.session = undefined;
    for (const e of this.entries.values()) e.state = 'no-session';
  }

  /** The server's `pubst` for `port`. */
  onState(session: Session, port: number, code: number, reason: string): void {
    const e = this.entries.get(port);
    if (!e || session !== this.session) return; // a port we never asked for: nothing to do
    e.code = code;
    e.reason = reason;
    const where = { serverPort: port, target: targetText(e.spec.target), code: publishCodeName(code) };
    if (code === PublishCode.OPEN) {
      if (e.state !== 'open') this.opts.log.info({ ...where, reason }, `published: connections to server port ${port} reach ${targetText(e.spec.target)}`);
      e.state = 'open';
      e.logged = code;
      return;
    }
    e.state = code === PublishCode.TAKEN ? 'taken' : 'refused';
    // Logged once per kind of answer: a refusal repeated by every new session is not news.
    if (e.logged !== code) this.opts.log.warn(where, `server port ${port} not published: ${publishCodeName(code)}: ${reason || 'no reason given'}`);
    e.logged = code;
  }

  /** The server opened a stream for a publication (a connection to its port). */
  onInbound(session: Session, stream: Stream, header: InboundHeader): void {
    const e = this.entries.get(header.pub);
    const refuse = (code: number, why: string): void => {
      this.opts.counters.inboundRejected++;
      if (e) e.failed++;
      this.opts.log.debug({ serverPort: header.pub }, `inbound connection refused: ${why}`);
      stream.reset(code, why);
    };
    // Only ports this client asked for on this session, and not ones the server said it does not hold.
    if (!e || session !== this.session || e.state === 'refused' || e.state === 'no-session') {
      refuse(ResetCode.NOT_ALLOWED, `server port ${header.pub} is not published by this client`);
      return;
    }
    if (e.sockets.open >= (this.opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS)) {
      refuse(ResetCode.LIMIT, `server port ${header.pub}: at most ${this.opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS} connections at once`);
      return;
    }
    this.connect(e, stream, header.from);
  }

  private connect(e: Entry, stream: Stream, from: string | undefined): void {
    const { host, port } = e.spec.target;
    // Reads land in 1 MiB slabs, reused once the server acknowledged them (less GC), as for the server's targets.
    const onread = slabOnread(() => socket);
    const socket: net.Socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true, onread });
    noteSlabReads(socket, onread);
    e.sockets.add(socket);
    let connected = false;
    const fail = (code: number, why: string): void => {
      if (connected) return;
      connected = true; // settled
      timer.cancel();
      this.opts.counters.inboundFailed++;
      e.failed++;
      this.opts.log.debug({ serverPort: e.spec.serverPort, target: targetText(e.spec.target), from }, `published port: target failed: ${why}`);
      stream.reset(code, why.slice(0, 200));
      socket.destroy();
    };
    const timer = this.opts.clock.setTimeout(() => fail(ResetCode.TIMEOUT, `connect to ${targetText(e.spec.target)} timed out`), this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    socket.once('error', (err: NodeJS.ErrnoException) => fail(resetCodeForErrno(err.code ?? ''), `connect to ${targetText(e.spec.target)}: ${err.code ?? err.message}`));
    // The server gave up (its peer left, or its accept timer ran out) before the target answered.
    stream.setHandlers({ reset: () => fail(ResetCode.CANCEL, 'the server reset the connection') });
    socket.once('connect', () => {
      if (connected) return;
      connected = true;
      timer.cancel();
      this.opts.counters.inboundAccepted++;
      stream.accept();
      pipeBoth(new StreamDuplex(stream), socket);
    });
  }

  stats(): ClientPublicationStats[] {
    return [...this.entries.values()].map((e) => {
      const bytesIn = e.sockets.bytesWritten;
      const bytesOut = e.sockets.bytesRead;
      return {
        serverPort: e.spec.serverPort,
        target: targetText(e.spec.target),
        state: e.state,
        ...(e.code !== undefined ? { code: publishCodeName(e.code), reason: e.reason } : {}),
        connections: e.sockets.open,
        connectionsTotal: e.sockets.total,
        connectionsFailed: e.failed,
        bytesIn,
        bytesOut,
      };
    });
  }
}

function targetText(t: Target): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}
