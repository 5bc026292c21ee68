/**
 * Which class a stream's next frame belongs to (scheduler.ts FrameClass):
 * `latency` for streams to a latency-sensitive target port, and for small
 * request/response flows; `bulk` for the rest. Both ends classify their own
 * sending with the same rule, so one client choice covers both directions.
 */
import type { FrameClass } from './scheduler.js';

/** SSH, RDP, SIP: interactive or real-time by convention. */
export const DEFAULT_LATENCY_PORTS: readonly number[] = [22, 3389, 5060];

/**
 * The small-flow rule: a stream whose outstanding bytes (written and not yet
 * acknowledged by the peer, sent or not) are at most this many is exchanging
 * requests and responses, not moving bulk (a bulk sender keeps far more than
 * this outstanding, a request or an answer fits in it whole).
 */
export const SMALL_FLOW_BYTES = 4096;

/**
 * The most a stream may send in the latency class per second by the
 * small-flow rule (burst: one second's worth): a flow that writes in small
 * pieces but steadily is bulk after all, and must not double its load.
 */
export const SMALL_FLOW_BYTES_PER_SEC = 64 * 1024;

/** What the classifier reads of a stream. */
export interface ClassifiedStream {
  readonly target: { readonly port: number } | undefined;
  /** Written by the application and not yet acknowledged by the peer (offsets). */
  readonly outstanding: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class StreamClassifier {
  private ports: ReadonlySet<number>;
  // Keyed by the stream object: it goes when the stream goes (no table to bound).
  private readonly buckets = new WeakMap<object, Bucket>();

  constructor(ports: readonly number[] = DEFAULT_LATENCY_PORTS) {
    this.ports = new Set(ports);
  }

  get latencyPorts(): number[] {
    return [...this.ports].sort((a, b) => a - b);
  }

  setPorts(ports: readonly number[]): void {
    this.ports = new Set(ports);
  }

  /** The class of a frame of `bytes` about to be sent for `s` at `now`; charges the small-flow budget. */
  classify(key: object, s: ClassifiedStream, bytes: number, now: number): FrameClass {
    if (s.target && this.ports.has(s.target.port)) return 'latency';
    if (s.outstanding > SMALL_FLOW_BYTES) return 'bulk';
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: SMALL_FLOW_BYTES_PER_SEC, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(SMALL_FLOW_BYTES_PER_SEC, b.tokens + ((now - b.at) * SMALL_FLOW_BYTES_PER_SEC) / 1000);
    b.at = now;
    if (b.tokens < bytes) return 'bulk';
    b.tokens -= bytes;
    return 'latency';
  }
}
