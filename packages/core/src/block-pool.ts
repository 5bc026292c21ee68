/**
 * Fixed-size blocks that stream send buffers copy into and give back once the
 * peer acknowledged every byte in them. Recycling matters: a relay that kept
 * each socket read (a fresh ArrayBuffer, external memory) until it was
 * acknowledged drove V8's collections — young ones on external-memory
 * pressure, and full ones once those reads were promoted — on every busy
 * stream (see heap-tuning.ts in @plait/node for the measurements).
 *
 * One pool per process, owned by this module. It keeps at most MAX_FREE
 * blocks (4 MiB); beyond that a returned block is left to the GC.
 */
export const BLOCK_BYTES = 16 * 1024;
const MAX_FREE = 256;

const free: Uint8Array[] = [];
let allocated = 0;

/** A block of BLOCK_BYTES whose old contents are garbage. */
export function takeBlock(): Uint8Array {
  const b = free.pop();
  if (b) return b;
  allocated++;
  return new Uint8Array(BLOCK_BYTES);
}

/** The caller and everyone it lent views to are done with `b`. */
export function giveBlock(b: Uint8Array): void {
  if (b.length === BLOCK_BYTES && free.length < MAX_FREE) free.push(b);
}

/** Blocks ever allocated and blocks waiting in the pool (for tests and profiles). */
export function blockPoolStats(): { allocated: number; free: number } {
  return { allocated, free: free.length };
}
