import type { ReliableItem } from './subflow.js';

/**
 * A record being filled with frames before it is sealed. Frame headers and
 * small frames are written into `buf`; large DATA payloads are kept as
 * views of the stream's send buffer and handed to the sealer as separate
 * parts, so a bulk transfer's bytes are read once (by the cipher) instead of
 * being copied into the record first. The send buffer keeps those bytes
 * until the peer acknowledges them, which is after the record is sealed.
 */
export class StagedRecord {
  /** Inline bytes: buf[0, pos). Callers write frames at `pos` and advance it. */
  pos = 0;
  readonly items: ReliableItem[] = [];
  eliciting = false;
  /** Plaintext so far when payloads were added by reference: inline stretches and payload views, in order. */
  private readonly parts: Uint8Array[] = [];
  /** Inline bytes before this are already in `parts`. */
  private cut = 0;
  private external = 0;

  constructor(
    /** Inline space; its length is also the record's capacity. */
    readonly buf: Uint8Array,
  ) {}

  /** Plaintext bytes in the record: inline plus referenced. */
  get size(): number {
    return this.pos + this.external;
  }

  /** Bytes that still fit (inline or referenced). */
  get room(): number {
    return this.buf.length - this.size;
  }

  /**
   * Append `len` payload bytes as the views `fill` pushes (they follow the
   * inline bytes written so far). The views must stay unmodified until the
   * record is sealed.
   */
  appendByReference(len: number, fill: (out: Uint8Array[]) => void): void {
    if (this.pos > this.cut) this.parts.push(this.buf.subarray(this.cut, this.pos));
    this.cut = this.pos;
    fill(this.parts);
    this.external += len;
  }

  /**
   * Copy the referenced payloads in: a record that waits for more data
   * must not rely on the send buffer's chunks, which may be released (and
   * their memory reused) before it is sealed.
   */
  materialize(): void {
    if (this.parts.length === 0) return;
    const parts = this.plaintext();
    // In place, last part first: an inline stretch only ever moves right (the
    // referenced bytes before it are inserted), so nothing is overwritten
    // before it is moved (TypedArray.set copies overlapping ranges correctly).
    let end = this.size;
    for (let i = parts.length - 1; i >= 0; i--) {
      const p = parts[i]!;
      end -= p.length;
      this.buf.set(p, end);
    }
    this.pos = this.size;
    this.parts.length = 0;
    this.cut = 0;
    this.external = 0;
  }

  /** The plaintext as parts for the sealer (one part when nothing was referenced). */
  plaintext(): Uint8Array[] {
    if (this.parts.length === 0) return [this.buf.subarray(0, this.pos)];
    if (this.pos > this.cut) this.parts.push(this.buf.subarray(this.cut, this.pos));
    this.cut = this.pos;
    return this.parts;
  }
}
