import { BLOCK_BYTES, giveBlock, takeBlock } from './block-pool.js';
import { ByteQueue } from './byte-queue.js';

/** Writes below this size that find no room in the tail block are copied on their own (no block pinned). */
const SMALL_WRITE = 2048;

/**
 * Bytes of one stream direction from the oldest unacknowledged byte to the
 * newest written one. Writes are copied into pooled blocks (the writer may
 * reuse its buffer, and a socket's read memory can be reused at once); a
 * block goes back to the pool once the peer acknowledged all of it. Any
 * buffered range can be read again for reinjection.
 *
 * A stream pins at most one partly used block beyond its buffered bytes: full
 * blocks are released as acknowledgements pass them, and the tail block is
 * released when everything written has been acknowledged.
 */
export class SendBuffer {
  /** Front = stream offset `start`; the queue's position counts released bytes. */
  private readonly queue = new ByteQueue();
  /** Blocks holding buffered bytes, oldest first, with the stream offset just past their last byte. */
  private readonly blocks: { buf: Uint8Array; end: number }[] = [];
  private tail: Uint8Array | undefined;
  private tailUsed = 0;

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

  /** Copy `chunk` in: the caller may reuse it afterwards. */
  append(chunk: Uint8Array): void {
    const room = this.tail ? BLOCK_BYTES - this.tailUsed : 0;
    if (chunk.length < SMALL_WRITE && chunk.length > room) {
      // A few bytes with no tail block to share: an exact copy, not a 16 KiB block.
      this.queue.push(chunk.slice());
      return;
    }
    let off = 0;
    while (off < chunk.length) {
      if (!this.tail || this.tailUsed === BLOCK_BYTES) {
        this.tail = takeBlock();
        this.tailUsed = 0;
        this.blocks.push({ buf: this.tail, end: this.writtenOffset });
      }
      const n = Math.min(BLOCK_BYTES - this.tailUsed, chunk.length - off);
      this.tail.set(chunk.subarray(off, off + n), this.tailUsed);
      this.queue.push(this.tail.subarray(this.tailUsed, this.tailUsed + n));
      this.tailUsed += n;
      off += n;
      this.blocks[this.blocks.length - 1]!.end = this.writtenOffset;
    }
  }

  /** Forget everything below `offset` (acknowledged by the peer). */
  releaseTo(offset: number): void {
    const n = Math.min(offset, this.writtenOffset) - this.start;
    if (n <= 0) return;
    this.queue.skip(n);
    const start = this.start;
    const empty = this.queue.length === 0;
    // The queue never reads released bytes again, so their blocks can be reused.
    while (this.blocks.length > 0 && this.blocks[0]!.end <= start && (empty || this.blocks[0]!.buf !== this.tail)) {
      const b = this.blocks.shift()!;
      if (b.buf === this.tail) this.tail = undefined;
      giveBlock(b.buf);
    }
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
}
