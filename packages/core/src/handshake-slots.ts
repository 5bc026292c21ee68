/**
 * Who may hold a pending (not yet authenticated) handshake on a server.
 *
 * Strangers cost nothing until they prove the secret, so the number of
 * pending handshakes is bounded overall and per source address. When a new
 * connection arrives at a full limit it is always admitted and the pending
 * handshake that has made the least progress is evicted: first those that
 * sent nothing, then those with only partial bytes, oldest first. A real
 * client sends its HELLO or JOIN at once and leaves the pending set within a
 * round trip, so a flood of idle connections, even from the client's own
 * address (carrier NAT), only evicts itself.
 *
 * Pure bookkeeping: no sockets, time only from the injected clock.
 */
import type { Clock } from './clock.js';
import { ErrorCode, PlaitError } from './errors.js';

/** How far a pending handshake got; lower is evicted first. */
export const HandshakeProgress = {
  /** Connected, nothing received yet. */
  NONE: 0,
  /** Some bytes, but no complete message yet. */
  BYTES: 1,
  /** A valid message was answered (e.g. JOIN with a live token, awaiting JOIN_CONFIRM). */
  MESSAGE: 2,
} as const;
export type HandshakeProgress = (typeof HandshakeProgress)[keyof typeof HandshakeProgress];

export interface HandshakeSlotLimits {
  /** Pending handshakes held at once, all sources together. */
  maxPending: number;
  /** Pending handshakes held at once per source (IPv4 address, IPv6 /64). */
  maxPerSource: number;
}

/**
 * Defaults for an internet-facing server. The global limit bounds memory
 * (each pending handshake holds a socket and at most `preauthBufferBytes`);
 * the per-source limit is generous because households behind carrier NAT
 * share one address, and eviction, not refusal, is what keeps them served.
 */
export const DEFAULT_HANDSHAKE_SLOTS: Readonly<HandshakeSlotLimits> = Object.freeze({
  maxPending: 512,
  maxPerSource: 64,
});

/** Why a pending handshake was evicted (one counter each). */
export type EvictionReason = 'source' | 'global';

export interface Eviction {
  id: number;
  source: string;
  reason: EvictionReason;
}

export interface Admission {
  /** Handle for `progress` and `release`. */
  id: number;
  /** Pending handshakes that lost their slot to this one; the caller drops them. */
  evicted: Eviction[];
}

interface Slot {
  id: number;
  source: string;
  admittedAt: number;
  progress: HandshakeProgress;
}

export class HandshakeSlots {
  /** In admission order, so iteration meets the oldest first. */
  private readonly slots = new Map<number, Slot>();
  private readonly bySource = new Map<string, Map<number, Slot>>();
  private nextId = 1;

  constructor(
    readonly limits: HandshakeSlotLimits,
    private readonly clock: Clock,
  ) {
    for (const [k, v] of Object.entries(limits)) {
      if (!Number.isInteger(v) || v < 1) throw new PlaitError(ErrorCode.INTERNAL, `handshake slots: ${k} must be a positive integer, got ${String(v)}`);
    }
    if (limits.maxPerSource > limits.maxPending) {
      throw new PlaitError(ErrorCode.INTERNAL, `handshake slots: maxPerSource (${limits.maxPerSource}) must be <= maxPending (${limits.maxPending})`);
    }
  }

  get pending(): number {
    return this.slots.size;
  }

  pendingFor(source: string): number {
    return this.bySource.get(source)?.size ?? 0;
  }

  /** Admit a new connection from `source` (a `sourceKey`), evicting others if a limit is reached. */
  admit(source: string): Admission {
    const evicted: Eviction[] = [];
    const mine = this.bySource.get(source);
    if (mine && mine.size >= this.limits.maxPerSource) {
      const victim = leastProgress(mine.values());
      if (victim) evicted.push(this.evict(victim, 'source'));
    }
    if (this.slots.size >= this.limits.maxPending) {
      const victim = leastProgress(this.slots.values());
      if (victim) evicted.push(this.evict(victim, 'global'));
    }
    const slot: Slot = { id: this.nextId++, source, admittedAt: this.clock.now(), progress: HandshakeProgress.NONE };
    this.slots.set(slot.id, slot);
    let group = this.bySource.get(source);
    if (!group) this.bySource.set(source, (group = new Map()));
    group.set(slot.id, slot);
    return { id: slot.id, evicted };
  }

  /** Record progress (it only ever goes up). Unknown ids (already evicted) are ignored. */
  progress(id: number, level: HandshakeProgress): void {
    const slot = this.slots.get(id);
    if (slot && level > slot.progress) slot.progress = level;
  }

  /** The handshake ended (authenticated, refused or closed). Idempotent. */
  release(id: number): void {
    const slot = this.slots.get(id);
    if (slot) this.remove(slot);
  }

  /** Age of the oldest pending handshake (ms), for stats. */
  oldestAgeMs(): number {
    const first = this.slots.values().next();
    return first.done ? 0 : this.clock.now() - first.value.admittedAt;
  }

  private evict(slot: Slot, reason: EvictionReason): Eviction {
    this.remove(slot);
    return { id: slot.id, source: slot.source, reason };
  }

  private remove(slot: Slot): void {
    this.slots.delete(slot.id);
    const group = this.bySource.get(slot.source);
    group?.delete(slot.id);
    if (group?.size === 0) this.bySource.delete(slot.source);
  }
}

/** Least progress, then oldest; `slots` iterate oldest first. */
function leastProgress(slots: Iterable<Slot>): Slot | undefined {
  let best: Slot | undefined;
  for (const s of slots) {
    if (!best || s.progress < best.progress || (s.progress === best.progress && s.admittedAt < best.admittedAt)) best = s;
    if (best.progress === HandshakeProgress.NONE) break; // nothing can beat the oldest silent one
  }
  return best;
}

/**
 * The key a connection's pending handshake is counted under: the IPv4
 * address, or the /64 of an IPv6 address (one subscriber usually gets a
 * whole /64, so per-address counting would be no limit at all). IPv4-mapped
 * IPv6 addresses count as IPv4. Anything else (a test label) is its own key.
 */
export function sourceKey(address: string): string {
  let a = address.trim();
  if (a.startsWith('[')) a = a.slice(1, a.indexOf(']') > 0 ? a.indexOf(']') : undefined);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(a);
  if (mapped) return mapped[1]!;
  if (!a.includes(':')) return a;
  const groups = expandIpv6(a);
  if (!groups) return a.toLowerCase();
  return `${groups.slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (hex, no leading zeros), or undefined if malformed. */
function expandIpv6(a: string): string[] | undefined {
  const halves = a.toLowerCase().split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string): string[] | undefined => {
    if (s === '') return [];
    const out: string[] = [];
    for (const g of s.split(':')) {
      if (/^\d{1,3}(\.\d{1,3}){3}$/.test(g)) {
        // Embedded IPv4 tail: two groups.
        const [p, q, r, t] = g.split('.').map(Number) as [number, number, number, number];
        out.push(((p << 8) | q).toString(16), ((r << 8) | t).toString(16));
      } else if (/^[0-9a-f]{1,4}$/.test(g)) out.push(parseInt(g, 16).toString(16));
      else return undefined;
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  return [...head, ...Array<string>(missing).fill('0'), ...tail];
}
