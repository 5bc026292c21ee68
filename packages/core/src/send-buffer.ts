import { ByteQueue } from './byte-queue.js';

/**
 * Bytes of one stream direction from the oldest unacknowledged byte to the
 * newest written one. Chunks are kept as written (no copy) and dropped from
 * the front as the peer acknowledges them; any range can be read again for
 * reinjection.
 */
export class SendBuffer {
  /** Front = stream offset `start`; the queue's position counts released bytes. */
  private readonly queue = new ByteQueue();

  /** Stream offset of the oldest byte held. */
  get start(): number {
    return this.queue.position;
  }
  /** Stream offset just past the last written byte. */
  get writtenOffset(): number {
    return this.queue.position + this.queue.length;
  }
  get bufferedBytes(): number {
    return this.queue.length;
  }

  /**
   * Told of each written chunk once the buffer holds none of it any more
   * (acknowledged, or the buffer cleared): the writer may then reuse its
   * memory. Set by the chunks' owner (e.g. the socket they were read from).
   */
  set onRelease(fn: ((chunk: Uint8Array) => void) | undefined) {
    this.queue.onDrop = fn;
  }

  append(chunk: Uint8Array): void {
    this.queue.push(chunk);
  }

  /** Forget everything below `offset` (acknowledged by the peer). */
  releaseTo(offset: number): void {
    const n = Math.min(offset, this.writtenOffset) - this.start;
    if (n > 0) this.queue.skip(n);
  }

  /**
   * Copy [offset, offset+len) into dest at pos. The range must be buffered.
   * New data is copied out frame after frame, so the queue resumes from where
   * the previous copy ended rather than walking every chunk from the front.
   */
  copyOut(offset: number, len: number, dest: Uint8Array, pos: number): void {
    if (offset < this.start || offset + len > this.writtenOffset) {
      throw new RangeError(`send buffer range ${offset}+${len} outside [${this.start}, ${this.writtenOffset})`);
    }
    this.queue.copyTo(offset - this.start, len, dest, pos);
  }

  /** Views of [offset, offset+len), appended to `out` (no copy). The range must be buffered. */
  viewsOut(offset: number, len: number, out: Uint8Array[]): void {
    if (offset < this.start || offset + len > this.writtenOffset) {
      throw new RangeError(`send buffer range ${offset}+${len} outside [${this.start}, ${this.writtenOffset})`);
    }
    this.queue.viewsTo(offset - this.start, len, out);
  }
}
