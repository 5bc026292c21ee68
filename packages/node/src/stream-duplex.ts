import { Duplex } from 'node:stream';
import { ResetCode, resetName, type Stream } from '@plait/core';

/** A stream aborted by a RESET; `code` is the PROTOCOL.md reset code. */
export class StreamResetError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    readonly remote: boolean,
  ) {
    super(`stream reset ${remote ? 'by peer' : 'locally'}: ${resetName(code)}${reason ? `: ${reason}` : ''}`);
    this.name = 'StreamResetError';
  }
}

/**
 * A session stream as a Node Duplex, so it can be piped to sockets.
 * Credit is released to the peer only as the readable side is consumed, so
 * a slow local reader slows only this stream.
 */
export class StreamDuplex extends Duplex {
  private unreleased = 0;
  private pendingWrite: (() => void) | undefined;
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  private ended = false;
  /** abortAfterData(): the RESET to send once the written bytes have gone out. */
  private abortAfter: { code: number; reason: string } | undefined;
  /** The peer reset the stream: surfaced once the bytes that came before it are read. */
  private resetError: StreamResetError | undefined;

  constructor(readonly stream: Stream) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: 64 * 1024 });
    stream.setHandlers({
      data: (chunk) => {
        // A record carries several 16 KiB frames; they are pushed together at
        // the end of the microtask (pipeBoth corks the socket behind us for the
        // tick, so they go out in one writev, without a copy).
        if (this.batch.length === 0) queueMicrotask(() => this.flushBatch());
        this.batch.push(chunk);
        this.batchBytes += chunk.length;
      },
      end: () => {
        this.ended = true;
        if (this.batch.length === 0) this.push(null);
      },
      drain: () => {
        const cb = this.pendingWrite;
        this.pendingWrite = undefined;
        cb?.();
      },
      reset: (code, reason, remote) => {
        if (remote) {
          // The peer sent its RESET after its data (PROTOCOL.md 6.4): hand
          // on every byte that came before it, then fail the readable side,
          // as a TCP socket reads the data that preceded an RST.
          this.flushBatch();
          this.resetError = new StreamResetError(code, reason, remote);
          this.maybeSurfaceReset();
        } else if (code !== ResetCode.CANCEL) this.destroy(new StreamResetError(code, reason, remote));
        else this.destroy();
      },
    });
  }

  /**
   * Abort the stream once everything written so far (including writes still
   * queued in this Duplex) has reached the peer: the peer reads those bytes
   * and then sees the reset, in that order (a target that sends, then resets).
   */
  abortAfterData(code: number = ResetCode.CANCEL, reason = ''): void {
    if (this.destroyed || this.stream.isClosed || this.abortAfter) return;
    this.abortAfter = { code, reason };
    if (this.writableEnded) {
      // FIN already queued: the stream sends it with the data, then the reset.
      this.stream.resetAfterData(code, reason);
      this.destroy();
      return;
    }
    // _final runs after every queued write was handed to the stream.
    this.end();
  }

  private maybeSurfaceReset(): void {
    if (!this.resetError || this.destroyed) return;
    // Still unread bytes: wait for the reader (checked again in _read).
    if (this.readableLength > 0 || this.batch.length > 0) return;
    this.destroy(this.resetError);
  }

  private flushBatch(): void {
    if (this.batch.length === 0 || this.destroyed) return;
    const n = this.batchBytes;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    // Every frame is pushed (push only queues once the reader is full);
    // credit goes back at once only if the reader still wants more.
    let wantsMore = true;
    for (const chunk of batch) wantsMore = this.push(chunk);
    if (wantsMore) this.stream.release(n);
    else this.unreleased += n;
    if (this.ended) this.push(null);
  }

  override _read(): void {
    if (this.resetError) {
      // Defer: the chunk being consumed now still counts in readableLength.
      queueMicrotask(() => this.maybeSurfaceReset());
      return;
    }
    if (this.unreleased > 0) {
      const n = this.unreleased;
      this.unreleased = 0;
      this.stream.release(n);
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.resetError) {
      cb(); // the peer is gone; the reset surfaces on the readable side
      return;
    }
    if (this.stream.isClosed) {
      cb(new Error('stream closed'));
      return;
    }
    if (this.stream.write(chunk)) cb();
    else this.pendingWrite = () => cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    const a = this.abortAfter;
    if (a) {
      this.stream.resetAfterData(a.code, a.reason);
      cb();
      // Nothing more to read or write here; the stream finishes on its own.
      queueMicrotask(() => this.destroy());
      return;
    }
    this.stream.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Auto-destroy after both directions ended is a normal close: the session
    // still delivers our queued bytes and FIN. An abort after data resets the
    // stream itself once they are acknowledged. Anything else aborts now.
    const finished = err === null && this.readableEnded && this.writableFinished;
    if (!this.stream.isClosed && !finished && !this.stream.isResetPending) {
      this.stream.reset(ResetCode.CANCEL, err ? err.message.slice(0, 100) : '');
    }
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    w?.();
    cb(err);
  }
}
