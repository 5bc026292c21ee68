/**
 * Per-stream reordering buffer (PROTOCOL.md sections 6.1 and 7): DATA for one
 * stream direction may arrive on any subflow, in any order, duplicated by
 * reinjection and re-split at different boundaries. Out-of-order bytes are
 * held as sorted, non-overlapping parts (views of the received buffers) and
 * released as soon as they become contiguous.
 */
import { ErrorCode, ProtocolError } from './errors.js';

/**
 * A held part smaller than 1/PIN_RATIO of the buffer it views is copied:
 * otherwise a peer could pin a whole 64 KiB record per held byte, and
 * memory would no longer be bounded by bufferedBytes (which flow control
 * bounds). Full-size DATA payloads in ordinary records are never copied.
 */
const PIN_RATIO = 8;

export class Reassembly {
  private next: number;
  private buffered = 0;
  /** Parallel arrays sorted by start; parts never overlap and all start above `next`. */
  private readonly starts: number[] = [];
  private readonly datas: Uint8Array[] = [];

  constructor(
    private readonly maxParts: number,
    startOffset = 0,
  ) {
    this.next = startOffset;
  }

  /** All bytes below this offset have been delivered, contiguously. */
  get nextOffset(): number {
    return this.next;
  }

  /** Out-of-order bytes held. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Out-of-order pieces held. */
  get parts(): number {
    return this.starts.length;
  }

  /**
   * Inserts bytes at `offset` and returns the chunks that became contiguous,
   * in order (possibly none). Bytes already delivered or already held are
   * dropped, whatever the boundaries of the copies. Throws
   * ProtocolError(PROTOCOL), leaving the state unchanged, when more than
   * `maxParts` pieces would have to be held.
   */
  insert(offset: number, data: Uint8Array): Uint8Array[] {
    const end = offset + data.length;
    if (end <= this.next || data.length === 0) return [];
    if (offset < this.next) {
      data = data.subarray(this.next - offset);
      offset = this.next;
    }
    if (offset === this.next) return this.deliver(data, end);

    // Out of order. Parts are sorted and disjoint, so their ends are sorted
    // too: find the first part that ends after `offset`.
    const starts = this.starts;
    const datas = this.datas;
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! + datas[mid]!.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    const first = lo;
    // Fast path: no overlap with any held part (the usual out-of-order case).
    if (first === starts.length || starts[first]! >= end) {
      if (starts.length + 1 > this.maxParts) throw this.limit();
      starts.splice(first, 0, offset);
      datas.splice(first, 0, this.hold(data));
      this.buffered += data.length;
      return [];
    }
    // Overlaps: keep only the gaps between the held parts it covers.
    const newStarts: number[] = [];
    const newDatas: Uint8Array[] = [];
    let addedBytes = 0;
    let cur = offset;
    let i = first;
    for (; i < starts.length && starts[i]! < end; i++) {
      const s = starts[i]!;
      const d = datas[i]!;
      if (s > cur) {
        newStarts.push(cur);
        newDatas.push(this.hold(data.subarray(cur - offset, s - offset)));
        addedBytes += s - cur;
      }
      newStarts.push(s);
      newDatas.push(d);
      cur = s + d.length;
    }
    if (cur < end) {
      newStarts.push(cur);
      newDatas.push(this.hold(data.subarray(cur - offset)));
      addedBytes += end - cur;
    }
    const replaced = i - first;
    const added = newStarts.length - replaced;
    if (added === 0) return [];
    if (starts.length + added > this.maxParts) throw this.limit();
    starts.splice(first, replaced, ...newStarts);
    datas.splice(first, replaced, ...newDatas);
    this.buffered += addedBytes;
    return [];
  }

  /** In order: deliver `data`, then every held part it reaches. */
  private deliver(data: Uint8Array, end: number): Uint8Array[] {
    const out = [data];
    this.next = end;
    const starts = this.starts;
    const datas = this.datas;
    let k = 0;
    while (k < starts.length && starts[k]! <= this.next) {
      const s = starts[k]!;
      const d = datas[k]!;
      this.buffered -= d.length;
      const e = s + d.length;
      if (e > this.next) {
        out.push(s === this.next ? d : d.subarray(this.next - s));
        this.next = e;
      }
      k++;
    }
    if (k > 0) {
      starts.splice(0, k);
      datas.splice(0, k);
    }
    return out;
  }

  private hold(d: Uint8Array): Uint8Array {
    return d.length * PIN_RATIO < d.buffer.byteLength ? d.slice() : d;
  }

  private limit(): ProtocolError {
    return new ProtocolError(ErrorCode.PROTOCOL, `more than ${this.maxParts} out-of-order parts on a stream`);
  }
}
