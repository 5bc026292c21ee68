/**
 * Which of the peer's stream ids are finished (PROTOCOL.md section 7: frames
 * for them are ignored, ids are never reused), with a bound a peer cannot
 * raise: an honest peer opens ids in order, so finished ids merge into a few
 * ranges; one that leaves gaps without end is broken or hostile.
 */
import { IntervalSet } from './id-set.js';

export class PeerStreamIds {
  /** Finished ids, stored as id >>> 1 so one parity's consecutive ids merge. */
  private readonly finished = new IntervalSet();
  private high = 0;

  constructor(
    /** Parity of the peer's ids: the client opens odd ids, the server even ones. */
    private readonly parity: 0 | 1,
    private readonly maxStreams: number,
  ) {}

  isPeer(id: number): boolean {
    return (id & 1) === this.parity;
  }

  isFinished(id: number): boolean {
    return this.finished.has(id >>> 1);
  }

  /** The peer opened `id` (its first DATA arrived). */
  opened(id: number): void {
    if (id > this.high) this.high = id;
  }

  /**
   * Could a RESET for this unseen id have overtaken the stream's first DATA?
   * Not for ids far beyond any the peer has opened: no honest RESET runs
   * that far ahead, and remembering each would cost memory.
   */
  mayBeInFlight(id: number): boolean {
    return id <= this.high + 4 * this.maxStreams;
  }

  /**
   * Remember `id` as finished. Returns false once the peer has left more
   * than four times maxStreams gaps: the caller ends the session.
   */
  finish(id: number): boolean {
    this.finished.add(id >>> 1);
    return this.finished.intervals <= 4 * this.maxStreams;
  }

  /** Ranges held (the memory cost). */
  get ranges(): number {
    return this.finished.intervals;
  }
}
