/**
 * Bytes of one stream direction from the oldest unacknowledged byte to the
 * newest written one. Chunks are kept as written (no copy) and dropped from
 * the front as the peer acknowledges them; any range can be read again for
 * reinjection.
 */
export class SendBuffer {
  private chunks: Uint8Array[] = [];
  private head = 0;
  /** Stream offset of chunks[head][0]. */
  private base = 0;
  /** Stream offset just past the last written byte. */
  private end = 0;

  get start(): number {
    return this.base;
  }
  get writtenOffset(): number {
    return this.end;
  }
  get bufferedBytes(): number {
    return this.end - this.base;
  }

  append(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.end += chunk.length;
  }

  /** Forget everything below `offset` (acknowledged by the peer). */
  releaseTo(offset: number): void {
    const target = Math.min(offset, this.end);
    while (this.head < this.chunks.length) {
      const c = this.chunks[this.head]!;
      if (this.base + c.length > target) break;
      this.base += c.length;
      this.chunks[this.head] = EMPTY;
      this.head++;
    }
    if (this.base < target) {
      // Partially acknowledged chunk: trim it so memory follows the ack.
      const c = this.chunks[this.head]!;
      this.chunks[this.head] = c.subarray(target - this.base);
      this.base = target;
    }
    if (this.head > 32 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** Copy [offset, offset+len) into dest at pos. The range must be buffered. */
  copyOut(offset: number, len: number, dest: Uint8Array, pos: number): void {
    if (offset < this.base || offset + len > this.end) {
      throw new RangeError(`send buffer range ${offset}+${len} outside [${this.base}, ${this.end})`);
    }
    let i = this.head;
    let at = this.base;
    // Walk to the chunk holding `offset` (ranges read are near the front).
    while (at + this.chunks[i]!.length <= offset) {
      at += this.chunks[i]!.length;
      i++;
    }
    let remaining = len;
    let from = offset - at;
    while (remaining > 0) {
      const c = this.chunks[i]!;
      const n = Math.min(remaining, c.length - from);
      dest.set(c.subarray(from, from + n), pos);
      pos += n;
      remaining -= n;
      from = 0;
      i++;
    }
  }
}

const EMPTY = new Uint8Array(0);
