import * as net from 'node:net';
import { DatagramFlows } from './datagram-flows.js';
import type { Duplex } from 'node:stream';
import {
  connectSession,
  createScheduler,
  ErrorCode,
  joinSession,
  makeConfig,
  makeCounters,
  CLIENT_COUNTERS,
  type Counters,
  PlaitError,
  realClock,
  RemoteError,
  ResetCode,
  sessionCipher,
  type CipherName,
  type RecordAeadFactory,
  type Clock,
  type Config,
  type ClientUser,
  type SecretKeys,
  type Session,
  type ByteChannel,
  type SessionStats,
  type Subflow,
  type SubflowRole,
  type Timer,
} from '@plait/core';
import { adoptSlabReads, dialWebSocket, loadSockOpts, slabOnread, SocketChannel, StreamDuplex } from '@plait/node';
import { lookup } from 'node:dns/promises';
import { DialError, type Target } from './dialer.js';
import { backoffMs, interfaceAddresses, localSources, planPaths, type PathSpec, type RemoteAddr, type SourceOptions } from './path-manager.js';
import { classifyPathError, type PathProblem } from './path-problem.js';
import type { CapAction, CapLedger, CapStats } from './cap-ledger.js';
import { CountingChannel } from './counting-channel.js';
import { Publications, type ClientPublicationStats, type PublishSpec } from './publish.js';

export interface ClientLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** A plait server: TCP at host:port, or a WebSocket URL (ws:// or wss://) whose host and port these repeat. */
export interface ServerAddr {
  host: string;
  port: number;
  url?: string;
}

export interface PlaitClientOptions {
  servers: ServerAddr[];
  /** wss:// servers: CAs (PEM) to trust instead of Node's built-in list, for a private CA. */
  ca?: string | Buffer;
  secretKeys: SecretKeys;
  /** Our user name on a server with several users (--user, --server-key). */
  user?: ClientUser;
  sources: SourceOptions;
  scheduler?: string;
  /** Target ports whose streams are latency class (default DEFAULT_LATENCY_PORTS); the server is told too. */
  latencyPorts?: readonly number[];
  config?: Partial<Config>;
  /** Keep the session and its streams through a total outage this long (ms). */
  graceMs?: number;
  /** A dial fails if the server has not connected the target by then (ms). */
  dialTimeoutMs?: number;
  /** How often `--via` interfaces are re-read (ms). */
  pollMs?: number;
  /** TCP connect timeout per subflow (ms). */
  connectTimeoutMs?: number;
  /**
   * With no session yet, start the HELLO on the next path this long after
   * the previous one (happy eyeballs): a dead first link costs this, not a
   * handshake timeout (ms).
   */
  helloStaggerMs?: number;
  /**
   * Every timer and timestamp of the client and its session (backoff,
   * stagger, grace, dial and connect timeouts, polling, HELLO time): tests
   * give a virtual or skewed one. Default: the real clock (unref'd timers).
   */
  clock?: Clock;
  /** Record cipher asked for in the HELLO (default AES-256-GCM); joins repeat the session's. */
  cipher?: CipherName;
  /** How records reach OpenSSL (default node:crypto; the CLI passes @plait/node's openSslAead). */
  recordAead?: RecordAeadFactory;
  /**
   * Data caps (`--cap`): at its cap a path becomes a backup or goes off
   * until its period ends. The caller owns the ledger (and closes it, which
   * saves the usage); several clients may share one.
   */
  caps?: CapLedger;
  /** Server ports to publish to targets on this side (--publish, PROTOCOL.md 7.1), asked for on every session. */
  publish?: readonly PublishSpec[];
  log?: ClientLogger;
  /**
   * Counters and datagram flows owned by someone else (SiteFailover: one set
   * for all its sites, so totals and UDP flows survive a failover).
   */
  shared?: { counters: Counters<typeof CLIENT_COUNTERS>; datagrams: DatagramFlows };
}

/** `off`: held down by a data cap with action off until its period ends. */
type SlotState = 'idle' | 'connecting' | 'up' | 'backoff' | 'off';

interface Slot {
  spec: PathSpec;
  /** The path's role now: from the flags, then changed at runtime (setSubflowRole, the peer's prio, a reload). */
  role: SubflowRole;
  state: SlotState;
  attempt: number;
  addrId: number;
  timer: Timer | undefined;
  subflow: Subflow | undefined;
  socket: net.Socket | undefined;
  lastError: string | undefined;
  /** Why the path is down, as last logged (a new kind or message is logged again). */
  problem: PathProblem | undefined;
  removed: boolean;
  replaceTimer: Timer | undefined;
  /** The caps (`--cap` PATHs) this path counts against. */
  caps: string[];
  /** Bytes on all of the path's subflows so far, replaced ones included (a subflow's own counters start at 0). */
  bytesSent: number;
  bytesReceived: number;
}

export interface PathStats {
  key: string;
  local: string;
  remote: string;
  origin: string;
  /** True for role `backup` only. */
  backup: boolean;
  /** The role the path has now: a reached data cap with action backup makes it `backup`. */
  role: SubflowRole;
  /** The role set by the flags, the config file or at runtime: the path's role again once its cap lifts. */
  configuredRole: SubflowRole;
  /** Caps (their PATH) this path counts against, and whether one of them holds it now. */
  caps: string[];
  capped: CapAction | undefined;
  /** Bytes both ways on the path's subflows since the client started (not reset when a subflow is replaced). */
  bytesSent: number;
  bytesReceived: number;
  /** The path's subflow now (its id in /stats), if one is up. */
  subflow: number | undefined;
  state: SlotState;
  attempts: number;
  lastError: string | undefined;
  /** Machine-readable kind of `lastError` (refused, unresolvable, auth-failed, clock-skew, ...). */
  problem: string | undefined;
}

export interface ClientStats {
  session: SessionStats | undefined;
  paths: PathStats[];
  /** Offset added to our clock for HELLO timestamps, learned from a verified refusal (ms). */
  clockOffsetMs: number;
  /** While every path is down: since when (Unix ms of the last sign of life) and until when the session is kept. */
  outage: { sinceMs: number; keepUntilMs: number } | undefined;
  /** Data caps: usage this period per cap (none without caps). */
  caps?: CapStats[];
  /** Published ports (--publish): the server's answer and the connections carried in. */
  publications?: ClientPublicationStats[];
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
  private readonly clock: Clock;
  private session: Session | undefined;
  private readonly slots = new Map<string, Slot>();
  /** Where subflows come from: the options' sources until reconfigure() replaces them. */
  private sources: SourceOptions;
  private readonly remotes: RemoteAddr[];
  private readonly addrIds = new Map<string, number>();
  private sessionWaiters: { resolve(s: Session): void; reject(e: Error): void }[] = [];
  /** Published ports: asked for again on every new session. */
  private readonly publications: Publications;
  private pollTimer: Timer | undefined;
  private everConnected = false;
  private closed = false;
  private startResolve: (() => void) | undefined;
  private startReject: ((e: Error) => void) | undefined;
  /** HELLOs racing on different paths while there is no session (happy eyeballs). */
  private helloRacers = 0;
  private helloWaiters: ((granted: boolean) => void)[] = [];
  private staggerTimer: Timer | undefined;
  /** Added to our wall clock for HELLO timestamps; learned from a verified STALE_TIMESTAMP. */
  private clockOffsetMs = 0;
  /** Every path down: the session is kept until `lastHeardAt + grace`. */
  private outage: { timer: Timer; loggedAt: number } | undefined;
  /** `--via` interfaces seen missing, so each change is logged once. */
  private readonly missingVias = new Set<string>();
  /** Declared, with what each counts, in @plait/core counters.ts (CLIENT_COUNTERS). */
  readonly counters: Counters<typeof CLIENT_COUNTERS>;
  /** UDP associations and DNS queries ride these (SOCKS5 UDP ASSOCIATE, --dns). */
  readonly datagrams: DatagramFlows;

  private readonly ledger: CapLedger | undefined;
  private readonly unsubscribeCaps: (() => void) | undefined;

  constructor(private readonly opts: PlaitClientOptions) {
    this.config = makeConfig(opts.config);
    this.counters = opts.shared?.counters ?? makeCounters(CLIENT_COUNTERS);
    this.datagrams = opts.shared?.datagrams ?? new DatagramFlows(() => this.session);
    this.log = opts.log ?? SILENT;
    this.clock = opts.clock ?? realClock;
    this.publications = new Publications(opts.publish ?? [], { clock: this.clock, counters: this.counters, log: this.log });
    this.remotes = opts.servers.map((s) => ({ host: s.host, port: s.port, id: 0, ...(s.url !== undefined ? { url: s.url } : {}) }));
    this.sources = opts.sources;
    if (opts.scheduler) createScheduler(opts.scheduler); // fail early on a bad name
    this.ledger = opts.caps;
    this.unsubscribeCaps = opts.caps?.onChange((path) => {
      for (const slot of this.slots.values()) if (slot.caps.includes(path)) this.applyCap(slot);
    });
  }

  private get graceMs(): number {
    return this.opts.graceMs ?? 30_000;
  }

  /** Start connecting; resolves once the first session is up, rejects if the secret is refused on every path. */
  start(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      this.startResolve = resolve;
      this.startReject = reject;
    });
    const sockopts = loadSockOpts();
    if (!sockopts.available) {
      const lost = this.interfaceNames().length > 0
        ? '--via binds by source address only (no SO_BINDTODEVICE, so routing must send each address out of its link), '
        : '';
      this.log.warn(
        { reason: sockopts.reason },
        `kernel socket options unavailable: ${lost}no TCP_NOTSENT_LOWAT (more queueing on slow links), no TCP_INFO in /stats`,
      );
    }
    this.refreshPaths();
    if (this.interfaceNames().length > 0) this.schedulePoll();
    return p;
  }

  /** Interfaces the sources name (`--via`, and `--backup`/`--overflow` given a name): followed by polling. */
  private interfaceNames(): string[] {
    const s = this.sources;
    return [...s.vias, ...[...s.backups, ...(s.overflows ?? [])].filter((b) => net.isIP(b) === 0)];
  }

  /**
   * New sources (a reloaded config file): paths no longer wanted close their
   * subflows, new ones start, and a path whose role the new sources change
   * takes it at once. The session and its streams are untouched.
   */
  reconfigure(sources: SourceOptions): void {
    if (this.closed) return;
    this.sources = sources;
    this.refreshPaths();
    if (this.interfaceNames().length > 0 && !this.pollTimer) this.schedulePoll();
  }

  /**
   * Change the role of the path whose subflow has this id (as in /stats):
   * here and, by `prio`, at the server. The path keeps the role for its
   * later subflows. Returns the path's key, or undefined if no path has a
   * subflow with that id.
   */
  setSubflowRole(subflowId: number, role: SubflowRole): string | undefined {
    const slot = [...this.slots.values()].find((x) => x.subflow !== undefined && x.subflow.id === subflowId && x.subflow.state !== 'pending-ok');
    if (!slot || !slot.subflow) return undefined;
    this.setSlotRole(slot, role, 'request');
    return slot.spec.key;
  }

  private setSlotRole(slot: Slot, role: SubflowRole, why: string): void {
    const capped = this.capAction(slot);
    if (slot.role !== role) {
      const held = capped ? ` once its data cap lifts (${capped === 'off' ? 'off' : 'backup'} until its period ends)` : '';
      this.log.info({ path: slot.spec.key, role, was: slot.role, by: why, ...(capped ? { capped } : {}) }, `path role now ${role}${held}`);
    }
    slot.role = role;
    this.pushRole(slot);
  }

  /** Give the path's subflow its effective role (here and, by `prio`, at the server) if it differs. */
  private pushRole(slot: Slot): void {
    const sf = slot.subflow;
    const role = this.effectiveRole(slot);
    if (sf && this.session && !sf.isClosed && sf.role !== role) this.session.setSubflowRole(sf, role);
  }

  // ------------------------------------------------------------ data caps

  /** What a reached cap does to this path now: `off` beats `backup`; undefined while no cap of its is reached. */
  private capAction(slot: Slot): CapAction | undefined {
    if (!this.ledger) return undefined;
    let action: CapAction | undefined;
    for (const p of slot.caps) {
      const a = this.ledger.actionFor(p);
      if (a === 'off') return a;
      action ??= a;
    }
    return action;
  }

  /** The role the path's subflows get: its own, unless a reached cap makes it a backup. */
  private effectiveRole(slot: Slot): SubflowRole {
    return this.capAction(slot) === 'backup' ? 'backup' : slot.role;
  }

  /** The caps whose PATH names this path's source: its address, or its interface. */
  private capsFor(spec: PathSpec): string[] {
    const caps = this.ledger?.specs ?? [];
    if (caps.length === 0) return [];
    const addr = spec.local.address?.toLowerCase();
    return [
      ...new Set(
        caps
          .filter((c) => (net.isIP(c.path) ? c.path.toLowerCase() === addr : spec.local.device === c.path || (addr !== undefined && interfaceAddresses(c.path).some((a) => a.toLowerCase() === addr))))
          .map((c) => c.path),
      ),
    ];
  }

  /** A cap of the path was reached or lifted: take the path off, back on, or give its subflow its role. */
  private applyCap(slot: Slot): void {
    if (slot.removed || this.closed) return;
    if (this.capAction(slot) === 'off') {
      if (slot.state === 'off') return;
      slot.timer?.cancel();
      slot.timer = undefined;
      slot.replaceTimer?.cancel();
      slot.replaceTimer = undefined;
      const sf = slot.subflow;
      slot.state = 'off';
      slot.subflow = undefined;
      // Unlinked first, so the subflowDown this causes schedules no reconnect.
      if (sf && this.session && !sf.isClosed) this.session.closeSubflow(sf, 'data cap reached', true);
      slot.socket?.destroy();
      slot.socket = undefined;
      slot.lastError = 'data cap reached';
      return;
    }
    if (slot.state === 'off') {
      slot.state = 'idle';
      slot.attempt = 0;
      slot.lastError = undefined;
      this.kick(slot);
      return;
    }
    this.pushRole(slot);
  }

  /** The path's subflow channel (TCP, or WebSocket over it), its bytes counted for the path's totals and caps. */
  private channelFor(slot: Slot, channel: ByteChannel): CountingChannel {
    const ledger = this.ledger;
    return new CountingChannel(channel, (sent, received) => {
      slot.bytesSent += sent;
      slot.bytesReceived += received;
      // slot.caps read now: a reload may have changed which caps the path counts against.
      if (ledger) for (const p of slot.caps) ledger.add(p, sent + received);
    });
  }

  /** Re-read the interfaces every `pollMs` (a clock timer re-armed each time, so tests can drive it). */
  private schedulePoll(): void {
    this.pollTimer = this.clock.setTimeout(() => {
      this.pollTimer = undefined;
      if (this.closed) return;
      this.schedulePoll();
      this.refreshPaths();
    }, this.opts.pollMs ?? 2_000);
  }

  /**
   * Open a stream to `target` through the server (a frontend's Dialer).
   * The dial timeout counts only time in which some path works: a stream
   * opened during an outage waits for the session, as long as it is kept.
   */
  dial = async (target: Target): Promise<Duplex> => {
    this.counters.dials++;
    const timeoutMs = this.opts.dialTimeoutMs ?? 15_000;
    const session = await this.awaitSession(timeoutMs + this.graceMs);
    let stream;
    try {
      stream = session.openStream(target);
    } catch (e) {
      this.counters.dialFailures++;
      const closed = e instanceof PlaitError && e.code === ErrorCode.CLOSED;
      throw new DialError(closed ? ResetCode.SESSION_CLOSED : ResetCode.LIMIT, e instanceof Error ? e.message : String(e));
    }
    return new Promise<Duplex>((resolve, reject) => {
      // Sample every so often; only time with a usable subflow counts.
      const stepMs = Math.min(250, timeoutMs);
      let waited = 0;
      let timer: Timer;
      const tick = (): void => {
        if (session.hasUsableSubflow) waited += stepMs;
        if (waited < timeoutMs) {
          timer = this.clock.setTimeout(tick, stepMs);
          return;
        }
        stream.reset(ResetCode.TIMEOUT, 'dial timed out');
        this.counters.dialFailures++;
        reject(new DialError(ResetCode.TIMEOUT, `no answer from the server within ${timeoutMs / 1000} s`));
      };
      timer = this.clock.setTimeout(tick, stepMs);
      stream.setHandlers({
        accept: () => {
          timer.cancel();
          resolve(new StreamDuplex(stream));
        },
        reset: (code, reason) => {
          timer.cancel();
          this.counters.dialFailures++;
          reject(new DialError(code as ResetCode, reason || 'refused by the server'));
        },
      });
    });
  };

  stats(): ClientStats {
    const session = this.session;
    return {
      session: session?.stats(),
      paths: [...this.slots.values()].map((s) => ({
        key: s.spec.key,
        local: s.spec.local.address ?? '(default)',
        remote: s.spec.remote.url ?? `${s.spec.remote.host}:${s.spec.remote.port}`,
        origin: s.spec.local.origin,
        backup: this.effectiveRole(s) === 'backup',
        role: this.effectiveRole(s),
        configuredRole: s.role,
        caps: s.caps,
        capped: this.capAction(s),
        bytesSent: s.bytesSent,
        bytesReceived: s.bytesReceived,
        subflow: s.subflow && !s.subflow.isClosed ? s.subflow.id : undefined,
        state: s.state,
        attempts: s.attempt,
        lastError: s.lastError,
        problem: s.problem?.kind,
      })),
      clockOffsetMs: Math.round(this.clockOffsetMs),
      outage:
        this.outage && session
          ? {
              sinceMs: Math.round(this.clock.wallNow() - (this.clock.now() - session.lastHeardAt)),
              keepUntilMs: Math.round(this.clock.wallNow() + (session.lastHeardAt + this.graceMs - this.clock.now())),
            }
          : undefined,
      caps: this.ledger?.stats() ?? [],
      ...(this.publications.size > 0 ? { publications: this.publications.stats() } : {}),
    };
  }

  get currentSession(): Session | undefined {
    return this.session;
  }

  close(): void {
    this.closed = true;
    this.pollTimer?.cancel();
    this.pollTimer = undefined;
    this.staggerTimer?.cancel();
    this.staggerTimer = undefined;
    this.endOutage(undefined);
    this.unsubscribeCaps?.();
    for (const slot of this.slots.values()) this.dropSlot(slot);
    this.session?.close();
    this.session = undefined;
    this.rejectWaiters(new DialError(ResetCode.SESSION_CLOSED, 'client closed'));
    this.releaseHelloWaiters();
  }

  // --------------------------------------------------------------- paths

  /** Recompute the wanted paths; open new ones, drop vanished ones. */
  refreshPaths(): void {
    if (this.closed) return;
    this.noteMissingVias();
    const wanted = planPaths(localSources(this.sources), this.remotes);
    const keys = new Set(wanted.map((p) => p.key));
    for (const slot of [...this.slots.values()]) {
      if (!keys.has(slot.spec.key)) {
        this.log.info({ path: slot.spec.key }, 'path gone (address removed); closing its subflow');
        this.dropSlot(slot);
        this.slots.delete(slot.spec.key);
      }
    }
    for (const spec of wanted) {
      const have = this.slots.get(spec.key);
      if (have) {
        // Only a change in what the sources say moves the role: one set at runtime stays until then.
        const was = have.spec.local.role;
        have.spec = spec;
        have.caps = this.capsFor(spec);
        if (spec.local.role !== was) this.setSlotRole(have, spec.local.role, 'sources');
        continue;
      }
      const slot: Slot = {
        spec,
        role: spec.local.role,
        state: 'idle',
        attempt: 0,
        addrId: this.addrIdFor(spec.local.address),
        timer: undefined,
        subflow: undefined,
        socket: undefined,
        lastError: undefined,
        problem: undefined,
        removed: false,
        replaceTimer: undefined,
        caps: this.capsFor(spec),
        bytesSent: 0,
        bytesReceived: 0,
      };
      this.slots.set(spec.key, slot);
      this.log.info({ path: spec.key, role: spec.local.role, origin: spec.local.origin }, 'new path');
      this.kick(slot);
    }
  }

  /** Say once when a `--via` (or `--backup IFACE`) interface is missing or has no address, and when it comes back. */
  private noteMissingVias(): void {
    for (const name of this.interfaceNames()) {
      const missing = interfaceAddresses(name).length === 0;
      if (missing && !this.missingVias.has(name)) {
        this.missingVias.add(name);
        this.log.warn({ iface: name }, `interface ${name} does not exist or has no usable address; waiting for it to appear`);
      } else if (!missing && this.missingVias.delete(name)) {
        this.log.info({ iface: name }, `interface ${name} is back`);
      }
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
    slot.timer?.cancel();
    slot.replaceTimer?.cancel();
    if (slot.subflow && this.session) this.session.closeSubflow(slot.subflow, 'path removed', true);
    slot.socket?.destroy();
  }

  private kick(slot: Slot): void {
    if (slot.state !== 'idle' || slot.removed || this.closed) return;
    if (this.capAction(slot) === 'off') {
      slot.state = 'off';
      return;
    }
    slot.state = 'connecting';
    void this.connectSlot(slot);
  }

  /** Try the path again after `waitMs`, or after the next backoff step. */
  private retryLater(slot: Slot, why: string, waitMs?: number): void {
    if (slot.removed || this.closed || slot.state === 'off') return;
    slot.state = 'backoff';
    slot.subflow = undefined;
    slot.socket = undefined;
    slot.lastError = why;
    const wait = waitMs ?? backoffMs(slot.attempt++);
    this.log.debug({ path: slot.spec.key, retryInMs: wait }, `path down: ${why}`);
    slot.timer?.cancel();
    slot.timer = this.clock.setTimeout(() => {
      slot.timer = undefined;
      slot.state = 'idle';
      this.kick(slot);
    }, wait);
  }

  /** Log a path's problem at warn level once per change; repeats go to debug. */
  private reportProblem(slot: Slot, problem: PathProblem): void {
    const prev = slot.problem;
    slot.problem = problem;
    const fields = { path: slot.spec.key, problem: problem.kind };
    if (prev && prev.kind === problem.kind && prev.message === problem.message) this.log.debug(fields, `path down: ${problem.message}`);
    else if (problem.kind === 'auth-failed' || problem.kind === 'cipher-refused') this.log.error(fields, `path down: ${problem.message}`);
    else this.log.warn(fields, `path down: ${problem.message}`);
  }

  // ------------------------------------------------- HELLO race (no session yet)

  /**
   * Wait for this path's turn to send a HELLO. The first racer goes at once;
   * each further one after `helloStaggerMs`, or at once when a racer fails.
   * Returns early when a session appears (the path then joins it).
   */
  private helloTurn(): Promise<boolean> {
    if (this.helloRacers === 0 && this.helloWaiters.length === 0) {
      this.helloRacers++;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      this.helloWaiters.push(resolve);
      this.armStagger();
    });
  }

  /** Let the next waiting path race (it counts as a racer from now on). */
  private grantNext(): void {
    const next = this.helloWaiters.shift();
    if (!next) return;
    this.helloRacers++;
    next(true);
  }

  private armStagger(): void {
    if (this.staggerTimer || this.helloWaiters.length === 0) return;
    if (this.helloRacers === 0) {
      this.grantNext();
      this.armStagger();
      return;
    }
    this.staggerTimer = this.clock.setTimeout(() => {
      this.staggerTimer = undefined;
      this.grantNext();
      this.armStagger();
    }, this.opts.helloStaggerMs ?? 300);
  }

  /** A session exists (or the client closed): waiting paths join instead. */
  private releaseHelloWaiters(): void {
    this.staggerTimer?.cancel();
    this.staggerTimer = undefined;
    for (const w of this.helloWaiters.splice(0)) w(false);
  }

  private async connectSlot(slot: Slot): Promise<void> {
    let racing = false;
    try {
      if (!this.session) {
        racing = await this.helloTurn();
        if (slot.removed || this.closed) return;
      }
      const { channel: raw, socket } = await this.openChannel(slot.spec, undefined, (s) => (slot.socket = s));
      if (slot.removed || this.closed) {
        socket.destroy();
        return;
      }
      const channel = this.channelFor(slot, raw);
      const role = this.effectiveRole(slot);
      const existing = this.session;
      if (!existing) {
        const { session, subflow } = await connectSession(channel, {
          secretKeys: this.opts.secretKeys,
          config: this.config,
          clock: this.clock,
          role,
          addrId: slot.addrId,
          clockOffsetMs: this.clockOffsetMs,
          ...(this.opts.user ? { user: this.opts.user } : {}),
          ...(this.opts.cipher ? { cipher: this.opts.cipher } : {}),
          ...(this.opts.recordAead ? { recordAead: this.opts.recordAead } : {}),
          ...(this.opts.scheduler ? { scheduler: createScheduler(this.opts.scheduler) } : {}),
          ...(this.opts.latencyPorts ? { latencyPorts: this.opts.latencyPorts } : {}),
        });
        if (this.session || slot.removed || this.closed) {
          // Another path won the race: drop this spare session (the server
          // hears an orderly close) and join the winner from this path.
          this.counters.helloRaceLosers++;
          session.close();
          this.retryLater(slot, 'another path made the session first', 0);
          return;
        }
        this.adoptSession(session);
        this.subflowUp(slot, subflow);
      } else {
        const subflow = await joinSession(existing, channel, {
          clock: this.clock,
          role,
          addrId: slot.addrId,
          secretKeys: this.opts.secretKeys,
        });
        if (existing !== this.session || slot.removed) {
          existing.closeSubflow(subflow, 'stale', true);
          return;
        }
        this.subflowUp(slot, subflow);
      }
    } catch (e) {
      this.onAttemptFailed(slot, e);
    } finally {
      if (racing) {
        this.helloRacers--;
        // A failed racer hands its turn on at once (happy eyeballs).
        if (!this.session) this.armStagger();
      }
    }
  }

  private onAttemptFailed(slot: Slot, e: unknown): void {
    this.counters.subflowFailures++;
    const msg = e instanceof Error ? e.message : String(e);
    const code = e instanceof PlaitError ? e.code : undefined;
    const verified = e instanceof RemoteError && e.verified;
    if (e instanceof RemoteError && !verified) this.counters.unverifiedRefusals++;

    if (code === ErrorCode.STALE_TIMESTAMP && e instanceof RemoteError && verified && e.serverTime !== undefined) {
      // The server proved the secret and told us its time: adopt the offset
      // (routers without a real-time clock boot with a wrong date) and retry now.
      const offset = e.serverTime - this.clock.wallNow();
      const changed = Math.abs(offset - this.clockOffsetMs) > 1_000;
      this.clockOffsetMs = offset;
      this.counters.clockCorrections++;
      this.reportProblem(slot, classifyPathError(e, slot.spec, offset));
      this.retryLater(slot, slot.problem!.message, changed ? 0 : undefined);
      return;
    }
    if (code === ErrorCode.UNKNOWN_TOKEN && verified && this.session) {
      // An authenticated statement: the server forgot our session (restart
      // or expiry). Its streams are gone; start a new session at once.
      this.log.warn({ path: slot.spec.key }, 'the server no longer knows the session (it restarted or expired it); starting a new one');
      this.session.close(new PlaitError(ErrorCode.UNKNOWN_TOKEN, 'the server no longer knows the session'), false);
      slot.problem = undefined;
      this.retryLater(slot, msg, 0);
      return;
    }
    if (code === ErrorCode.DRAINING && verified && slot.attempt < 3) {
      // The instance is shutting down: try again at once (a few times; then back
      // off) so a load balancer sends the new HELLO to another instance;
      // three tries reach three instances of a round-robin pool.
      this.reportProblem(slot, classifyPathError(e, slot.spec));
      slot.attempt++;
      this.retryLater(slot, msg, 0);
      return;
    }
    // Anything else fails this path only: a REJECT that proves nothing, a
    // reset, a timeout. The session ends only by the server's authenticated
    // word, or when no path has worked for the whole grace.
    const problem = classifyPathError(e, slot.spec);
    this.reportProblem(slot, problem);
    this.retryLater(slot, problem.message);
    if (!this.session) this.failWaitersIfHopeless();
  }

  /**
   * With no session, when every path has failed at least once: refuse
   * waiting dials now (with the reasons) instead of letting SOCKS clients
   * hang; and give up starting if every path says the secret is wrong.
   */
  private failWaitersIfHopeless(): void {
    const slots = [...this.slots.values()];
    if (slots.length === 0 || slots.some((s) => s.state !== 'backoff' || !s.problem)) return;
    const reasons = [...new Set(slots.map((s) => s.problem!.message))].join('; ');
    if (!this.everConnected && slots.every((s) => s.problem!.kind === 'auth-failed')) {
      this.startReject?.(new PlaitError(ErrorCode.AUTH_FAILED, `authentication failed on every path: ${reasons}`));
      this.startReject = this.startResolve = undefined;
    } else if (!this.everConnected && slots.every((s) => s.problem!.kind === 'cipher-refused')) {
      // Retrying cannot help: the server's policy refuses our cipher on every path.
      this.startReject?.(new PlaitError(ErrorCode.CIPHER, `the server refused the record cipher on every path: ${reasons}`));
      this.startReject = this.startResolve = undefined;
    }
    this.rejectWaiters(new DialError(ResetCode.NETWORK_UNREACHABLE, `no session to the plait server: ${reasons}`));
  }

  /**
   * A subflow that stays suspect is stuck behind its kernel's retransmission
   * backoff (seconds after a long outage). Try a fresh connection on the same
   * path every second; the first that joins replaces it, so a restored link
   * carries traffic again about a second after it comes back.
   */
  private scheduleReplacement(slot: Slot, sf: Subflow, delayMs: number): void {
    slot.replaceTimer?.cancel();
    slot.replaceTimer = this.clock.setTimeout(() => {
      slot.replaceTimer = undefined;
      void this.replace(slot, sf);
    }, delayMs);
  }

  private async replace(slot: Slot, sf: Subflow): Promise<void> {
    const session = this.session;
    if (!session || slot.removed || this.closed || slot.subflow !== sf || sf.state !== 'suspect') return;
    try {
      const { channel } = await this.openChannel(slot.spec, REPLACE_CONNECT_TIMEOUT_MS);
      const fresh = await joinSession(session, this.channelFor(slot, channel), {
        clock: this.clock,
        role: this.effectiveRole(slot),
        addrId: slot.addrId,
        timeoutMs: REPLACE_CONNECT_TIMEOUT_MS * 2,
        secretKeys: this.opts.secretKeys,
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
      if (e instanceof RemoteError && e.code === ErrorCode.UNKNOWN_TOKEN && e.verified && session === this.session) {
        this.onAttemptFailed(slot, e);
        return;
      }
      if (slot.subflow === sf && sf.state === 'suspect') this.scheduleReplacement(slot, sf, 0);
    }
  }

  private subflowUp(slot: Slot, subflow: Subflow): void {
    slot.state = 'up';
    slot.subflow = subflow;
    slot.attempt = 0;
    slot.lastError = undefined;
    if (slot.problem) this.log.info({ path: slot.spec.key }, `path working again (was: ${slot.problem.message})`);
    slot.problem = undefined;
    this.counters.subflowsOpened++;
    this.log.info({ path: slot.spec.key, subflow: subflow.id, role: subflow.role }, 'subflow up');
    // The role (or a cap) may have changed while the subflow was joining.
    if (this.capAction(slot) === 'off') {
      this.applyCap(slot);
      return;
    }
    this.pushRole(slot);
    if (this.session) this.checkOutage(this.session);
  }

  /**
   * A subflow's channel on `spec`: a TCP connection from the path's source
   * (address or interface), and for a WebSocket server the TLS and HTTP
   * upgrade over it, each step within `timeoutMs`. `onSocket` sees the TCP
   * socket as soon as it exists, so dropping the path can cut a dial midway.
   */
  private async openChannel(
    spec: PathSpec,
    timeoutMs = this.opts.connectTimeoutMs ?? 10_000,
    onSocket?: (s: net.Socket) => void,
  ): Promise<{ channel: ByteChannel; socket: net.Socket }> {
    const socket = await this.tcpConnect(spec, timeoutMs);
    onSocket?.(socket);
    const url = spec.remote.url;
    if (url === undefined) return { channel: new SocketChannel(socket), socket };
    socket.on('error', () => undefined); // surfaces as the TLS or WebSocket layer's error and close
    const channel = await this.clockDeadline(
      dialWebSocket({ url: new URL(url), socket, ...(this.opts.ca !== undefined ? { ca: this.opts.ca } : {}) }),
      timeoutMs,
      () => {
        socket.destroy();
        return Object.assign(new Error(`WebSocket handshake with ${url} timed out`), { code: 'ETIMEDOUT' });
      },
      (late) => late.destroy(),
    );
    return { channel, socket };
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
      // connectBound keeps its own (real-time) deadline to free the descriptor; the clock's decides for us.
      socket = await this.clockDeadline(
        sockopts.connectBound({ host, port: spec.remote.port, device: spec.local.device, ...(local ? { localAddress: local } : {}), timeoutMs }),
        timeoutMs,
        () => connectTimeoutError(spec),
        (late) => late.destroy(),
      );
      socket.setNoDelay(true);
      adoptSlabReads(socket); // as net.connect's onread below
    } else {
      socket = await new Promise<net.Socket>((resolve, reject) => {
        const s: net.Socket = net.connect({
          host: spec.remote.host,
          port: spec.remote.port,
          ...(local ? { localAddress: local, family: net.isIP(local) } : {}),
          noDelay: true,
          // Reads into 1 MiB slabs instead of a fresh 64 KiB buffer each (less GC).
          onread: slabOnread(() => s),
        });
        const timer = this.clock.setTimeout(() => {
          s.destroy();
          reject(connectTimeoutError(spec));
        }, timeoutMs);
        s.once('connect', () => {
          timer.cancel();
          s.removeAllListeners('error');
          resolve(s);
        });
        s.once('error', (err) => {
          timer.cancel();
          reject(err);
        });
      });
    }
    // Keep the kernel's unsent queue short, so data not yet committed to a
    // subflow can still go to another one (no-op where unsupported).
    sockopts.setNotsentLowat(socket, NOTSENT_LOWAT);
    return socket;
  }

  /** `p`, or `timeout()` once `ms` of clock time pass first; a result that comes too late goes to `discard`. */
  private clockDeadline<T>(p: Promise<T>, ms: number, timeout: () => Error, discard: (late: T) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let expired = false;
      const timer = this.clock.setTimeout(() => {
        expired = true;
        reject(timeout());
      }, ms);
      p.then(
        (v) => {
          timer.cancel();
          if (expired) discard(v);
          else resolve(v);
        },
        (e: unknown) => {
          timer.cancel();
          reject(e);
        },
      );
    });
  }

  // ------------------------------------------------------------- session

  private adoptSession(session: Session): void {
    this.session = session;
    this.everConnected = true;
    this.counters.sessions++;
    this.log.info({ token: Buffer.from(session.keys.token).toString('hex').slice(0, 8), cipher: sessionCipher(session) }, 'session established');
    session.setEvents({
      stream: (s) => s.reset(ResetCode.NOT_ALLOWED, 'the client accepts no streams'),
      inbound: (s, h) => this.publications.onInbound(session, s, h),
      publishState: (port, code, reason) => this.publications.onState(session, port, code, reason),
      subflowDown: (sf, reason, closed) => {
        if (this.closed) return; // our own shutdown: nothing to report or repair
        const slot = [...this.slots.values()].find((x) => x.subflow === sf);
        if (closed) {
          this.log.warn({ subflow: sf.id, path: slot?.spec.key }, `subflow closed: ${reason}`);
          if (slot) this.retryLater(slot, reason);
        } else {
          this.log.warn({ subflow: sf.id, path: slot?.spec.key }, `subflow suspect: ${reason}`);
          if (slot) this.scheduleReplacement(slot, sf, REPLACE_AFTER_MS);
        }
        this.checkOutage(session);
      },
      subflowUp: (sf) => {
        this.log.debug({ subflow: sf.id }, 'subflow usable');
        this.checkOutage(session);
      },
      addresses: (addrs) => this.addRemotes(addrs),
      roleChanged: (sf, role, by) => {
        // The server changed it: the path keeps it for its next subflows too.
        if (by !== 'peer') return;
        const slot = [...this.slots.values()].find((x) => x.subflow === sf);
        if (slot && slot.role !== role) {
          this.log.info({ path: slot.spec.key, role, was: slot.role }, `path role now ${role} (set by the server)`);
          slot.role = role;
        }
        // A reached cap holds the path at backup whatever the server says.
        if (slot) this.pushRole(slot);
      },
      datagram: (d) => this.datagrams.deliver(d),
      idle: () => this.checkOutage(session),
      closed: (err) => {
        this.publications.detach(session);
        if (this.session !== session) return;
        this.session = undefined;
        this.endOutage(undefined);
        if (this.closed) this.log.info({}, 'session closed (client stopping)');
        else this.log.warn({}, `session closed${err ? `: ${err.message}` : ''}`);
        for (const slot of this.slots.values()) {
          if (slot.state === 'up') this.retryLater(slot, 'session closed', 0);
        }
      },
    });
    // The server's `ok` (with its ADD_ADDR list) arrived before these events were set.
    this.addRemotes(session.peerAddresses);
    // A new session: the server knows none of our publications (it dropped them with the old one).
    this.publications.attach(session);
    this.startResolve?.();
    this.startResolve = this.startReject = undefined;
    this.releaseHelloWaiters();
    const waiters = this.sessionWaiters;
    this.sessionWaiters = [];
    for (const w of waiters) w.resolve(session);
  }

  /**
   * Start or end the outage watch. While no subflow is usable the session
   * and its streams are kept for the grace, counted from the last record
   * the server sent (not from when the last subflow was declared dead).
   */
  private checkOutage(session: Session): void {
    if (this.closed || session !== this.session || session.isClosed) return;
    if (session.hasUsableSubflow) {
      this.endOutage(session);
      return;
    }
    if (this.outage) return;
    const silentMs = this.clock.now() - session.lastHeardAt;
    const leftMs = Math.max(0, this.graceMs - silentMs);
    this.log.warn(
      { silentMs: Math.round(silentMs) },
      `all paths down; keeping the session and its streams for ${(leftMs / 1000).toFixed(1)} s more (${this.graceMs / 1000} s from the last sign of life) while reconnecting`,
    );
    this.outage = { timer: this.outageTimer(session, leftMs), loggedAt: this.clock.now() };
  }

  private outageTimer(session: Session, ms: number): Timer {
    return this.clock.setTimeout(() => {
      if (!this.outage || session !== this.session) return;
      const left = session.lastHeardAt + this.graceMs - this.clock.now();
      if (session.hasUsableSubflow) {
        this.endOutage(session);
      } else if (left > 0) {
        // Something arrived on a suspect path meanwhile: the grace restarts from it.
        this.outage.timer = this.outageTimer(session, left);
      } else {
        this.outage = undefined;
        this.counters.outagesExpired++;
        session.close(new PlaitError(ErrorCode.TIMEOUT, `no path to the server for ${this.graceMs / 1000} s`), false);
      }
    }, Math.max(0, ms) + 1);
  }

  private endOutage(session: Session | undefined): void {
    if (!this.outage) return;
    this.outage.timer.cancel();
    if (session) this.log.info({}, `service restored after ${((this.clock.now() - this.outage.loggedAt) / 1000).toFixed(1)} s with every path down`);
    this.outage = undefined;
  }

  private addRemotes(addrs: readonly { id: number; host: string; port: number }[]): void {
    let added = false;
    for (const a of addrs) {
      if (this.remotes.some((r) => r.url === undefined && r.host === a.host && r.port === a.port)) continue;
      this.log.info({ host: a.host, port: a.port }, 'server advertised an address');
      this.remotes.push({ host: a.host, port: a.port, id: a.id });
      added = true;
    }
    if (added) this.refreshPaths();
  }

  private rejectWaiters(e: Error): void {
    const waiters = this.sessionWaiters;
    this.sessionWaiters = [];
    for (const w of waiters) w.reject(e);
  }

  private awaitSession(timeoutMs: number): Promise<Session> {
    if (this.session) return Promise.resolve(this.session);
    if (this.closed) return Promise.reject(new DialError(ResetCode.SESSION_CLOSED, 'client closed'));
    return new Promise<Session>((resolve, reject) => {
      const waiter = {
        resolve: (s: Session) => {
          timer.cancel();
          resolve(s);
        },
        reject: (e: Error) => {
          timer.cancel();
          reject(e);
        },
      };
      const timer = this.clock.setTimeout(() => {
        this.sessionWaiters = this.sessionWaiters.filter((w) => w !== waiter);
        reject(new DialError(ResetCode.NETWORK_UNREACHABLE, 'no session to the plait server (is it reachable?)'));
      }, timeoutMs);
      this.sessionWaiters.push(waiter);
      this.failWaitersIfHopeless();
    });
  }
}

function connectTimeoutError(spec: PathSpec): Error {
  return Object.assign(new Error(`connect to ${spec.remote.host}:${spec.remote.port} timed out`), { code: 'ETIMEDOUT' });
}
