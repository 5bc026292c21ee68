/**
 * A session's send budget (PROTOCOL.md section 11): what all its streams
 * hold to send (unsent + unacknowledged) is bounded by sessionSendBudget,
 * and by the process's byte budget when one is shared; each stream may
 * always hold streamSendMin so none starves. Writers that were pushed back
 * wait here and are woken oldest first as room frees up.
 */
import type { Config } from './config.js';
import type { MemoryBudget } from './memory-budget.js';
import type { Stream } from './stream.js';

/** Bytes a woken writer is assumed to add (one socket read), when sharing freed room. */
const WAKE_QUANTUM = 64 * 1024;

export type BlockCause = 'session' | 'process' | 'stream';

export class SendBudget {
  private held = 0;
  /**
   * Room promised to writers woken but not yet written (a quantum each):
   * without it, several small releases in a row would each see the same
   * free room and wake a writer per release.
   */
  private reserved = 0;
  private readonly waiters = new Set<Stream>();
  private waking = false;

  constructor(
    private readonly config: Pick<Config, 'streamSendBuffer' | 'streamSendMin' | 'sessionSendBudget'>,
    private readonly process: MemoryBudget | undefined,
  ) {}

  /** Unsent + unacknowledged bytes of all the session's streams. */
  get buffered(): number {
    return this.held;
  }

  /** A stream's send-side holding changed by `delta`. */
  changed(delta: number): void {
    this.held += delta;
    if (delta > 0) this.reserved = Math.max(0, this.reserved - delta);
    this.process?.addBytes(delta);
    if (delta < 0 && this.waiters.size > 0) this.wake();
  }

  /**
   * Every stream may hold streamSendMin (so none starves); above that it may
   * grow to streamSendBuffer only while the session's total is under
   * sessionSendBudget and the process budget is not under pressure.
   */
  mayWrite(s: Stream): boolean {
    return this.roomFor(s) !== 'none';
  }

  /** `s` was pushed back; returns what pushed it back. It waits to be woken. */
  blocked(s: Stream): BlockCause {
    let cause: BlockCause = 'stream';
    if (s.send.bufferedBytes < this.config.streamSendBuffer) {
      if (this.held >= this.config.sessionSendBudget) cause = 'session';
      else if (this.process?.pressed) cause = 'process';
    }
    // To the back of the queue: the oldest waiters are woken first.
    this.waiters.delete(s);
    this.waiters.add(s);
    return cause;
  }

  forget(s: Stream): void {
    this.waiters.delete(s);
  }

  clear(): void {
    this.waiters.clear();
  }

  private roomFor(s: Stream): 'own' | 'shared' | 'none' {
    const held = s.send.bufferedBytes;
    if (held >= this.config.streamSendBuffer) return 'none';
    if (held < this.config.streamSendMin) return 'own';
    if (this.held >= this.config.sessionSendBudget) return 'none';
    if (this.process?.pressed) return 'none';
    return 'shared';
  }

  /**
   * Wake blocked writers that may write again, oldest first. Each writer
   * woken into shared room is assumed to take about one socket read (64
   * KiB), so a burst of freed bytes wakes a few writers, not all of them:
   * the budget is overshot by a few reads, never by one read per stream.
   */
  wake(): void {
    if (this.waking) return;
    this.waking = true;
    try {
      let shared = this.config.sessionSendBudget - this.held - this.reserved;
      const seen = new Set<Stream>();
      for (const s of this.waiters) {
        if (seen.has(s)) break; // blocked again during this round: it had its turn
        seen.add(s);
        if (s.isClosed || !s.writerBlocked) {
          this.waiters.delete(s);
          continue;
        }
        const room = this.roomFor(s);
        if (room === 'none') continue;
        if (room === 'shared') {
          if (shared <= 0) continue;
          shared -= WAKE_QUANTUM;
          // Bounded, so writers woken but gone (ended, reset) cannot lock the rest out.
          this.reserved = Math.min(this.reserved + WAKE_QUANTUM, this.config.sessionSendBudget / 2);
        }
        this.waiters.delete(s);
        s.wakeWriter();
      }
    } finally {
      this.waking = false;
    }
  }
}
