/**
 * The byte queue every parser reads from (STYLE.md: one byte queue with
 * `consume(n)`, like ws Receiver or uint8arraylist).
 *
 * Chunks are held by reference in a ring of slots, so taking bytes off the
 * front is O(1) per chunk with no array compaction, and the ring only grows
 * (doubling) while more chunks are held at once than ever before.
 * Reads return views into a chunk whenever the bytes lie within one chunk and
 * copy only when they span chunks.
 *
 * Positions passed to peeks and `copyTo` are relative to the front (0 = the
 * next unread byte) unless stated otherwise.
 */
export class ByteQueue {
  /** Ring of chunks; a power-of-two length so `& mask` wraps. */
  private ring: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(8);
  private mask = 7;
  /** Ring slot of the front chunk and how many chunks are held. */
  private head = 0;
  private count = 0;
  /** Read position inside the front chunk. */
  private offset = 0;
  private size = 0;
  /** Bytes consumed since construction: turns front-relative positions into absolute ones. */
  private consumed = 0;
  /** Chunks dropped from the front since construction: the sequence number of the front chunk. */
  private dropped = 0;
  /**
   * Where the last `copyTo` ended: chunk sequence number and the absolute
   * position of that chunk's byte 0. Sequential reads (a sender copying out
   * new bytes frame after frame) then start there instead of walking every
   * chunk from the front.
   */
  private cursorSeq = 0;
  private cursorAt = 0;

  /** Bytes held and not yet consumed. */
  get length(): number {
    return this.size;
  }

  /** Absolute position of the front byte: bytes consumed so far. */
  get position(): number {
    return this.consumed;
  }

  /** Bytes that can be read from the front chunk alone (a view, no copy). */
  get frontRun(): number {
    const c = this.ring[this.head];
    return c ? c.length - this.offset : 0;
  }

  /** Takes the chunk by reference (no copy): the caller must not modify it afterwards. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.count === this.ring.length) this.grow();
    this.ring[(this.head + this.count) & this.mask] = chunk;
    this.count++;
    this.size += chunk.length;
  }

  /** Byte `at` positions from the front (at < length), without consuming. */
  byteAt(at: number): number {
    if (at < 0 || at >= this.size) throw new RangeError(`byte ${at} outside the ${this.size} queued`);
    let i = this.head;
    let pos = at + this.offset;
    for (;;) {
      const c = this.ring[i] as Uint8Array;
      if (pos < c.length) return c[pos] as number;
      pos -= c.length;
      i = (i + 1) & this.mask;
    }
  }

  /** Big-endian u16 at `at` (at + 2 <= length), without consuming; crosses chunk boundaries. */
  readUInt16BE(at = 0): number {
    const c = this.ring[this.head];
    const p = this.offset + at;
    if (c && p + 2 <= c.length) return ((c[p] as number) << 8) | (c[p + 1] as number);
    return this.byteAt(at) * 0x100 + this.byteAt(at + 1);
  }

  /** Big-endian u32 at `at` (at + 4 <= length), without consuming; crosses chunk boundaries. */
  readUInt32BE(at = 0): number {
    const c = this.ring[this.head];
    const p = this.offset + at;
    if (c && p + 4 <= c.length) {
      return (c[p] as number) * 0x1000000 + (((c[p + 1] as number) << 16) | ((c[p + 2] as number) << 8) | (c[p + 3] as number));
    }
    return this.readUInt16BE(at) * 0x10000 + this.readUInt16BE(at + 2);
  }

  /**
   * The first n bytes (n <= length) without consuming them: a view when they
   * lie within the front chunk, else a copy (into `scratch` when given and
   * large enough, so a caller can avoid an allocation).
   */
  peek(n: number, scratch?: Uint8Array): Uint8Array {
    this.check(n);
    const c = this.ring[this.head];
    if (c && this.offset + n <= c.length) return c.subarray(this.offset, this.offset + n);
    const out = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Uint8Array(n);
    this.copyTo(0, n, out, 0);
    return out;
  }

  /**
   * Consume the first n bytes (n <= length): a view when they lie within the
   * front chunk, else a copy (into `scratch` when given and large enough). A
   * view aliases the pushed chunk; a scratch result is overwritten by the
   * next read into the same scratch.
   */
  consume(n: number, scratch?: Uint8Array): Uint8Array {
    const out = this.peek(n, scratch);
    this.skip(n);
    return out;
  }

  /** Consume n bytes (n <= length) as a fresh copy that aliases no pushed chunk. */
  consumeCopy(n: number): Uint8Array {
    this.check(n);
    const out = new Uint8Array(n);
    this.copyTo(0, n, out, 0);
    this.skip(n);
    return out;
  }

  /** Drop the first n bytes (n <= length). */
  skip(n: number): void {
    this.check(n);
    this.size -= n;
    this.consumed += n;
    while (n > 0) {
      const c = this.ring[this.head] as Uint8Array;
      const avail = c.length - this.offset;
      if (avail > n) {
        this.offset += n;
        return;
      }
      n -= avail;
      this.dropFront();
    }
  }

  /** Drop everything held. */
  clear(): void {
    this.skip(this.size);
  }

  /**
   * Copy `len` bytes starting `from` positions after the front into dest at
   * pos, without consuming. Consecutive calls that move forward resume from
   * where the previous one ended, so copying out a long queue piece by piece
   * costs no walk from the front each time.
   */
  copyTo(from: number, len: number, dest: Uint8Array, pos: number): void {
    this.walk(from, len, (c, off, n) => {
      dest.set(off === 0 && n === c.length ? c : c.subarray(off, off + n), pos);
      pos += n;
    });
  }

  /**
   * Append to `out` views of the `len` bytes starting `from` positions after
   * the front (one per chunk touched), without copying or consuming; they
   * stay valid as long as the chunks are not modified. Resumes like copyTo.
   */
  viewsTo(from: number, len: number, out: Uint8Array[]): void {
    this.walk(from, len, (c, off, n) => out.push(off === 0 && n === c.length ? c : c.subarray(off, off + n)));
  }

  /** Visit [from, from+len) chunk piece by chunk piece, starting at the cursor when it helps. */
  private walk(from: number, len: number, visit: (chunk: Uint8Array, off: number, n: number) => void): void {
    if (from < 0 || len < 0 || from + len > this.size) {
      throw new RangeError(`range ${from}+${len} outside the ${this.size} queued`);
    }
    if (len === 0) return;
    const target = this.consumed + from;
    // Start from the cursor when it is still held and not past the target.
    let seq = this.dropped;
    let at = this.consumed - this.offset;
    if (this.cursorSeq > seq && this.cursorAt <= target && this.cursorSeq < this.dropped + this.count) {
      seq = this.cursorSeq;
      at = this.cursorAt;
    }
    let slot = (this.head + (seq - this.dropped)) & this.mask;
    let c = this.ring[slot] as Uint8Array;
    while (at + c.length <= target) {
      at += c.length;
      seq++;
      slot = (slot + 1) & this.mask;
      c = this.ring[slot] as Uint8Array;
    }
    let off = target - at;
    let remaining = len;
    for (;;) {
      const n = Math.min(remaining, c.length - off);
      visit(c, off, n);
      remaining -= n;
      if (remaining === 0) break;
      at += c.length;
      seq++;
      slot = (slot + 1) & this.mask;
      c = this.ring[slot] as Uint8Array;
      off = 0;
    }
    this.cursorSeq = seq;
    this.cursorAt = at;
  }

  private check(n: number): void {
    if (n < 0 || n > this.size || !Number.isInteger(n)) throw new RangeError(`cannot take ${n} of the ${this.size} queued bytes`);
  }

  /**
   * Told of each chunk once the queue holds no more of it (wholly consumed
   * or skipped), so the chunk's owner may reuse its memory.
   */
  onDrop: ((chunk: Uint8Array) => void) | undefined;

  private dropFront(): void {
    const chunk = this.ring[this.head];
    // Clear the slot so the chunk's memory can be reclaimed.
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.count--;
    this.dropped++;
    this.offset = 0;
    if (this.onDrop && chunk) this.onDrop(chunk);
  }

  private grow(): void {
    const old = this.ring;
    const next = new Array<Uint8Array | undefined>(old.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = old[(this.head + i) & this.mask];
    this.ring = next;
    this.mask = next.length - 1;
    this.head = 0;
  }
}
