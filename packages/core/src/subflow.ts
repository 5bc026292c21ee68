import type { ByteChannel } from './channel.js';
import { PathMetrics } from './path-metrics.js';
import type { RecordOpener, RecordSealer } from './record.js';
import type { SubflowView } from './scheduler.js';
import type { Stream } from './stream.js';
import type { Frame } from './frames.js';

/** A reliable frame that must reach the peer even if this subflow dies. */
export type ReliableItem =
  | { kind: 'data'; stream: Stream; offset: number; len: number; fin: boolean }
  | { kind: 'frame'; frame: Frame };

export interface SentRecord {
  seq: number;
  sentAt: number;
  bytes: number;
  items: ReliableItem[];
  /** Subflow's delivered-bytes counter and its timestamp when sent (rate samples). */
  delivered: number;
  deliveredAt: number;
  reinjected: boolean;
}

const GAIN_CYCLE = [1.25, 0.85, 1, 1, 1, 1, 1, 1];
const STARTUP_GAIN = 2;
const MIN_RECORD_TARGET = 4096;
const INITIAL_RECORD_TARGET = 16 * 1024 + 64;
const RECORD_TIME_MS = 2;

export type SubflowState = 'pending-ok' | 'active' | 'suspect' | 'closed';

/** A record being filled with frames before it is sealed. */
export interface StagedRecord {
  buf: Uint8Array;
  pos: number;
  items: ReliableItem[];
  eliciting: boolean;
}

/**
 * One subflow's state: its channel and record keys, what it has in flight,
 * and its measurements. The session drives it.
 */
export class Subflow implements SubflowView {
  /** Id assigned by the server (the client learns it from `ok`). */
  id: number;
  backup: boolean;
  readonly addrId: number;
  state: SubflowState;
  readonly metrics = new PathMetrics();

  readonly inflightRecords: SentRecord[] = [];
  private inflightHead = 0;
  inflightBytes = 0;
  /** Records sealed and sent on this subflow. */
  sentRecords = 0;
  /** Records received and processed from the peer on this subflow. */
  recvRecords = 0;
  needAck = false;
  writable = true;
  staged: StagedRecord | undefined;
  spareBuf: Uint8Array | undefined;

  lastRecvAt: number;
  lastSendAt: number;
  lastProbeAt = 0;
  /** Last time an ack freed records on this subflow. */
  lastAckAt = 0;
  suspectSince = 0;

  bytesSent = 0;
  bytesReceived = 0;
  bytesReinjected = 0;
  suspectCount = 0;

  /** Plaintext bytes per record on this subflow (adapts to its rate). */
  recordTarget = INITIAL_RECORD_TARGET;

  // Scheduler view, refreshed before each scheduling round.
  cap = 0;
  srtt = 0;
  minRtt = 0;
  rate = 0;

  readyResolve: (() => void) | undefined;
  readyReject: ((e: Error) => void) | undefined;
  readonly ready: Promise<void>;

  constructor(
    readonly channel: ByteChannel,
    readonly sealer: RecordSealer,
    readonly opener: RecordOpener,
    opts: { id: number; backup: boolean; addrId: number; awaitOk: boolean; now: number },
  ) {
    this.id = opts.id;
    this.backup = opts.backup;
    this.addrId = opts.addrId;
    this.state = opts.awaitOk ? 'pending-ok' : 'active';
    this.lastRecvAt = opts.now;
    this.lastSendAt = opts.now;
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    // Callers that never await `ready` must not see an unhandled rejection.
    this.ready.catch(() => undefined);
    if (!opts.awaitOk) this.markReady();
  }

  markReady(): void {
    this.readyResolve?.();
    this.readyResolve = this.readyReject = undefined;
  }

  get inflight(): number {
    return this.inflightBytes + (this.staged ? this.staged.pos : 0);
  }

  get usable(): boolean {
    return this.state === 'active';
  }

  oldestInflight(): SentRecord | undefined {
    return this.inflightRecords[this.inflightHead];
  }

  pushInflight(r: SentRecord): void {
    this.inflightRecords.push(r);
    this.inflightBytes += r.bytes;
  }

  /** Pop records below `count`; returns the newest popped, if any. */
  ackUpTo(count: number): SentRecord | undefined {
    let last: SentRecord | undefined;
    while (this.inflightHead < this.inflightRecords.length) {
      const r = this.inflightRecords[this.inflightHead]!;
      if (r.seq >= count) break;
      this.inflightBytes -= r.bytes;
      this.metrics.delivered += r.bytes;
      this.inflightHead++;
      last = r;
    }
    if (this.inflightHead > 256 && this.inflightHead * 2 > this.inflightRecords.length) {
      this.inflightRecords.splice(0, this.inflightHead);
      this.inflightHead = 0;
    }
    return last;
  }

  /** Unacknowledged records not yet reinjected (marks them reinjected). */
  *takeForReinjection(): Generator<SentRecord> {
    for (let i = this.inflightHead; i < this.inflightRecords.length; i++) {
      const r = this.inflightRecords[i]!;
      if (r.reinjected) continue;
      r.reinjected = true;
      yield r;
    }
  }

  /**
   * The cap's multiple of the BDP, BBR-style: during startup 2x until the
   * rate stops growing (three round trips under +25%), then a cycle of one
   * round trip probing above the estimate, one draining below, six at it, so
   * the queue kept in the path stays near the slack, not a fraction of a BDP.
   */
  private gainAt(now: number, base: number): number {
    const round = Math.max(this.minRtt, 10);
    if (now - this.roundStart >= round) {
      this.roundStart = now;
      if (this.startup) {
        if (this.rate >= this.fullRate * 1.25) {
          this.fullRate = this.rate;
          this.flatRounds = 0;
        } else if (this.capHit && ++this.flatRounds >= 3) {
          // Only a round in which the subflow was held back by its cap says
          // the path is full; an idle or scheduler-starved one says nothing.
          this.startup = false;
        }
      }
      this.capHit = false;
    }
    if (this.startup) return STARTUP_GAIN;
    return GAIN_CYCLE[Math.floor(now / round) % GAIN_CYCLE.length]! * base;
  }

  /** Measure the path afresh (new subflow, or back from suspect). */
  restartProbe(): void {
    this.startup = true;
    this.fullRate = 0;
    this.flatRounds = 0;
  }

  /** Set when the session wanted to send on this subflow and its cap said no. */
  capHit = false;
  private startup = true;
  private fullRate = 0;
  private flatRounds = 0;
  private roundStart = 0;

  refreshView(now: number, c: { initialInflight: number; minInflight: number; ackSlackMs: number; inflightGain: number; recordTarget: number }): void {
    this.srtt = this.metrics.srtt;
    this.minRtt = this.metrics.minRtt(now);
    this.rate = this.metrics.rate(now);
    // A little over the measured bandwidth-delay product: enough to fill the
    // path and let the rate estimate grow (by the gain each round trip), not
    // enough to queue deep in its buffers, where every byte is latency for
    // the frames behind it. The slack covers acks that arrive in bursts
    // (receiver busy, batching), which on fast paths would starve the pipe.
    const gain = this.gainAt(now, c.inflightGain);
    this.cap =
      this.rate > 0 && this.minRtt > 0 ? Math.max(c.minInflight, this.rate * (gain * this.minRtt + c.ackSlackMs)) : c.initialInflight;
    // A record is usable only once it has wholly arrived: keep one record's
    // serialisation time near a couple of milliseconds on slow links.
    this.recordTarget =
      this.rate > 0 ? Math.min(c.recordTarget, Math.max(MIN_RECORD_TARGET, Math.round(this.rate * RECORD_TIME_MS))) : INITIAL_RECORD_TARGET;
  }
}
