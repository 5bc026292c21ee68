import type { Socket } from 'node:net';

/** Bytes per slab: one external allocation per this many bytes read, instead of one per read. */
export const SLAB_BYTES = 1024 * 1024;
/** Largest single read offered to the kernel (Node's default is 64 KiB). */
export const MAX_READ = 256 * 1024;
/** A slab with less than this left is dropped for a fresh one (a tiny read buffer only means more syscalls). */
const MIN_READ = 64 * 1024;
/**
 * Reads stay at Node's 64 KiB until this much was read: a stranger's first
 * bytes reach the pre-auth checks (handshake budget, bad first message) in
 * the same small pieces as before; a connection that lives gets larger reads.
 */
const RAMP_BYTES = 256 * 1024;

/**
 * Read buffers carved from 1 MiB slabs. Every byte region is handed out at
 * most once and never reused: a view passed on as 'data' may be kept by its
 * receiver (a partial record in the opener's queue, a frame in reassembly, a
 * chunk in a Duplex's buffer), so reuse could overwrite bytes still in use.
 * A slab is freed by the GC once no view into it remains. One per socket.
 */
export class ReadSlab {
  private slab: Buffer = Buffer.allocUnsafeSlow(0);
  private off = 0;
  private total = 0;

  constructor(
    private readonly slabBytes = SLAB_BYTES,
    private readonly maxRead = MAX_READ,
  ) {}

  /** The region the next read may fill: the unused rest of the slab (up to maxRead). */
  region(): Buffer {
    if (this.slab.length - this.off < Math.min(MIN_READ, this.maxRead)) {
      this.slab = Buffer.allocUnsafeSlow(this.slabBytes);
      this.off = 0;
    }
    const max = this.total < RAMP_BYTES ? Math.min(MIN_READ, this.maxRead) : this.maxRead;
    return this.slab.subarray(this.off, Math.min(this.off + max, this.slab.length));
  }

  /** The first n bytes of the region just read, as a view; they are never handed out again. */
  take(n: number): Buffer {
    const view = this.slab.subarray(this.off, this.off + n);
    this.off += n;
    this.total += n;
    return view;
  }
}

/** Node's `onread` option value: reads go to the socket's own readable side (push), so 'data', pipe and pause work as usual. */
export interface SlabOnread {
  buffer: () => Uint8Array;
  callback: (n: number, buf: Uint8Array) => boolean;
}

/**
 * The `onread` option for net.connect / new net.Socket: reads land in slab
 * regions instead of a fresh 64 KiB allocation each. `socket` returns the
 * socket being created (the callback runs only after it exists). The view is
 * pushed into the socket's readable side, exactly what Node does by default,
 * so its return value (false = buffer full) stops reading as it would.
 */
export function slabOnread(socket: () => Socket, slab = new ReadSlab()): SlabOnread {
  return {
    buffer: () => slab.region(),
    callback: (n) => socket().push(slab.take(n)),
  };
}

/**
 * Slab reads for a socket that already exists: one a net.Server accepted
 * (net.Server takes no `onread`) or one connected elsewhere. Call it before
 * the first read completes (synchronously in the 'connection' handler, or
 * right after connect). It uses Node internals (the socket's kBuffer /
 * kBufferCb / kBufferGen fields and handle.useUserBuffer, what `onread` sets
 * up in the Socket constructor); where they are missing it does nothing and
 * returns false, and the socket reads as usual.
 */
export function adoptSlabReads(socket: Socket, slab = new ReadSlab()): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } | null })._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || socket.destroyed) return false;
  const syms = new Map<string, symbol>();
  for (const s of Object.getOwnPropertySymbols(socket)) if (s.description) syms.set(s.description, s);
  const kBuffer = syms.get('kBuffer');
  const kBufferCb = syms.get('kBufferCb');
  const kBufferGen = syms.get('kBufferGen');
  if (!kBuffer || !kBufferCb || !kBufferGen) return false;
  const rec = socket as unknown as Record<symbol, unknown>;
  // Already in user-buffer mode (created with onread): leave it.
  if (rec[kBuffer] !== null || rec[kBufferCb] !== null) return false;
  const first = slab.region();
  rec[kBufferGen] = () => slab.region();
  rec[kBufferCb] = (n: number) => socket.push(slab.take(n));
  rec[kBuffer] = first;
  handle.useUserBuffer(first);
  return true;
}
