/**
 * One budget shared by every session of a process (a server): how many
 * streams may be open and how many bytes may sit in stream buffers (send:
 * unsent + unacknowledged; receive: reordering + unreleased) across all
 * sessions. A session's own limits bound one client; this bounds the sum,
 * so many clients, or one client with many sessions, cannot exhaust memory.
 *
 * Streams are counted exactly (a new one past the cap is refused); bytes are
 * a pressure signal with hysteresis: once the total reaches the cap,
 * `pressed` stays true until it falls below 7/8 of it, and sessions apply
 * backpressure (writes return false, reading pauses) while it holds.
 */
import { ErrorCode, PlaitError } from './errors.js';

export interface MemoryBudgetLimits {
  /** Open streams across all sessions. */
  processMaxStreams: number;
  /** Buffered stream bytes (send + receive) across all sessions. */
  processBufferBudget: number;
}

export class MemoryBudget {
  readonly maxStreams: number;
  readonly maxBytes: number;
  private streams = 0;
  private bytes = 0;
  private pressedState = false;
  private readonly listeners = new Set<() => void>();
  /** Named counters for stats. */
  readonly counters = {
    /** New streams refused because the process was at processMaxStreams. */
    streamsRefused: 0,
    /** Times the byte total reached processBufferBudget (backpressure began). */
    pressureEpisodes: 0,
  };

  constructor(limits: MemoryBudgetLimits) {
    if (!(limits.processMaxStreams > 0) || !(limits.processBufferBudget > 0)) {
      throw new PlaitError(ErrorCode.INTERNAL, 'invalid memory budget: limits must be positive');
    }
    this.maxStreams = limits.processMaxStreams;
    this.maxBytes = limits.processBufferBudget;
  }

  get streamCount(): number {
    return this.streams;
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  /** True from the moment the byte total reaches the cap until it falls below 7/8 of it. */
  get pressed(): boolean {
    return this.pressedState;
  }

  /** Claim one stream slot; false (and counted) when the process is full. */
  tryAddStream(): boolean {
    if (this.streams >= this.maxStreams) {
      this.counters.streamsRefused++;
      return false;
    }
    this.streams++;
    return true;
  }

  removeStream(): void {
    if (this.streams > 0) this.streams--;
  }

  /** Add (or, negative, remove) buffered bytes. */
  addBytes(delta: number): void {
    if (delta === 0) return;
    this.bytes = Math.max(0, this.bytes + delta);
    if (!this.pressedState && this.bytes >= this.maxBytes) {
      this.pressedState = true;
      this.counters.pressureEpisodes++;
    } else if (this.pressedState && this.bytes < (this.maxBytes * 7) / 8) {
      this.pressedState = false;
      // Hysteresis: wake waiters once per episode, not on every freed byte.
      for (const l of [...this.listeners]) l();
    }
  }

  /** Called when pressure ends (sessions resume writers and reading). Returns an unsubscribe function. */
  onRelief(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
