import * as net from 'node:net';
import {
  Acceptor,
  ErrorCode,
  errorName,
  makeConfig,
  makeCounters,
  MemoryBudget,
  realClock,
  ResetCode,
  SERVER_COUNTERS,
  type CipherName,
  type RecordAeadFactory,
  type Config,
  type Datagram,
  type SecretKeys,
  type Session,
  type Stream,
  type UserRefusal,
} from '@plait/core';
import { adoptSlabReads, loadSockOpts, pipeBoth, SocketChannel, StreamDuplex, type WebSocketChannel } from '@plait/node';
import { dialTarget, EgressError } from './dial-target.js';
import { EgressPolicy } from './egress-policy.js';
import { PortPublisher, PUBLISH_DEFAULTS, type PublicationStats } from './publish.js';
import { UdpRelay } from './udp-relay.js';
import { UserStats, type UserDirectory, type UserFigures } from './users.js';
import { UserCapLedger } from './user-caps.js';

/** How often user caps are checked (ms), and how many checks between saves of the state file. */
const CAP_TICK_MS = 1_000;
const CAP_SAVE_EVERY = 10;
import { WebSocketListener } from './ws-listener.js';

export interface ServerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** Where the server accepts subflows: a TCP port, or, with `path`, WebSocket upgrades at ws://HOST:PORT/PATH. */
export interface ListenSpec {
  host: string;
  port: number;
  /** Set: a WebSocket listener (HTTP upgrade at this path). */
  path?: string;
}

/** A listener as bound. */
export interface BoundListener {
  transport: 'tcp' | 'ws';
  address: net.AddressInfo;
  path?: string;
}

export interface PlaitServerOptions {
  /** One or more listeners; TCP and WebSocket ones feed the same sessions. */
  listen: ListenSpec | readonly ListenSpec[];
  /** The anonymous secret (--secret); optional with `users`. */
  secretKeys?: SecretKeys;
  /** Named users (--users, PROTOCOL.md 3.2); swap its table to reload. */
  users?: UserDirectory;
  /** Where per-user cap usage is kept across restarts (--state-dir); without it, in memory only. */
  stateDir?: string;
  /** Egress policy (private/loopback targets refused unless allowed). */
  policy?: EgressPolicy;
  config?: Partial<Config>;
  maxSessions?: number;
  /**
   * Connections still in their handshake (not yet authenticated) at once; at
   * the limit a new one evicts the pending one with the least progress.
   * Default 512.
   */
  maxPendingHandshakes?: number;
  /** The same per source address (IPv4 address, IPv6 /64). Default 64: carrier NAT shares addresses. */
  maxPendingPerSource?: number;
  /** Keep a session whose subflows are all gone this long (ms). */
  graceMs?: number;
  /** Target connect timeout (ms). */
  dialTimeoutMs?: number;
  /** Extra addresses to advertise to clients (ADD_ADDR). */
  advertise?: { host: string; port: number }[];
  /** Datagram flows (SOCKS5 UDP, DNS): idle timeout (default 60 s) and the DNS resolver (none: DNS queries are dropped). */
  udp?: { idleMs?: number; dnsUpstream?: { host: string; port: number } | undefined };
  /** Record ciphers clients may choose (plait server --cipher); default both. */
  ciphers?: readonly CipherName[];
  /** How records reach OpenSSL (default node:crypto; the CLI passes @plait/node's openSslAead). */
  recordAead?: RecordAeadFactory;
  /** This instance's id behind a load balancer (plait server --instance-id, 0-65535); JOINs name it. */
  instanceId?: number;
  /** Published ports (plait client --publish, README "Serving several households"). */
  publish?: PublishServerOptions;
  log?: ServerLogger;
}

export interface PublishServerOptions {
  /** Where published ports listen (--publish-bind); default 0.0.0.0. */
  bindHost?: string;
  /** Ports the anonymous --secret user may publish (--allow-publish); default none. Named users have their `publish` list. */
  anonymousPorts?: readonly number[];
  /** Inbound connections per published port at once (--publish-max-conns); default 64. */
  maxConnections?: number;
  /** Publications per session; default 16. */
  maxPerSession?: number;
  /** How long the client has to connect an inbound connection on its side (ms); default 15 s. */
  acceptTimeoutMs?: number;
}

/** A refused connection that does not take our REJECT is destroyed after this (ms). */
const REFUSED_LINGER_MS = 1_000;

const SILENT: ServerLogger = { info: () => undefined, warn: () => undefined, debug: () => undefined };

/** The plait server: accepts subflows, joins them into sessions, connects streams to targets. */
export class PlaitServer {
  readonly acceptor: Acceptor;
  /** Streams and buffered bytes across all sessions (processMaxStreams, processBufferBudget). */
  readonly budget: MemoryBudget;
  /** One per `listen` entry, in order: a TCP server, or a WebSocket listener. */
  private readonly servers: ({ spec: ListenSpec; tcp: net.Server } | { spec: ListenSpec; ws: WebSocketListener })[];
  private bound: BoundListener[] = [];
  private readonly log: ServerLogger;
  private readonly policy: EgressPolicy;
  /**
   * `preauthBytes`: bytes read from connections that never authenticated
   * (each at most a few chunks: a refused stranger is not read again).
   */
  /** Declared, with what each counts, in @plait/core counters.ts (SERVER_COUNTERS). */
  readonly counters = makeCounters(SERVER_COUNTERS);
  /** Per-user figures (only with `users`). */
  private readonly userStats: UserStats | undefined;
  // ---- user caps ----
  private readonly capLedger: UserCapLedger | undefined;
  private readonly capCounted = new Map<string, number>();
  private capTimer: NodeJS.Timeout | undefined;
  private capTicks = 0;
  // ---- end user caps ----
  /** Published ports of every session (PROTOCOL.md 7.1). */
  readonly publisher: PortPublisher;

  constructor(private readonly opts: PlaitServerOptions) {
    this.log = opts.log ?? SILENT;
    const pub = opts.publish ?? {};
    const anonymousPorts = pub.anonymousPorts ?? [];
    this.publisher = new PortPublisher(
      {
        bindHost: pub.bindHost ?? '0.0.0.0',
        // Read at each request: a reload (SIGHUP) applies to the next one, and review() to the ports already open.
        allowedPorts: (user) => {
          if (user === undefined) return anonymousPorts;
          const u = opts.users?.find(user);
          return u && !u.revoked ? (u.publish ?? []) : [];
        },
        maxPerSession: pub.maxPerSession ?? PUBLISH_DEFAULTS.maxPerSession,
        maxConnections: pub.maxConnections ?? PUBLISH_DEFAULTS.maxConnections,
        acceptTimeoutMs: pub.acceptTimeoutMs ?? PUBLISH_DEFAULTS.acceptTimeoutMs,
        backlog: PUBLISH_DEFAULTS.backlog,
        clock: realClock,
        // Inbound bytes are the user's bytes too (figures, caps), counted like a stream's target socket.
        onConnection: (user, socket) => {
          if (user !== undefined) this.userStats?.streamOpened(user, socket);
        },
        log: this.log,
      },
      this.counters,
    );
    this.policy = opts.policy ?? new EgressPolicy({});
    const config = makeConfig(opts.config);
    this.budget = new MemoryBudget(config);
    const users = opts.users;
    this.userStats = users ? new UserStats((name) => users.find(name) !== undefined) : undefined;
    this.acceptor = new Acceptor({
      ...(opts.secretKeys ? { secretKeys: opts.secretKeys } : {}),
      ...(users
        ? {
            users,
            maxUserSessions: (name: string) => users.find(name)?.maxSessions,
            userBlocked: (name: string) => this.capBlocked(name),
            sessionRate: (name: string | undefined) => (name === undefined ? undefined : users.find(name)?.rateBytesPerSec),
            onUserRefusal: (r: { cause: UserRefusal; user?: string }) => this.userStats?.refused(r.user, r.cause),
          }
        : {}),
      config,
      clock: realClock,
      maxSessions: opts.maxSessions ?? 256,
      graceMs: opts.graceMs ?? 30_000,
      handshakeSlots: {
        ...(opts.maxPendingHandshakes !== undefined ? { maxPending: opts.maxPendingHandshakes } : {}),
        ...(opts.maxPendingPerSource !== undefined ? { maxPerSource: opts.maxPendingPerSource } : {}),
      },
      ...(opts.advertise ? { advertise: opts.advertise.map((a, i) => ({ id: i + 1, host: a.host, port: a.port })) } : {}),
      ...(opts.ciphers ? { ciphers: opts.ciphers } : {}),
      ...(opts.recordAead ? { recordAead: opts.recordAead } : {}),
      ...(opts.instanceId !== undefined ? { instanceId: opts.instanceId } : {}),
      onSession: (session, user) => this.onSession(session, user),
      onReject: (info) => {
        // A connection closed during the handshake is most often a load balancer's health check.
        const level = info.code === ErrorCode.CLOSED ? 'debug' : 'warn';
        this.log[level]({ remote: info.remote, code: errorName(info.code) }, `refused connection: ${info.reason}`);
      },
      // One budget for all sessions: many clients together stay bounded too.
      budget: this.budget,
    });
    const specs = Array.isArray(opts.listen) ? (opts.listen as readonly ListenSpec[]) : [opts.listen as ListenSpec];
    if (specs.length === 0) throw new Error('PlaitServer: at least one listen address is required');
    this.servers = specs.map((spec) =>
      spec.path !== undefined
        ? {
            spec,
            ws: new WebSocketListener({
              host: spec.host,
              port: spec.port,
              path: spec.path,
              // Before the upgrade the same bound as pending handshakes after it.
              ...(opts.maxPendingHandshakes !== undefined ? { maxPendingUpgrades: opts.maxPendingHandshakes } : {}),
              onChannel: (ch, source, tcp) => this.onWebSocket(ch, source, tcp),
            }),
          }
        : { spec, tcp: net.createServer({ noDelay: true }, (socket) => this.onConnection(socket)) },
    );
    if (users) {
      this.capLedger = new UserCapLedger(opts.stateDir, Date.now, (m) => this.log.warn({}, m));
      this.capTimer = setInterval(() => this.capTick(), CAP_TICK_MS);
      this.capTimer.unref();
    }
  }

  // ---- user caps ----
  /** The refusal reason while `name` is over its cap, else undefined. */
  private capBlocked(name: string): string | undefined {
    const cap = this.opts.users?.find(name)?.cap;
    if (!cap || !this.capLedger) return undefined;
    return this.capLedger.used(name, cap.period) >= cap.bytes ? `data cap reached (${cap.bytes} bytes per ${cap.period}, UTC): until the next ${cap.period}` : undefined;
  }

  /** Count each capped user's new bytes, end the sessions of those over their cap, save now and then. */
  private capTick(): void {
    const users = this.opts.users;
    if (!users || !this.userStats || !this.capLedger) return;
    const over = new Set<string>();
    for (const name of users.names()) {
      const cap = users.find(name)?.cap;
      const total = this.userStats.totalBytes(name);
      const delta = total - (this.capCounted.get(name) ?? 0);
      this.capCounted.set(name, total);
      if (!cap) continue;
      this.capLedger.add(name, cap.period, delta);
      if (this.capLedger.used(name, cap.period) >= cap.bytes) over.add(name);
    }
    if (over.size > 0) {
      const reason = 'data cap reached';
      const n = this.acceptor.revokeSessions((u) => over.has(u), reason);
      if (n > 0) this.log.info({ users: [...over], sessionsEnded: n }, 'data cap reached: sessions ended');
    }
    if (++this.capTicks % CAP_SAVE_EVERY === 0) this.saveCaps();
  }

  private saveCaps(): void {
    // Never throws (a full disk must not end the server): the ledger warns, once per distinct failure.
    this.capLedger?.save();
  }
  // ---- end user caps ----

  /** The TCP servers (tests peek at accepted sockets). */
  private get tcp(): net.Server[] {
    return this.servers.flatMap((s) => ('tcp' in s ? [s.tcp] : []));
  }

  /**
   * Start every listener, in order; resolves with the first one's address.
   * If one fails, those already started are closed and the error names it
   * (`listener`: its index in `listen`).
   */
  async listen(): Promise<net.AddressInfo> {
    const bound: BoundListener[] = [];
    try {
      for (const [i, server] of this.servers.entries()) {
        try {
          bound.push(await this.listenOne(server));
        } catch (e) {
          throw Object.assign(e instanceof Error ? e : new Error(String(e)), { listener: i });
        }
      }
    } catch (e) {
      await this.closeListeners();
      throw e;
    }
    this.bound = bound;
    return bound[0]!.address;
  }

  private async listenOne(server: (typeof this.servers)[number]): Promise<BoundListener> {
    if ('ws' in server) return { transport: 'ws', address: await server.ws.listen(), path: server.spec.path! };
    const { tcp, spec } = server;
    const address = await new Promise<net.AddressInfo>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(spec.port, spec.host, () => {
        tcp.off('error', reject);
        resolve(tcp.address() as net.AddressInfo);
      });
    });
    return { transport: 'tcp', address };
  }

  /** The first listener's address. */
  get address(): net.AddressInfo {
    return this.bound[0]!.address;
  }

  /** Every listener as bound, in the order given. */
  get listeners(): readonly BoundListener[] {
    return this.bound;
  }

  sessions(): Session[] {
    return this.acceptor.allSessions();
  }

  /** Per-user figures for /stats and /metrics; undefined without users. */
  userFigures(): UserFigures[] | undefined {
    const users = this.opts.users;
    if (!users || !this.userStats) return undefined;
    return this.userStats.snapshot(users.names(), (u) => this.acceptor.userSessionCount(u)).map((f) => {
      const cap = users.find(f.user)?.cap;
      return cap && this.capLedger ? { ...f, cap: { used: this.capLedger.used(f.user, cap.period), bytes: cap.bytes, period: cap.period } } : f;
    });
  }

  /** Every session's published ports, for /stats and /metrics. */
  publications(): PublicationStats[] {
    return this.publisher.stats();
  }

  /**
   * After the users table changed (SIGHUP): withdraw publications their user
   * may no longer have. Sessions of removed or revoked users end by
   * themselves (revokeSessions), and their ports with them.
   */
  reviewPublications(): number {
    return this.publisher.review();
  }

  async close(): Promise<void> {
    this.publisher.close();
    if (this.capTimer) {
      clearInterval(this.capTimer);
      this.capTick();
      this.saveCaps();
    }
    this.acceptor.closeAll();
    await this.closeListeners();
  }

  private async closeListeners(): Promise<void> {
    await Promise.all(
      this.servers.map((s) => ('ws' in s ? s.ws.close() : new Promise<void>((r) => (s.tcp.listening ? s.tcp.close(() => r()) : r())))),
    );
  }

  /** A WebSocket subflow: the same acceptor as TCP (handshake limits, join, HMACs). */
  private onWebSocket(channel: WebSocketChannel, source: string, tcp: net.Socket): void {
    this.counters.connections++;
    loadSockOpts().setNotsentLowat(tcp, 128 * 1024);
    void this.acceptor.accept(channel, source).then((ok) => {
      if (ok) return;
      // Refused: the acceptor paused it and queued REJECT + close; cut it if the peer lingers.
      const count = (): void => void (this.counters.preauthBytes += tcp.bytesRead);
      if (tcp.destroyed) return count();
      const linger = setTimeout(() => channel.destroy(), REFUSED_LINGER_MS);
      linger.unref();
      tcp.once('close', () => {
        clearTimeout(linger);
        count();
      });
    });
  }

  /**
   * Drain (SIGTERM): refuse new sessions with DRAINING at once, keep serving
   * the live ones (and their joins) for `graceMs`, then end them with
   * DRAINING so their clients start new sessions elsewhere. Resolves when no
   * session is left (sooner if they all end by themselves); the caller then
   * closes the server.
   */
  drain(graceMs: number): Promise<void> {
    this.acceptor.drain();
    return new Promise<void>((resolve) => {
      let ended = false;
      const check = setInterval(() => {
        if (this.acceptor.sessionCount > 0) return;
        clearInterval(check);
        clearTimeout(deadline);
        // Let the last close records reach the kernel before the caller exits.
        setTimeout(resolve, ended ? 200 : 0);
      }, 100);
      const deadline = setTimeout(() => {
        ended = true;
        this.log.info({ sessions: this.acceptor.sessionCount }, 'drain grace over: ending the remaining sessions (their clients start new ones)');
        this.acceptor.endDrained();
      }, graceMs);
    });
  }

  private onConnection(socket: net.Socket): void {
    this.counters.connections++;
    socket.on('error', () => undefined); // reported through the channel's close
    adoptSlabReads(socket); // reads into 1 MiB slabs, not a fresh 64 KiB buffer each (less GC)
    // Keep the kernel's unsent queue short (see the client); no-op where unsupported.
    loadSockOpts().setNotsentLowat(socket, 128 * 1024);
    // The acceptor bounds pending handshakes (per source and overall) by evicting idle ones.
    void this.acceptor.accept(new SocketChannel(socket), socket.remoteAddress).then((ok) => {
      if (!ok) this.dropRefused(socket);
    });
  }

  /**
   * A refused connection: the acceptor stopped reading it and queued the
   * REJECT and FIN. Destroy it as soon as that is handed to the kernel (a
   * flooder's unread input then resets it), or after a short linger if its
   * peer does not even take our bytes.
   */
  private dropRefused(socket: net.Socket): void {
    const count = (): void => void (this.counters.preauthBytes += socket.bytesRead);
    if (socket.destroyed) {
      count();
      return;
    }
    socket.pause();
    const linger = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
    linger.unref();
    socket.once('close', () => {
      clearTimeout(linger);
      count();
    });
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  }

  private onSession(session: Session, user: string | undefined) {
    const token = Buffer.from(session.keys.token).toString('hex').slice(0, 8);
    this.log.info({ session: token, ...(user !== undefined ? { user } : {}) }, 'session established');
    // A named user's datagrams count with their streams (figures and caps), each way.
    const stats = this.userStats;
    const tally = user !== undefined && stats ? (up: number, down: number): void => stats.datagramBytes(user, up, down) : undefined;
    const sink = tally
      ? {
          sendDatagram: (d: Datagram): boolean => {
            const queued = session.sendDatagram(d);
            if (queued) tally(0, d.payload.length);
            return queued;
          },
        }
      : session;
    const udp = new UdpRelay(sink, {
      policy: this.policy,
      maxFlows: session.config.maxDatagramFlows,
      idleMs: this.opts.udp?.idleMs ?? 60_000,
      dnsUpstream: this.opts.udp?.dnsUpstream,
      clock: realClock,
      counters: this.counters,
      log: { debug: (obj, msg) => this.log.debug({ session: token, ...obj }, msg) },
    });
    const pubs = this.publisher.attach(session, user, token);
    return {
      publish: (port: number) => pubs.onPublish(port),
      datagram: (d: Datagram) => {
        tally?.(d.payload.length, 0);
        udp.onDatagram(d);
      },
      datagramFlowClosed: (flow: number) => udp.onFlowClosed(flow),
      stream: (stream: Stream, target: { host: string; port: number }) => this.onStream(token, stream, target, user),
      subflowUp: (sf: { id: number; backup: boolean; channel: { remoteLabel: string } }) =>
        this.log.info({ session: token, subflow: sf.id, remote: sf.channel.remoteLabel, backup: sf.backup }, 'subflow up'),
      subflowDown: (sf: { id: number }, reason: string, closed: boolean) =>
        this.log.info({ session: token, subflow: sf.id, closed }, `subflow ${closed ? 'closed' : 'suspect'}: ${reason}`),
      schedulerChosen: (name: string, applied: boolean) =>
        applied
          ? this.log.info({ session: token, scheduler: name }, `the client chose scheduler ${name}: this side sends with it too`)
          : this.log.warn({ session: token, scheduler: name }, `the client chose scheduler "${name}", unknown here: downloads keep ${session.stats().scheduler}`),
      closed: (err: Error | undefined) => {
        udp.close();
        pubs.close();
        this.log.info({ session: token }, `session closed${err ? `: ${err.message}` : ''}`);
      },
    };
  }

  private onStream(token: string, stream: Stream, target: { host: string; port: number }, user: string | undefined): void {
    this.counters.streamsOpened++;
    dialTarget(target, this.policy, { timeoutMs: this.opts.dialTimeoutMs ?? 10_000 }).then(
      (socket) => {
        if (stream.isClosed) {
          socket.destroy();
          return;
        }
        stream.accept();
        if (user !== undefined) this.userStats?.streamOpened(user, socket);
        pipeBoth(new StreamDuplex(stream), socket);
      },
      (err: unknown) => {
        const code = err instanceof EgressError ? err.code : ResetCode.INTERNAL;
        if (code === ResetCode.NOT_ALLOWED) this.counters.streamsRefused++;
        else this.counters.streamsFailed++;
        const msg = err instanceof Error ? err.message : String(err);
        this.log.debug({ session: token, target: `${target.host}:${target.port}` }, `target failed: ${msg}`);
        stream.reset(code, msg.slice(0, 200));
      },
    );
  }
}
