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

/** Spare slabs kept for reuse per socket: enough to cover the one being drained while the next fills. */
const MAX_SPARE = 2;
/**
 * Filled slabs remembered for reuse per socket. Older ones are forgotten
 * (the GC frees each once no view into it remains): a consumer that holds
 * many megabytes, or one that never says what it released, must not make
 * the reader keep every slab it ever filled.
 */
const MAX_RETIRED = 16;

/**
 * Read buffers carved from 1 MiB slabs. A region is handed out once and is
 * reused only when its consumer says it holds no view into it any more
 * (`release`): a view passed on as 'data' may be kept (a partial record in
 * the opener's queue, a chunk in a Duplex's buffer), so reuse without that
 * word could overwrite bytes still in use. Without `release` calls a slab is
 * freed by the GC once no view into it remains, as before.
 *
 * Reuse matters because every fresh slab is external memory, and external
 * allocation is what drives V8's young-generation collections on a busy
 * subflow ("external memory pressure" in --trace-gc): reusing the slabs of
 * subflow reads removes about half of them. One per socket.
 */
export class ReadSlab {
  private slab: Buffer = Buffer.allocUnsafeSlow(0);
  /** Stream position (bytes taken before it) of the current slab's first byte. */
  private slabStart = 0;
  private off = 0;
  private total = 0;
  /** Filled slabs, oldest first, with the stream position just past their last byte. */
  private readonly retired: { buf: Buffer; start: number; end: number }[] = [];
  private readonly spare: Buffer[] = [];
  /**
   * Bytes taken from each slab and not yet handed back with `releaseView`,
   * by the slab's memory; a filled slab whose count reaches 0 is reused.
   */
  private readonly outstanding = new Map<ArrayBufferLike, number>();
  /** Only slabs starting at or after this position may be reused (set by the first release). */
  private reusableFrom = Infinity;
  private reusedCount = 0;

  constructor(
    private readonly slabBytes = SLAB_BYTES,
    private readonly maxRead = MAX_READ,
  ) {}

  /** The region the next read may fill: the unused rest of the slab (up to maxRead). */
  region(): Buffer {
    if (this.slab.length - this.off < Math.min(MIN_READ, this.maxRead)) {
      if (this.slab.length > 0) {
        // Handed back whole already (every view released before it filled): reusable now.
        if (this.outstanding.get(this.slab.buffer) === 0) this.recycle(this.slab);
        else {
          this.retired.push({ buf: this.slab, start: this.slabStart, end: this.total });
          if (this.retired.length > MAX_RETIRED) this.outstanding.delete(this.retired.shift()!.buf.buffer);
        }
      }
      const reused = this.spare.pop();
      if (reused) this.reusedCount++;
      this.slab = reused ?? Buffer.allocUnsafeSlow(this.slabBytes);
      this.slabStart = this.total;
      this.off = 0;
    }
    const max = this.total < RAMP_BYTES ? Math.min(MIN_READ, this.maxRead) : this.maxRead;
    return this.slab.subarray(this.off, Math.min(this.off + max, this.slab.length));
  }

  /** The first n bytes of the region just read, as a view; they are never handed out again. */
  take(n: number): Buffer {
    const view = this.slab.subarray(this.off, this.off + n);
    this.outstanding.set(this.slab.buffer, (this.outstanding.get(this.slab.buffer) ?? 0) + n);
    this.off += n;
    this.total += n;
    return view;
  }

  /** Bytes taken so far (the stream position after the last view). */
  get taken(): number {
    return this.total;
  }

  /** Slabs reused instead of allocated (for tests and profiles). */
  get reused(): number {
    return this.reusedCount;
  }

  /** Filled slabs remembered for reuse (at most MAX_RETIRED; for tests). */
  get retiredCount(): number {
    return this.retired.length;
  }

  /**
   * A view from `take` (or a piece of one) that its consumer will never read
   * again: once every byte taken from a filled slab is handed back, the slab
   * is reused. For a consumer that drops views one by one, in any order (a
   * stream's send buffer as the peer acknowledges). Bytes handed to anyone
   * who never hands them back keep their slab from reuse (the GC frees it):
   * the safe side. Views not from this reader are ignored.
   */
  releaseView(view: Uint8Array): void {
    const left = this.outstanding.get(view.buffer);
    if (left === undefined) return;
    const now = left - view.length;
    this.outstanding.set(view.buffer, now);
    if (now <= 0 && view.buffer !== this.slab.buffer) {
      const i = this.retired.findIndex((r) => r.buf.buffer === view.buffer);
      if (i >= 0) this.recycle(this.retired.splice(i, 1)[0]!.buf);
    }
  }

  /** A filled slab nothing views any more: kept for the next region, or left to the GC. */
  private recycle(buf: Buffer): void {
    this.outstanding.delete(buf.buffer);
    if (this.spare.length < MAX_SPARE) this.spare.push(buf);
  }

  /**
   * The consumer holds no view into the bytes before stream position `pos`:
   * slabs wholly before it may be reused. The first call fixes where reuse
   * may start: bytes taken earlier went to whoever read the socket before
   * (a handshake parser may still hold views of them), so slabs that hold
   * any of them are left to the GC.
   */
  release(pos: number): void {
    if (this.reusableFrom === Infinity) this.reusableFrom = Math.min(pos, this.total);
    while (this.retired.length > 0 && this.retired[0]!.end <= pos) {
      const r = this.retired.shift()!;
      this.outstanding.delete(r.buf.buffer);
      if (r.start >= this.reusableFrom && this.spare.length < MAX_SPARE) this.spare.push(r.buf);
    }
  }
}

/** The slab each socket reads into (set up by adoptSlabReads / slabOnread), so its channel can release regions. */
const slabs = new WeakMap<Socket, ReadSlab>();

/** The ReadSlab a socket reads into, if it reads into one. */
export function slabOf(socket: Socket): ReadSlab | undefined {
  return slabs.get(socket);
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
export function slabOnread(socket: () => Socket, slab = new ReadSlab()): SlabOnread & { readonly slab: ReadSlab } {
  return {
    slab,
    buffer: () => slab.region(),
    callback: (n) => {
      const s = socket();
      if (!slabs.has(s)) slabs.set(s, slab);
      return s.push(slab.take(n));
    },
  };
}

/**
 * Note which slab a socket created with `onread: slabOnread(...)` reads into,
 * as soon as the socket exists (slabOf would otherwise know it only after
 * its first read).
 */
export function noteSlabReads(socket: Socket, onread: { readonly slab: ReadSlab }): void {
  slabs.set(socket, onread.slab);
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
  slabs.set(socket, slab);
  rec[kBufferGen] = () => slab.region();
  rec[kBufferCb] = (n: number) => socket.push(slab.take(n));
  rec[kBuffer] = first;
  handle.useUserBuffer(first);
  return true;
}
