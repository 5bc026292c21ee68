/**
 * Replay protection for handshake nonces (PROTOCOL.md sections 3-4).
 */
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { ErrorCode, PlaitError } from './errors.js';

/** A nonce as a Map key: latin1 maps each byte to one UTF-16 unit, losslessly. */
function keyOf(nonce: Uint8Array): string {
  return Buffer.from(nonce.buffer, nonce.byteOffset, nonce.byteLength).toString('latin1');
}

export type ReplayVerdict = 'fresh' | 'replay' | 'full';

/**
 * FIFO of (key, time) in a growable ring: O(1) push and pop at both ends.
 * (Iterating a Map from its front is not O(1) in V8: deleted entries stay as
 * holes that every new iterator skips until the table is rehashed.)
 */
class Ring {
  private keys: string[] = [];
  private times: number[] = [];
  private head = 0;
  length = 0;

  push(key: string, time: number): void {
    if (this.length === this.keys.length) this.grow();
    const i = (this.head + this.length) % this.keys.length;
    this.keys[i] = key;
    this.times[i] = time;
    this.length++;
  }
  /** Oldest entry's time (length > 0). */
  firstTime(): number {
    return this.times[this.head] ?? 0;
  }
  shift(): string {
    const key = this.keys[this.head] ?? '';
    this.keys[this.head] = '';
    this.head = (this.head + 1) % this.keys.length;
    this.length--;
    return key;
  }
  private grow(): void {
    const cap = Math.max(16, this.keys.length * 2);
    const keys: string[] = new Array<string>(cap).fill('');
    const times: number[] = new Array<number>(cap).fill(0);
    for (let j = 0; j < this.length; j++) {
      const i = (this.head + j) % this.keys.length;
      keys[j] = this.keys[i] ?? '';
      times[j] = this.times[i] ?? 0;
    }
    this.keys = keys;
    this.times = times;
    this.head = 0;
  }
}

/**
 * HELLO nonces seen in the last `ttlMs` (monotonic clock), at most
 * `maxEntries` of them. Entries arrive in time order, so expiry only looks at
 * the front of a FIFO: O(1) amortised per call.
 */
export class ReplayCache {
  private readonly seen = new Set<string>();
  private readonly order = new Ring();

  constructor(
    readonly maxEntries: number,
    readonly ttlMs: number,
    private readonly clock: Clock,
  ) {
    if (!(maxEntries >= 1) || !(ttlMs > 0)) {
      throw new PlaitError(ErrorCode.INTERNAL, `ReplayCache needs maxEntries >= 1 and ttlMs > 0`);
    }
  }

  /**
   * Sized per PROTOCOL.md: nonces are kept for twice the timestamp window, so
   * a HELLO cannot be replayed while its timestamp is still acceptable.
   */
  static forConfig(config: Pick<Config, 'replayCacheEntries' | 'timestampWindowMs'>, clock: Clock): ReplayCache {
    return new ReplayCache(config.replayCacheEntries, 2 * config.timestampWindowMs, clock);
  }

  get size(): number {
    return this.seen.size;
  }

  /** 'fresh' records the nonce; 'replay' and 'full' record nothing. */
  checkAndAdd(nonce: Uint8Array): ReplayVerdict {
    const now = this.clock.now();
    while (this.order.length > 0 && now - this.order.firstTime() >= this.ttlMs) {
      this.seen.delete(this.order.shift());
    }
    const key = keyOf(nonce);
    if (this.seen.has(key)) return 'replay';
    if (this.seen.size >= this.maxEntries) return 'full';
    this.seen.add(key);
    this.order.push(key, now);
    return 'fresh';
  }
}

/** The last `max` nonces of one session (JOIN R_A values). */
export class NonceLog {
  private readonly seen = new Set<string>();
  private readonly order = new Ring();

  constructor(readonly max: number) {
    if (!(max >= 1)) throw new PlaitError(ErrorCode.INTERNAL, `NonceLog needs max >= 1`);
  }

  get size(): number {
    return this.seen.size;
  }

  /** True and remembered if new; false if it is among the last `max`. */
  checkAndAdd(nonce: Uint8Array): boolean {
    const key = keyOf(nonce);
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    this.order.push(key, 0);
    if (this.order.length > this.max) this.seen.delete(this.order.shift());
    return true;
  }
}
