import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  connectSession,
  createScheduler,
  ErrorCode,
  joinSession,
  makeConfig,
  PlaitError,
  realClock,
  ResetCode,
  type Config,
  type SecretKeys,
  type Session,
  type SessionStats,
  type Subflow,
} from '@plait/core';
import { loadSockOpts, SocketChannel, StreamDuplex } from '@plait/node';
import { lookup } from 'node:dns/promises';
import { DialError, type Target } from './dialer.js';
import { backoffMs, localSources, planPaths, type PathSpec, type RemoteAddr, type SourceOptions } from './path-manager.js';

export interface ClientLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface PlaitClientOptions {
  servers: { host: string; port: number }[];
  secretKeys: SecretKeys;
  sources: SourceOptions;
  scheduler?: string;
  config?: Partial<Config>;
  /** Keep the session and its streams through a total outage this long (ms). */
  graceMs?: number;
  /** A dial fails if the server has not connected the target by then (ms). */
  dialTimeoutMs?: number;
  /** How often `--via` interfaces are re-read (ms). */
  pollMs?: number;
  /** TCP connect timeout per subflow (ms). */
  connectTimeoutMs?: number;
  log?: ClientLogger;
}

type SlotState = 'idle' | 'connecting' | 'up' | 'backoff';

interface Slot {
  spec: PathSpec;
  state: SlotState;
  attempt: number;
  addrId: number;
  timer: NodeJS.Timeout | undefined;
  subflow: Subflow | undefined;
  socket: net.Socket | undefined;
  lastError: string | undefined;
  removed: boolean;
  replaceTimer: NodeJS.Timeout | undefined;
}

export interface PathStats {
  key: string;
  local: string;
  remote: string;
  origin: string;
  backup: boolean;
  state: SlotState;
  attempts: number;
  lastError: string | undefined;
}

export interface ClientStats {
  session: SessionStats | undefined;
  paths: PathStats[];
}

/** A subflow still suspect this long gets a fresh connection tried beside it (ms). */
const REPLACE_AFTER_MS = 500;
/** Connect timeout of those attempts: short, since SYNs into a dead link vanish (ms). */
const REPLACE_CONNECT_TIMEOUT_MS = 1_000;
/** Unsent bytes the kernel may hold per subflow (TCP_NOTSENT_LOWAT). */
const NOTSENT_LOWAT = 128 * 1024;

const SILENT: ClientLogger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

/**
 * The client side: keeps one session to the server over one subflow per
 * path (local source x server address), reconnects lost paths with backoff,
 * follows interface changes, and opens streams for the frontends.
 */
export class PlaitClient {
  private readonly config: Config;
  private readonly log: ClientLogger;
  private session: Session | undefined;
  private helloInFlight: Promise<void> | undefined;
  private readonly slots = new Map<string, Slot>();
  private readonly remotes: RemoteAddr[];
  private readonly addrIds = new Map<string, number>();
  private sessionWaiters: (() => void)[] = [];
  private graceTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private everConnected = false;
  private closed = false;
  private startResolve: (() => void) | undefined;
  private startReject: ((e: Error) => void) | undefined;
  readonly counters = { sessions: 0, subflowsOpened: 0, subflowFailures: 0, subflowsReplaced: 0, dials: 0, dialFailures: 0 };

  constructor(private readonly opts: PlaitClientOptions) {
    this.config = makeConfig(opts.config);
    this.log = opts.log ?? SILENT;
    this.remotes = opts.servers.map((s) => ({ host: s.host, port: s.port, id: 0 }));
    if (opts.scheduler) createScheduler(opts.scheduler); // fail early on a bad name
  }

  /** Start connecting; resolves once the first session is up, rejects if the secret is refused. */
  start(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      this.startResolve = resolve;
      this.startReject = reject;
    });
    this.refreshPaths();
    if (this.opts.sources.vias.length > 0 || this.opts.sources.backups.some((b) => net.isIP(b) === 0)) {
      this.pollTimer = setInterval(() => this.refreshPaths(), this.opts.pollMs ?? 2_000);
      this.pollTimer.unref();
    }
    return p;
  }

  /** Open a stream to `target` through the server (a frontend's Dialer). */
  dial = async (target: Target): Promise<Duplex> => {
    this.counters.dials++;
    const timeoutMs = this.opts.dialTimeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    const session = await this.awaitSession(timeoutMs);
    let stream;
    try {
      stream = session.openStream(target);
    } catch (e) {
      this.counters.dialFailures++;
      const closed = e instanceof PlaitError && e.code === ErrorCode.CLOSED;
      throw new DialError(closed ? ResetCode.SESSION_CLOSED : ResetCode.LIMIT, e instanceof Error ? e.message : String(e));
    }
    return new Promise<Duplex>((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.reset(ResetCode.TIMEOUT, 'dial timed out');
        this.counters.dialFailures++;
        reject(new DialError(ResetCode.TIMEOUT, `no answer from the server within ${timeoutMs / 1000} s`));
      }, Math.max(0, deadline - Date.now()));
      stream.setHandlers({
        accept: () => {
          clearTimeout(timer);
          resolve(new StreamDuplex(stream));
        },
        reset: (code, reason) => {
          clearTimeout(timer);
          this.counters.dialFailures++;
          reject(new DialError(code as ResetCode, reason || 'refused by the server'));
        },
      });
    });
  };

  stats(): ClientStats {
    return {
      session: this.session?.stats(),
      paths: [...this.slots.values()].map((s) => ({
        key: s.spec.key,
        local: s.spec.local.address ?? '(default)',
        remote: `${s.spec.remote.host}:${s.spec.remote.port}`,
        origin: s.spec.local.origin,
        backup: s.spec.local.backup,
        state: s.state,
        attempts: s.attempt,
        lastError: s.lastError,
      })),
    };
  }

  get currentSession(): Session | undefined {
    return this.session;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.graceTimer);
    for (const slot of this.slots.values()) this.dropSlot(slot);
    this.session?.close();
    this.session = undefined;
    for (const w of this.sessionWaiters) w();
    this.sessionWaiters = [];
  }

  // --------------------------------------------------------------- paths

  /** Recompute the wanted paths; open new ones, drop vanished ones. */
  refreshPaths(): void {
    if (this.closed) return;
    const wanted = planPaths(localSources(this.opts.sources), this.remotes);
    const keys = new Set(wanted.map((p) => p.key));
    for (const slot of [...this.slots.values()]) {
      if (!keys.has(slot.spec.key)) {
        this.log.info({ path: slot.spec.key }, 'path gone (address removed); closing its subflow');
        this.dropSlot(slot);
        this.slots.delete(slot.spec.key);
      }
    }
    for (const spec of wanted) {
      if (this.slots.has(spec.key)) continue;
      const slot: Slot = {
        spec,
        state: 'idle',
        attempt: 0,
        addrId: this.addrIdFor(spec.local.address),
        timer: undefined,
        subflow: undefined,
        socket: undefined,
        lastError: undefined,
        removed: false,
        replaceTimer: undefined,
      };
      this.slots.set(spec.key, slot);
      this.log.info({ path: spec.key, backup: spec.local.backup, origin: spec.local.origin }, 'new path');
      this.kick(slot);
    }
  }

  private addrIdFor(address: string | undefined): number {
    const k = address ?? '*';
    let id = this.addrIds.get(k);
    if (id === undefined) {
      id = this.addrIds.size % 256;
      this.addrIds.set(k, id);
    }
    return id;
  }

  private dropSlot(slot: Slot): void {
    slot.removed = true;
    clearTimeout(slot.timer);
    clearTimeout(slot.replaceTimer);
    if (slot.subflow && this.session) this.session.closeSubflow(slot.subflow, 'path removed', true);
    slot.socket?.destroy();
  }

  private kick(slot: Slot): void {
    if (slot.state !== 'idle' || slot.removed || this.closed) return;
    slot.state = 'connecting';
    void this.connectSlot(slot);
  }

  private retryLater(slot: Slot, why: string): void {
    if (slot.removed || this.closed) return;
    slot.state = 'backoff';
    slot.subflow = undefined;
    slot.socket = undefined;
    slot.lastError = why;
    const wait = backoffMs(slot.attempt++);
    this.log.debug({ path: slot.spec.key, retryInMs: wait }, `path down: ${why}`);
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => {
      slot.state = 'idle';
      this.kick(slot);
    }, wait);
    slot.timer.unref();
  }

  private async connectSlot(slot: Slot): Promise<void> {
    let helloDone: (() => void) | undefined;
    try {
      // One HELLO at a time: other paths wait for the session, then JOIN it.
      while (!this.session && this.helloInFlight) await this.helloInFlight;
      if (!this.session) this.helloInFlight = new Promise<void>((r) => (helloDone = r));
      const socket = await this.tcpConnect(slot.spec);
      slot.socket = socket;
      if (slot.removed || this.closed) {
        socket.destroy();
        return;
      }
      const channel = new SocketChannel(socket);
      const backup = slot.spec.local.backup;
      if (helloDone) {
        const { session, subflow } = await connectSession(channel, {
          secretKeys: this.opts.secretKeys,
          config: this.config,
          clock: realClock,
          backup,
          addrId: slot.addrId,
          ...(this.opts.scheduler ? { scheduler: createScheduler(this.opts.scheduler) } : {}),
        });
        this.adoptSession(session);
        this.subflowUp(slot, subflow);
      } else {
        const session = this.session;
        if (!session) throw new Error('session went away');
        const subflow = await joinSession(session, channel, { clock: realClock, backup, addrId: slot.addrId });
        if (session !== this.session || slot.removed) {
          session.closeSubflow(subflow, 'stale', true);
          return;
        }
        this.subflowUp(slot, subflow);
      }
    } catch (e) {
      this.counters.subflowFailures++;
      const msg = e instanceof Error ? e.message : String(e);
      const code = e instanceof PlaitError ? e.code : undefined;
      if (code === ErrorCode.AUTH_FAILED) {
        this.log.error({ path: slot.spec.key }, `authentication failed: ${msg} (check that client and server use the same secret)`);
        if (!this.everConnected) {
          this.startReject?.(new PlaitError(ErrorCode.AUTH_FAILED, `authentication failed: ${msg}`));
          this.startReject = this.startResolve = undefined;
        }
      } else if (code === ErrorCode.UNKNOWN_TOKEN && this.session) {
        // The server forgot our session (restart or expiry): start a new one.
        this.log.warn({}, 'server no longer knows the session; starting a new one');
        this.session.close(new PlaitError(ErrorCode.UNKNOWN_TOKEN, 'server forgot the session'), false);
      } else {
        this.log.debug({ path: slot.spec.key, err: msg }, 'subflow attempt failed');
      }
      this.retryLater(slot, msg);
    } finally {
      if (helloDone) {
        this.helloInFlight = undefined;
        helloDone();
      }
    }
  }

  /**
   * A subflow that stays suspect is stuck behind its kernel's retransmission
   * backoff (seconds after a long outage). Try a fresh connection on the same
   * path every second; the first that joins replaces it, so a restored link
   * carries traffic again about a second after it comes back.
   */
  private scheduleReplacement(slot: Slot, sf: Subflow, delayMs: number): void {
    clearTimeout(slot.replaceTimer);
    slot.replaceTimer = setTimeout(() => void this.replace(slot, sf), delayMs);
    slot.replaceTimer.unref();
  }

  private async replace(slot: Slot, sf: Subflow): Promise<void> {
    const session = this.session;
    if (!session || slot.removed || this.closed || slot.subflow !== sf || sf.state !== 'suspect') return;
    try {
      const socket = await this.tcpConnect(slot.spec, REPLACE_CONNECT_TIMEOUT_MS);
      const fresh = await joinSession(session, new SocketChannel(socket), {
        clock: realClock,
        backup: slot.spec.local.backup,
        addrId: slot.addrId,
        timeoutMs: REPLACE_CONNECT_TIMEOUT_MS * 2,
      });
      if (slot.subflow !== sf || session !== this.session || slot.removed || sf.state !== 'suspect') {
        session.closeSubflow(fresh, 'not needed any more', true);
        return;
      }
      slot.subflow = fresh;
      session.closeSubflow(sf, 'replaced by a fresh connection on the same path', true);
      this.counters.subflowsReplaced++;
      this.log.info({ path: slot.spec.key, old: sf.id, subflow: fresh.id }, 'stuck subflow replaced by a fresh connection');
    } catch (e) {
      this.log.debug({ path: slot.spec.key, err: e instanceof Error ? e.message : String(e) }, 'replacement attempt failed');
      if (slot.subflow === sf && sf.state === 'suspect') this.scheduleReplacement(slot, sf, 0);
    }
  }

  private subflowUp(slot: Slot, subflow: Subflow): void {
    slot.state = 'up';
    slot.subflow = subflow;
    slot.attempt = 0;
    slot.lastError = undefined;
    this.counters.subflowsOpened++;
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.log.info({ path: slot.spec.key, subflow: subflow.id, backup: subflow.backup }, 'subflow up');
  }

  private async tcpConnect(spec: PathSpec, timeoutMs = this.opts.connectTimeoutMs ?? 10_000): Promise<net.Socket> {
    const local = spec.local.address;
    const sockopts = loadSockOpts();
    let socket: net.Socket;
    if (spec.local.device && sockopts.available) {
      // SO_BINDTODEVICE: the subflow leaves through its interface whatever
      // the routing table says (source-address routing not needed).
      const family = local ? net.isIP(local) : 0;
      const host = net.isIP(spec.remote.host) ? spec.remote.host : (await lookup(spec.remote.host, family ? { family } : {})).address;
      socket = await sockopts.connectBound({ host, port: spec.remote.port, device: spec.local.device, ...(local ? { localAddress: local } : {}), timeoutMs });
      socket.setNoDelay(true);
    } else {
      socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({
          host: spec.remote.host,
          port: spec.remote.port,
          ...(local ? { localAddress: local, family: net.isIP(local) } : {}),
          noDelay: true,
        });
        const timer = setTimeout(() => {
          s.destroy();
          reject(new Error(`connect to ${spec.remote.host}:${spec.remote.port} timed out`));
        }, timeoutMs);
        s.once('connect', () => {
          clearTimeout(timer);
          s.removeAllListeners('error');
          resolve(s);
        });
        s.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
    }
    // Keep the kernel's unsent queue short, so data not yet committed to a
    // subflow can still go to another one (no-op where unsupported).
    sockopts.setNotsentLowat(socket, NOTSENT_LOWAT);
    return socket;
  }

  // ------------------------------------------------------------- session

  private adoptSession(session: Session): void {
    this.session = session;
    this.everConnected = true;
    this.counters.sessions++;
    this.log.info({ token: Buffer.from(session.keys.token).toString('hex').slice(0, 8) }, 'session established');
    session.setEvents({
      stream: (s) => s.reset(ResetCode.NOT_ALLOWED, 'the client accepts no streams'),
      subflowDown: (sf, reason, closed) => {
        const slot = [...this.slots.values()].find((x) => x.subflow === sf);
        if (closed) {
          this.log.warn({ subflow: sf.id, path: slot?.spec.key }, `subflow closed: ${reason}`);
          if (slot) this.retryLater(slot, reason);
        } else {
          this.log.warn({ subflow: sf.id, path: slot?.spec.key }, `subflow suspect: ${reason}`);
          if (slot) this.scheduleReplacement(slot, sf, REPLACE_AFTER_MS);
        }
      },
      subflowUp: (sf) => this.log.debug({ subflow: sf.id }, 'subflow usable'),
      addresses: (addrs) => this.addRemotes(addrs),
      idle: () => {
        const grace = this.opts.graceMs ?? 30_000;
        this.log.warn({}, `all subflows down; keeping streams for ${grace / 1000} s while reconnecting`);
        clearTimeout(this.graceTimer);
        this.graceTimer = setTimeout(() => {
          if (session.subflowCount === 0) session.close(new PlaitError(ErrorCode.TIMEOUT, `no path to the server for ${grace / 1000} s`), false);
        }, grace);
        this.graceTimer.unref();
      },
      closed: (err) => {
        if (this.session !== session) return;
        this.session = undefined;
        this.log.warn({}, `session closed${err ? `: ${err.message}` : ''}`);
        for (const slot of this.slots.values()) {
          if (slot.state === 'up') this.retryLater(slot, 'session closed');
        }
      },
    });
    // The server's `ok` (with its ADD_ADDR list) arrived before these events were set.
    this.addRemotes(session.peerAddresses);
    this.startResolve?.();
    this.startResolve = this.startReject = undefined;
    const waiters = this.sessionWaiters;
    this.sessionWaiters = [];
    for (const w of waiters) w();
  }

  private addRemotes(addrs: readonly { id: number; host: string; port: number }[]): void {
    let added = false;
    for (const a of addrs) {
      if (this.remotes.some((r) => r.host === a.host && r.port === a.port)) continue;
      this.log.info({ host: a.host, port: a.port }, 'server advertised an address');
      this.remotes.push({ host: a.host, port: a.port, id: a.id });
      added = true;
    }
    if (added) this.refreshPaths();
  }

  private awaitSession(timeoutMs: number): Promise<Session> {
    if (this.session) return Promise.resolve(this.session);
    return new Promise<Session>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new DialError(ResetCode.NETWORK_UNREACHABLE, 'no session to the plait server (is it reachable?)'));
      }, timeoutMs);
      this.sessionWaiters.push(() => {
        clearTimeout(timer);
        if (this.session) resolve(this.session);
        else reject(new DialError(ResetCode.SESSION_CLOSED, 'client closed'));
      });
    });
  }
}
