import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ResetCode } from '@plait/core';
import { slabOf } from './slab-read.js';
import { StreamDuplex, StreamResetError } from './stream-duplex.js';

/** Longest wait for a socket to hand its queued bytes to the kernel before it is reset anyway. */
const FLUSH_BEFORE_RESET_MS = 5_000;
/**
 * Pause between the last byte handed to the kernel and the RST. A receiving
 * kernel that gets the RST before its application read the bytes drops them
 * (measured on Linux: a byte and an immediate RST reach a Node reader as a
 * bare ECONNRESET), so the reset trails the data a little, as it did at the
 * target, whose RST came at least one event-loop turn after its write.
 */
const RESET_TRAIL_MS = 20;

/**
 * Joins two duplexes: each one's readable side is piped into the other's
 * writable side with backpressure. The end of one direction is passed on as
 * `end()` (half-close), not as a teardown; an error, or a close before both
 * directions finished, destroys both.
 *
 * A reset keeps its place after the data: when a socket fails (a target
 * that sends a byte and then resets), the stream on the other side sends
 * what was read first and resets after it (StreamDuplex.abortAfterData);
 * when the peer resets a stream, the socket on the other side writes the
 * bytes that came before the reset and is reset after them.
 *
 * Sockets must allow half-open connections for half-close to work
 * (otherwise Node ends their writable side as soon as the peer's FIN
 * arrives); this sets `allowHalfOpen`, but listeners should also be created
 * with `allowHalfOpen: true` so a FIN during a handshake does not already
 * close the socket.
 */
export function pipeBoth(a: Duplex, b: Duplex): void {
  a.allowHalfOpen = true;
  b.allowHalfOpen = true;
  let tornDown = false;
  const teardown = (from: Duplex | undefined, err: unknown): void => {
    if (tornDown) return;
    tornDown = true;
    for (const d of [a, b]) {
      if (d === from) abort(d);
      else if (from && d instanceof StreamDuplex && from instanceof Socket) {
        // The socket failed after sending data we may not have passed on yet.
        const code = err instanceof Error && 'code' in err ? String(err.code) : 'closed';
        d.abortAfterData(ResetCode.CANCEL, `connection ${code}`);
      } else if (err instanceof StreamResetError && err.remote && d instanceof Socket) {
        resetAfterFlush(d);
      } else abort(d);
    }
  };
  const watch = (self: Duplex): void => {
    self.on('error', (err: unknown) => teardown(self, err));
    self.once('close', () => {
      // Closed after both directions completed: the other side has been (or
      // is being) ended by the pipe and must be left to flush what it holds.
      if (self.readableEnded && self.writableFinished) return;
      teardown(undefined, undefined);
    });
  };
  watch(a);
  watch(b);
  if (a.destroyed || b.destroyed) {
    teardown(undefined, undefined);
    return;
  }
  corkPerTick(a, b);
  corkPerTick(b, a);
  reuseReadsOnceAcked(a, b);
  reuseReadsOnceAcked(b, a);
  a.pipe(b);
  b.pipe(a);
}

/**
 * Batch what `src` hands to the socket `dst` within one tick into a single
 * writev (a record's frames arrive as several chunks): cork on the tick's
 * first chunk, uncork after it. Registered before pipe()'s own 'data'
 * listener, so the cork is in place before the first write.
 */
function corkPerTick(src: Duplex, dst: Duplex): void {
  if (!(dst instanceof Socket) || !(src instanceof StreamDuplex)) return;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    dst.uncork();
  };
  src.on('data', () => {
    if (corked || dst.destroyed) return;
    corked = true;
    dst.cork();
    process.nextTick(uncork);
  });
}

/**
 * A socket reading into slabs (slab-read.ts) whose bytes go into a stream:
 * the stream's send buffer keeps each chunk until the peer acknowledges it,
 * then hands it back, and a slab whose every byte came back is reused for
 * the next reads instead of fresh memory (fresh memory costs a page fault
 * per 4 KiB on first touch, and GC work).
 */
function reuseReadsOnceAcked(src: Duplex, dst: Duplex): void {
  if (!(src instanceof Socket) || !(dst instanceof StreamDuplex)) return;
  const slab = slabOf(src);
  if (slab) dst.stream.send.onRelease = (chunk) => slab.releaseView(chunk);
}

function abort(d: Duplex): void {
  if (d instanceof Socket && !d.destroyed && d.readyState !== 'opening') d.resetAndDestroy();
  else d.destroy();
}

/** Reset a socket once the bytes queued in it have been handed to the kernel (an RST discards what is still queued). */
function resetAfterFlush(s: Socket): void {
  if (s.destroyed) return;
  const trail = (): void => void setTimeout(() => abort(s), RESET_TRAIL_MS).unref();
  if (s.writableLength === 0) {
    trail();
    return;
  }
  const timer = setTimeout(() => abort(s), FLUSH_BEFORE_RESET_MS);
  timer.unref();
  // A write's callback runs once every write before it has completed.
  s.write(Buffer.alloc(0), () => {
    clearTimeout(timer);
    trail();
  });
}
