/**
 * Domain bypass (split tunnel by name): when a DNS answer passing through
 * `plait client --dns` resolves a bypassed domain (or a subdomain, or a name
 * whose CNAME chain reaches one), its addresses are added to the router's
 * nftables sets (made by `plait router-setup`) with a timeout from the
 * answer's TTL, so new connections to them are routed straight out an uplink
 * instead of through the session.
 *
 * Bounded: addresses remembered (to skip answers that change nothing),
 * addresses waiting for the next command, and one command running at a time
 * (what arrives meanwhile is batched into the next one). Time from the clock.
 */
import { execFile } from 'node:child_process';
import { isIPv6 } from 'node:net';
import { BYPASS_COUNTERS, makeCounters, realClock, type Clock, type Counters } from '@plait/core';
import type { ClientLogger } from './client.js';
import { parseDnsAnswer, type DnsLearned } from './dns-answer.js';

/** Runs a program with arguments (no shell); rejects with a reason on failure. */
export type CommandRunner = (file: string, args: readonly string[]) => Promise<void>;

export interface BypassDomainsOptions {
  /** Bypassed domains, lower case without a trailing dot; each covers its subdomains. */
  domains: string[];
  run?: CommandRunner;
  clock?: Clock;
  log?: Pick<ClientLogger, 'warn' | 'info' | 'debug'>;
  /** The nftables table and sets (router-rules.ts makes them). */
  table?: string;
  sets?: { v4: string; v6: string };
  /** Element timeouts are the TTL clamped to this range (s): a very short TTL would churn the set. */
  minTtlSeconds?: number;
  maxTtlSeconds?: number;
  /** Addresses remembered (default 8192) and waiting for a command (default 1024). */
  maxTracked?: number;
  maxPending?: number;
  /** How long `observe` lets the DNS forwarder hold an answer waiting for nft (ms, default 1000). */
  maxHoldMs?: number;
}

/** Elements per command: one `nft add element` argument stays well under the kernel's limits. */
const BATCH = 256;

const execRunner: CommandRunner = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(file, [...args], { timeout: 10_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(String(stderr).trim().split('\n')[0] || err.message));
      else resolve();
    });
  });

export class BypassDomains {
  private readonly domains: string[];
  private readonly run: CommandRunner;
  private readonly clock: Clock;
  private readonly table: string[];
  private readonly sets: { v4: string; v6: string };
  private readonly minTtl: number;
  private readonly maxTtl: number;
  private readonly maxTracked: number;
  private readonly maxPending: number;
  /** address -> when its set element expires (clock ms), as last sent. */
  private readonly tracked = new Map<string, number>();
  /** address -> timeout (s) to send, and who waits for it to be in the set. */
  private readonly pending = new Map<string, { timeout: number; waiters: (() => void)[] }>();
  private running = false;
  private warnedFailure = false;
  /** Shown in /stats and /metrics (declared in @plait/core counters.ts). */
  readonly counters: Counters<typeof BYPASS_COUNTERS> = makeCounters(BYPASS_COUNTERS);

  constructor(private readonly opts: BypassDomainsOptions) {
    this.domains = opts.domains.map((d) => d.toLowerCase().replace(/\.$/, ''));
    this.run = opts.run ?? execRunner;
    this.clock = opts.clock ?? realClock;
    this.table = (opts.table ?? 'inet plait').split(' ');
    this.sets = opts.sets ?? { v4: 'bypass_dns4', v6: 'bypass_dns6' };
    this.minTtl = opts.minTtlSeconds ?? 300;
    this.maxTtl = opts.maxTtlSeconds ?? 86_400;
    this.maxTracked = opts.maxTracked ?? 8192;
    this.maxPending = opts.maxPending ?? 1024;
  }

  /**
   * The DNS forwarder's hook: every answer it is about to send to the LAN. For a bypassed name,
   * a promise the forwarder waits for before sending the answer (so the device's first
   * connection is already bypassed), resolved when nft has the addresses or after maxHoldMs;
   * for anything else undefined (send at once).
   */
  observe(message: Uint8Array): Promise<void> | undefined {
    const learned = parseDnsAnswer(message);
    if (!learned || (!this.matches(learned.name) && !learned.aliases.some((a) => this.matches(a)))) return undefined;
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(resolve, this.opts.maxHoldMs ?? 1_000);
      void this.learn(learned).then(() => {
        timer.cancel();
        resolve();
      });
    });
  }

  /** Whether `name` is a bypassed domain or one of its subdomains. */
  matches(name: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, '');
    return this.domains.some((d) => n === d || n.endsWith(`.${d}`));
  }

  /**
   * What the DNS forwarder saw in an answer; adds the addresses if the name (or an alias) is
   * bypassed. Resolves once they are in the set (or nft failed): the forwarder holds such an
   * answer until then (with a bound of its own), or the device's first connection could be
   * redirected before its address is bypassed. Never rejects.
   */
  learn(answer: DnsLearned): Promise<void> {
    if (!this.matches(answer.name) && !answer.aliases.some((a) => this.matches(a))) return Promise.resolve();
    const timeout = Math.min(this.maxTtl, Math.max(this.minTtl, Math.floor(answer.ttlSeconds)));
    const now = this.clock.now();
    const waits: Promise<void>[] = [];
    for (const address of answer.addresses) {
      // An element that outlives half the new timeout is fresh enough: skip the command.
      const expires = this.tracked.get(address);
      if (expires !== undefined && expires - now >= (timeout * 1000) / 2) continue;
      let entry = this.pending.get(address);
      if (entry === undefined) {
        if (this.pending.size >= this.maxPending) {
          this.counters.bypassAddressesDropped++;
          continue;
        }
        entry = { timeout, waiters: [] };
        this.pending.set(address, entry);
      }
      entry.timeout = Math.max(entry.timeout, timeout);
      const waiters = entry.waiters;
      waits.push(new Promise<void>((resolve) => waiters.push(resolve)));
    }
    this.flush();
    return Promise.all(waits).then(() => undefined);
  }

  private remember(address: string, expires: number): void {
    this.tracked.delete(address); // re-inserted last: the map's order is oldest first
    if (this.tracked.size >= this.maxTracked) {
      const now = this.clock.now();
      for (const [a, e] of this.tracked) if (e <= now) this.tracked.delete(a);
      if (this.tracked.size >= this.maxTracked) this.tracked.delete(this.tracked.keys().next().value!);
    }
    this.tracked.set(address, expires);
  }

  /** Sends what is pending, one command at a time; what arrives meanwhile goes in the next. */
  private flush(): void {
    if (this.running || this.pending.size === 0) return;
    const family = isIPv6(this.pending.keys().next().value!) ? 'v6' : 'v4';
    const batch: [string, number][] = [];
    const waiters: (() => void)[] = [];
    for (const [address, entry] of this.pending) {
      if ((isIPv6(address) ? 'v6' : 'v4') !== family) continue;
      batch.push([address, entry.timeout]);
      waiters.push(...entry.waiters);
      if (batch.length >= BATCH) break;
    }
    for (const [address] of batch) this.pending.delete(address);
    const elements = `{ ${batch.map(([a, t]) => `${a} timeout ${t}s`).join(', ')} }`;
    const args = ['add', 'element', ...this.table, this.sets[family], elements];
    this.running = true;
    const now = this.clock.now();
    this.run('nft', args).then(
      () => {
        this.counters.bypassAddressesAdded += batch.length;
        for (const [address, timeout] of batch) this.remember(address, now + timeout * 1000);
        this.opts.log?.debug({ addresses: batch.map(([a]) => a) }, 'bypass: addresses of bypassed domains added');
      },
      (e: unknown) => {
        this.counters.bypassCommandFailures++;
        const msg = `bypass: nft could not add addresses of bypassed domains (${e instanceof Error ? e.message : String(e)}); are the rules of plait router-setup loaded?`;
        if (this.warnedFailure) this.opts.log?.debug({}, msg);
        else {
          this.warnedFailure = true;
          this.opts.log?.warn({}, msg);
        }
      },
    ).finally(() => {
      this.running = false;
      for (const w of waiters) w();
      this.flush();
    });
  }
}
