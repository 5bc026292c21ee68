/**
 * Published ports (plait client --publish, PROTOCOL.md 7.1): like `ssh -R`,
 * a client asks the server to listen on one of the ports its user may
 * publish, and every connection to that port travels the session as a
 * server-opened stream to the client, which connects it to a host on its
 * side. This module owns the server-wide table of published ports (one
 * listener per port, one owning session at a time) and each session's view
 * of it; the session only carries `pub` / `pubst` and the streams.
 *
 * Rules: a port is published only if the session's user may (the users
 * file's `publish` list; the anonymous --secret user: --allow-publish);
 * a port held by another user's session (or another program) is IN_USE; a
 * newer session of the same user takes the port over (the older one hears
 * TAKEN), so a client that restarts gets its ports back at once instead of
 * waiting for its old session's grace to run out.
 */
import * as net from 'node:net';
import { PublishCode, publishCodeName, ResetCode, type Clock, type Counters, type InboundHeader, type SERVER_COUNTERS, type Stream } from '@plait/core';
import { adoptSlabReads, pipeBoth, SocketBytes, StreamDuplex } from '@plait/node';

/** What a publisher needs of a session (the real Session in production). */
export interface PublishSession {
  readonly isClosed: boolean;
  publishState(port: number, code: number, reason: string): void;
  openInbound(header: InboundHeader): Stream;
}

export interface PublishOptions {
  /** The address published ports listen on (plait server --publish-bind). */
  bindHost: string;
  /** Ports a session may publish now: the user's `publish` list, or --allow-publish for the anonymous user. Read at each request and at review(). */
  allowedPorts(user: string | undefined): readonly number[];
  /** Publications one session may hold. */
  maxPerSession: number;
  /** Connections one published port carries at once (pending ones included); more are reset on accept. */
  maxConnections: number;
  /** An inbound connection the client has not accepted (connected on its side) by then is reset (ms). */
  acceptTimeoutMs: number;
  /** Listen backlog of each published port (connections the kernel queues before we accept). */
  backlog: number;
  /** The accept timer's clock. */
  clock: Clock;
  /** Each accepted inbound connection's socket, for per-user byte counts (and caps). */
  onConnection?(user: string | undefined, socket: net.Socket): void;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

/** Defaults: sane for a household's NAS or game server, bounded against a flood. */
export const PUBLISH_DEFAULTS = { maxPerSession: 16, maxConnections: 64, acceptTimeoutMs: 15_000, backlog: 64 } as const;

/**
 * Answers a session gets to `pub` requests that change nothing (refusals,
 * repeats); further ones are ignored (and counted), so a client asking
 * again and again cannot grow the control queue without bound.
 */
const MAX_IDLE_ANSWERS = 64;

export interface PublicationStats {
  port: number;
  /** The session's user (absent: the anonymous --secret user). */
  user?: string;
  /** The owning session's token prefix, as in the logs. */
  session: string;
  /**
   * `binding` until the listener is up; `taken` once a newer session of the
   * same user owns the port (its old connections may still run); `closed`
   * once withdrawn (a reload took the port from the user).
   */
  state: PublicationState;
  /** Inbound connections open now, in total, and reset at once (over --publish-max-conns, or the session could not open a stream). */
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  /** Bytes from the connecting peers toward the client (in) and back (out). */
  bytesIn: number;
  bytesOut: number;
}

export type PublicationState = 'binding' | 'open' | 'taken' | 'closed';

/** One published port: its listener and the session it belongs to now. */
interface Listing {
  readonly port: number;
  readonly server: net.Server;
  owner: SessionPublications;
  state: 'binding' | 'open';
  /** Connections of every session that owned the port (the cap counts them all: they share the port). */
  readonly connections: Set<net.Socket>;
}

/** Figures of one session's publication of one port (kept after a takeover for its old connections). */
interface Tally {
  state: PublicationState;
  /** Inbound connections: in = read from them, out = written to them. */
  sockets: SocketBytes<net.Socket>;
  refused: number;
}

/** The server-wide table of published ports. */
export class PortPublisher {
  private readonly listings = new Map<number, Listing>();
  private readonly sessions = new Set<SessionPublications>();
  constructor(
    readonly opts: PublishOptions,
    /** The server's counters (publications, publishRefused, inbound*: declared in SERVER_COUNTERS). */
    readonly counters: Counters<typeof SERVER_COUNTERS>,
  ) {}

  /** A new session; its `publish` events go to the returned object, and its `closed` event to its close(). */
  attach(session: PublishSession, user: string | undefined, token: string): SessionPublications {
    const sp = new SessionPublications(this, session, user, token);
    this.sessions.add(sp);
    return sp;
  }

  /** @internal */
  detach(sp: SessionPublications): void {
    this.sessions.delete(sp);
    for (const l of [...this.listings.values()]) if (l.owner === sp) this.unlist(l);
  }

  /** @internal The client of `sp` asks for `port`. */
  request(sp: SessionPublications, port: number): void {
    const refuse = (code: number, reason: string): void => {
      this.counters.publishRefused++;
      sp.reply(port, code, reason, true);
    };
    const have = this.listings.get(port);
    if (sp.wasTaken(port)) {
      // Taken over by a newer session of the same user: this one does not take it back (no ping-pong).
      sp.reply(port, PublishCode.TAKEN, `port ${port} was taken over by a newer session of the same user`, false);
      return;
    }
    if (have?.owner === sp) {
      // A repeated request (a `pub` resent on another subflow): the state again (binding: OPEN follows).
      if (have.state === 'open') sp.reply(port, PublishCode.OPEN, `listening on ${this.where(port)}`, false);
      return;
    }
    if (!this.opts.allowedPorts(sp.user).includes(port)) {
      refuse(PublishCode.NOT_ALLOWED, sp.user === undefined ? `port ${port} is not in the server's --allow-publish` : `port ${port} is not in user ${sp.user}'s publish list`);
      return;
    }
    if (have && have.owner.user !== sp.user) {
      refuse(PublishCode.IN_USE, `port ${port} is published by another user`);
      return;
    }
    if (sp.owned >= this.opts.maxPerSession) {
      refuse(PublishCode.LIMIT, `at most ${this.opts.maxPerSession} published ports per session`);
      return;
    }
    if (have) {
      // A newer session of the same user (a client that restarted or made a new session): it takes the port.
      const old = have.owner;
      have.owner = sp;
      old.taken(port);
      sp.tally(port).state = have.state;
      this.opts.log.info({ port, ...userLabel(sp.user), session: sp.token, from: old.token }, `published port ${port}: taken over by a newer session of the same user`);
      if (have.state === 'open') sp.session.publishState(port, PublishCode.OPEN, `listening on ${this.where(port)} (taken over from an older session)`);
      return;
    }
    this.listen(sp, port);
  }

  private listen(sp: SessionPublications, port: number): void {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.onConnection(listing, socket));
    const listing: Listing = { port, server, owner: sp, state: 'binding', connections: new Set() };
    this.listings.set(port, listing);
    sp.tally(port).state = 'binding';
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (this.listings.get(port) !== listing) return;
      this.listings.delete(port);
      const owner = listing.owner;
      const inUse = e.code === 'EADDRINUSE';
      const reason = inUse ? `port ${port} is in use on the server` : `cannot listen on ${this.where(port)}: ${e.code ?? e.message}`;
      this.opts.log.warn({ port, ...userLabel(owner.user), session: owner.token }, `published port refused: ${reason}`);
      server.close();
      owner.forget(port);
      this.counters.publishRefused++;
      // A state change, not a repeat: always told.
      owner.session.publishState(port, inUse ? PublishCode.IN_USE : PublishCode.FAILED, reason);
    });
    server.listen({ port, host: this.opts.bindHost, backlog: this.opts.backlog }, () => {
      if (this.listings.get(port) !== listing) return; // withdrawn while binding
      listing.state = 'open';
      const owner = listing.owner;
      owner.tally(port).state = 'open';
      this.counters.publications++;
      this.opts.log.info({ port, ...userLabel(owner.user), session: owner.token, listen: this.where(port) }, 'published port listening');
      owner.session.publishState(port, PublishCode.OPEN, `listening on ${this.where(port)}`);
    });
  }

  private where(port: number): string {
    return `${this.opts.bindHost.includes(':') ? `[${this.opts.bindHost}]` : this.opts.bindHost}:${port}`;
  }

  private onConnection(listing: Listing, socket: net.Socket): void {
    socket.on('error', () => undefined); // reported through close
    adoptSlabReads(socket); // reads into 1 MiB slabs, reused once the client acknowledged them (less GC)
    const owner = listing.owner;
    if (this.listings.get(listing.port) !== listing || owner.session.isClosed) {
      socket.destroy();
      return;
    }
    const tally = owner.tally(listing.port);
    if (listing.connections.size >= this.opts.maxConnections) {
      this.counters.inboundRefused++;
      tally.refused++;
      socket.resetAndDestroy();
      return;
    }
    let stream: Stream;
    try {
      const from = socket.remoteAddress !== undefined ? `${socket.remoteFamily === 'IPv6' ? `[${socket.remoteAddress}]` : socket.remoteAddress}:${socket.remotePort ?? 0}` : undefined;
      stream = owner.session.openInbound(from !== undefined ? { pub: listing.port, from } : { pub: listing.port });
    } catch (e) {
      // The session's stream limits (maxStreams, the process budget).
      this.counters.inboundRefused++;
      tally.refused++;
      this.opts.log.debug({ port: listing.port, session: owner.token }, `inbound connection refused: ${e instanceof Error ? e.message : String(e)}`);
      socket.resetAndDestroy();
      return;
    }
    this.counters.inboundConnections++;
    listing.connections.add(socket);
    tally.sockets.add(socket);
    this.opts.onConnection?.(owner.user, socket);
    // Until the client has connected its side, the connection is pending: bounded by the cap above and this timer.
    const timer = this.opts.clock.setTimeout(() => {
      this.counters.inboundTimeouts++;
      stream.reset(ResetCode.TIMEOUT, 'the client did not connect the published port in time');
    }, this.opts.acceptTimeoutMs);
    stream.setHandlers({ accept: () => timer.cancel() });
    socket.once('close', () => {
      timer.cancel();
      listing.connections.delete(socket);
    });
    pipeBoth(new StreamDuplex(stream), socket);
  }

  /** Close a listing's listener and reset its connections; the port is free again. */
  private unlist(l: Listing): void {
    if (this.listings.get(l.port) === l) this.listings.delete(l.port);
    l.server.close();
    for (const s of l.connections) s.resetAndDestroy();
  }

  /**
   * After the users file changed (SIGHUP): withdraw every publication its
   * user may no longer have (NOT_ALLOWED), closing its listener and
   * resetting its connections. Returns how many were withdrawn.
   */
  review(): number {
    let n = 0;
    for (const l of [...this.listings.values()]) {
      const owner = l.owner;
      if (this.opts.allowedPorts(owner.user).includes(l.port)) continue;
      n++;
      this.unlist(l);
      owner.forget(l.port);
      owner.session.publishState(l.port, PublishCode.NOT_ALLOWED, `port ${l.port} is no longer allowed for this user`);
      this.opts.log.info({ port: l.port, ...userLabel(owner.user), session: owner.token }, 'published port withdrawn: no longer allowed');
    }
    return n;
  }

  /** Every session's publications, for /stats and /metrics. */
  stats(): PublicationStats[] {
    return [...this.sessions].flatMap((sp) => sp.stats()).sort((a, b) => a.port - b.port || a.session.localeCompare(b.session));
  }

  /** Ports listening now (tests, logs). */
  get listening(): number[] {
    return [...this.listings.values()].filter((l) => l.state === 'open').map((l) => l.port);
  }

  close(): void {
    for (const sp of [...this.sessions]) sp.close();
    for (const l of [...this.listings.values()]) this.unlist(l);
  }
}

/** One session's publications: what it asked for and what it owns. */
export class SessionPublications {
  private readonly tallies = new Map<number, Tally>();
  private idleAnswers = 0;
  private closed = false;

  constructor(
    private readonly table: PortPublisher,
    readonly session: PublishSession,
    readonly user: string | undefined,
    readonly token: string,
  ) {}

  /** The client asked for `port` (`pub`). */
  onPublish(port: number): void {
    if (this.closed || this.session.isClosed) return;
    this.table.request(this, port);
  }

  /** Publications this session holds (binding or open): what maxPerSession bounds. */
  get owned(): number {
    let n = 0;
    for (const t of this.tallies.values()) if (t.state === 'binding' || t.state === 'open') n++;
    return n;
  }

  /** @internal */
  wasTaken(port: number): boolean {
    return this.tallies.get(port)?.state === 'taken';
  }

  /** @internal */
  tally(port: number): Tally {
    let t = this.tallies.get(port);
    if (!t) {
      t = { state: 'binding', sockets: new SocketBytes<net.Socket>(), refused: 0 };
      this.tallies.set(port, t);
    }
    return t;
  }

  /** @internal An answer that changes nothing (a refusal, a repeat), sent while this session has not had too many. */
  reply(port: number, code: number, reason: string, log: boolean): void {
    if (this.idleAnswers >= MAX_IDLE_ANSWERS) {
      this.table.counters.publishRefusalsIgnored++;
      return;
    }
    this.idleAnswers++;
    if (log) this.table.opts.log.info({ port, ...userLabel(this.user), session: this.token, code: publishCodeName(code) }, `publish refused: ${reason}`);
    this.session.publishState(port, code, reason);
  }

  /** @internal A newer session of the same user owns `port` now. */
  taken(port: number): void {
    const t = this.tallies.get(port);
    if (t) t.state = 'taken';
    this.session.publishState(port, PublishCode.TAKEN, `port ${port} was taken over by a newer session of the same user`);
  }

  /** @internal The port is no longer this session's (refused while binding, or withdrawn): its figures stay if it carried anything. */
  forget(port: number): void {
    const t = this.tallies.get(port);
    if (t && t.sockets.open === 0 && t.sockets.total === 0) this.tallies.delete(port);
    else if (t) t.state = 'closed';
  }

  stats(): PublicationStats[] {
    return [...this.tallies].map(([port, t]) => {
      const bytesIn = t.sockets.bytesRead;
      const bytesOut = t.sockets.bytesWritten;
      return {
        port,
        ...userLabel(this.user),
        session: this.token,
        state: t.state,
        connections: t.sockets.open,
        connectionsTotal: t.sockets.total,
        connectionsRefused: t.refused,
        bytesIn,
        bytesOut,
      };
    });
  }

  /** The session ended: its listeners close and the ports are free (its streams, and so its connections, were reset by the session). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.tallies.values()) for (const s of [...t.sockets.openSockets()]) s.resetAndDestroy();
    this.table.detach(this);
  }
}

function userLabel(user: string | undefined): { user?: string } {
  return user === undefined ? {} : { user };
}
