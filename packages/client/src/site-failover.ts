/**
 * A second site (plait client --fallback-server): one PlaitClient per site,
 * the primary always running (it is the background probe), a fallback only
 * while it is needed. SiteSelector decides which site new streams go to;
 * this class owns the clients and acts on its answers:
 *   - failover: the site that stopped working has its session ended, so its
 *     streams end at once with a reason naming the failover (not after the
 *     outage grace), and new streams go to the next site at once;
 *   - return: new streams go back to the preferred site; the fallback is
 *     closed as soon as its last stream has finished.
 */
import { CLIENT_COUNTERS, ErrorCode, makeCounters, PlaitError, realClock, ResetCode, type Clock, type Counters, type Session, type SubflowRole, type Timer } from '@plait/core';
import { DatagramFlows } from './datagram-flows.js';
import type { ClientLogger, ClientStats } from './client.js';
import { DialError, type Dialer } from './dialer.js';
import type { SourceOptions } from './path-manager.js';
import { SiteSelector } from './site-selector.js';

/** What the failover needs of a site's client (PlaitClient has it all). */
export interface SiteClient {
  start(): Promise<void>;
  dial: Dialer;
  close(): void;
  readonly currentSession: Session | undefined;
  stats(): ClientStats;
  readonly counters: Record<string, number>;
  /** New local paths and roles (a config reload). */
  reconfigure(sources: SourceOptions): void;
  /** Change one subflow's role; undefined when there is no such subflow. */
  setSubflowRole(subflowId: number, role: SubflowRole): string | undefined;
}

/** What every site's client shares (PlaitClientOptions.shared). */
export interface SiteShared {
  counters: Counters<typeof CLIENT_COUNTERS>;
  datagrams: DatagramFlows;
}

export interface SiteSpec {
  /** For logs and stats, e.g. "primary 203.0.113.7:7000". */
  name: string;
  make(shared: SiteShared): SiteClient;
}

export interface SiteFailoverOptions {
  /** [0] is the primary, then the fallbacks in order of preference. */
  sites: SiteSpec[];
  /** Give the active site up after this long without a working session (ms, default 5000). */
  failoverAfterMs?: number;
  /** Go back to a preferred site once it has worked this long without a break (ms, default 30000). */
  returnAfterMs?: number;
  /** How often the sites' health is looked at (ms, default 250). */
  pollMs?: number;
  /** A new stream waits this long for the active site to have a working session (ms, default failoverAfterMs + 15000). */
  dialWaitMs?: number;
  clock?: Clock;
  log?: ClientLogger;
}

export interface SiteStats {
  name: string;
  active: boolean;
  running: boolean;
  /** Has a session with a usable subflow. */
  healthy: boolean;
  openStreams: number;
}

export type FailoverStats = ClientStats & { sites: SiteStats[]; failovers: number; returns: number };

const SILENT: ClientLogger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

export class SiteFailover {
  private readonly clock: Clock;
  private readonly log: ClientLogger;
  private readonly clients: (SiteClient | undefined)[];
  private readonly startFailures: (string | undefined)[];
  private readonly selector: SiteSelector;
  private readonly failoverAfterMs: number;
  private pollTimer: Timer | undefined;
  private closed = false;
  private failovers = 0;
  private returns = 0;
  /** From the last reconfigure(): given to sites started later too. */
  private sources: SourceOptions | undefined;
  private startResolve: (() => void) | undefined;
  private startReject: ((e: Error) => void) | undefined;

  constructor(private readonly opts: SiteFailoverOptions) {
    if (opts.sites.length === 0) throw new RangeError('at least one site is required');
    this.clock = opts.clock ?? realClock;
    this.log = opts.log ?? SILENT;
    this.failoverAfterMs = opts.failoverAfterMs ?? 5_000;
    this.clients = opts.sites.map(() => undefined);
    this.startFailures = opts.sites.map(() => undefined);
    this.selector = new SiteSelector(
      { sites: opts.sites.length, failoverAfterMs: this.failoverAfterMs, returnAfterMs: opts.returnAfterMs ?? 30_000 },
      this.clock.now(),
    );
  }

  /** Resolves once some site has a working session; rejects only if every site refused to start (e.g. wrong secret everywhere). */
  start(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      this.startResolve = resolve;
      this.startReject = reject;
    });
    this.ensureRunning(0);
    this.schedulePoll();
    return p;
  }

  get activeSite(): number {
    return this.selector.active;
  }

  /** The active site's client, if it runs. */
  get activeClient(): SiteClient | undefined {
    return this.clients[this.selector.active];
  }

  /** Shared by every site's client: process totals, whichever site counted. */
  readonly counters = makeCounters(CLIENT_COUNTERS);
  /** UDP flows (SOCKS5 UDP, --dns) go by the active site's session, and keep their ids across a failover. */
  readonly datagrams = new DatagramFlows(() => this.activeClient?.currentSession);

  /** New streams go to the active site once it has a working session; they wait for one for at most dialWaitMs. */
  dial: Dialer = async (target) => {
    const waitMs = this.opts.dialWaitMs ?? this.failoverAfterMs + 15_000;
    const until = this.clock.now() + waitMs;
    for (;;) {
      if (this.closed) throw new DialError(ResetCode.SESSION_CLOSED, 'client closed');
      const c = this.activeClient;
      if (c?.currentSession?.hasUsableSubflow) return c.dial(target);
      if (this.clock.now() >= until) {
        throw new DialError(ResetCode.NETWORK_UNREACHABLE, `no working session to ${this.opts.sites[this.selector.active]!.name} (or any fallback) within ${waitMs / 1000} s`);
      }
      await new Promise<void>((r) => this.clock.setTimeout(r, this.opts.pollMs ?? 250));
    }
  };

  stats(): FailoverStats {
    const active = this.activeClient?.stats() ?? { session: undefined, paths: [], clockOffsetMs: 0, outage: undefined };
    return {
      ...active,
      sites: this.opts.sites.map((s, i) => {
        const c = this.clients[i];
        return {
          name: s.name,
          active: i === this.selector.active,
          running: c !== undefined,
          healthy: c?.currentSession?.hasUsableSubflow ?? false,
          openStreams: c?.currentSession?.stats().openStreams ?? 0,
        };
      }),
      failovers: this.failovers,
      returns: this.returns,
    };
  }

  /** A config reload's paths and roles: every running site now, and sites started later. */
  reconfigure(sources: SourceOptions): void {
    this.sources = sources;
    for (const c of this.clients) c?.reconfigure(sources);
  }

  /** The role endpoint of /stats: subflow ids are those of the active site's session (as /stats shows). */
  setSubflowRole(subflowId: number, role: SubflowRole): string | undefined {
    return this.activeClient?.setSubflowRole(subflowId, role);
  }

  close(): void {
    this.closed = true;
    this.pollTimer?.cancel();
    this.pollTimer = undefined;
    for (let i = 0; i < this.clients.length; i++) this.stopSite(i);
  }

  private schedulePoll(): void {
    this.pollTimer = this.clock.setTimeout(() => {
      this.pollTimer = undefined;
      if (this.closed) return;
      this.tick();
      this.schedulePoll();
    }, this.opts.pollMs ?? 250);
  }

  private tick(): void {
    const healthy = this.clients.map((c) => c?.currentSession?.hasUsableSubflow ?? false);
    if (healthy.some(Boolean) && this.startResolve) {
      this.startResolve();
      this.startResolve = this.startReject = undefined;
    }
    const change = this.selector.observe(this.clock.now(), healthy);
    const names = this.opts.sites.map((s) => s.name);
    if (change.kind === 'failover') {
      this.failovers++;
      this.log.warn(
        { from: names[change.from], to: names[change.to] },
        `${names[change.from]}: no working session for ${(change.downForMs / 1000).toFixed(1)} s; new streams go to ${names[change.to]}`,
      );
      this.ensureRunning(change.to);
      // Its streams cannot come back on another site: end them now, with the reason.
      const why = new PlaitError(ErrorCode.TIMEOUT, `failed over from ${names[change.from]} to ${names[change.to]}: ${names[change.from]} did not work for ${(change.downForMs / 1000).toFixed(1)} s`);
      if (change.from === 0) this.clients[0]?.currentSession?.close(why);
      else this.stopSite(change.from, why);
    } else if (change.kind === 'return') {
      this.returns++;
      this.log.info(
        { from: names[change.from], to: names[change.to] },
        `${names[change.to]} has worked for ${(change.healthyForMs / 1000).toFixed(1)} s: new streams go back to it (${names[change.from]} closes when its streams finish)`,
      );
    }
    // Fallbacks that are no longer active go once their last stream has finished.
    for (let i = 1; i < this.clients.length; i++) {
      const c = this.clients[i];
      if (!c || i === this.selector.active) continue;
      if ((c.currentSession?.stats().openStreams ?? 0) === 0) {
        this.log.info({ site: names[i] }, `${names[i]}: no streams left on this fallback; closing it`);
        this.stopSite(i);
      }
    }
  }

  private ensureRunning(site: number): void {
    if (this.clients[site] || this.closed) return;
    const c = this.opts.sites[site]!.make({ counters: this.counters, datagrams: this.datagrams });
    if (this.sources) c.reconfigure(this.sources);
    this.clients[site] = c;
    this.startFailures[site] = undefined;
    c.start().then(
      () => undefined,
      (e: unknown) => {
        // A site that refuses us (wrong secret, cipher) keeps retrying; with every site refusing, give up.
        const msg = e instanceof Error ? e.message : String(e);
        this.startFailures[site] = msg;
        this.log.error({ site: this.opts.sites[site]!.name }, `${this.opts.sites[site]!.name}: ${msg}`);
        if (this.startReject && this.startFailures.every((f) => f !== undefined)) {
          this.startReject(new PlaitError(ErrorCode.AUTH_FAILED, `every site refused: ${this.startFailures.join('; ')}`));
          this.startResolve = this.startReject = undefined;
        }
      },
    );
  }

  private stopSite(site: number, why?: PlaitError): void {
    const c = this.clients[site];
    if (!c) return;
    // Tell the server first (an orderly close, or the failover's reason), so
    // it frees the session now instead of keeping it for its outage grace.
    c.currentSession?.close(why);
    c.close();
    this.clients[site] = undefined;
  }
}
