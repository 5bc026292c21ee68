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

  constructor(readonly stream: Stream) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: 64 * 1024 });
    stream.setHandlers({
      data: (chunk) => {
        // A record carries several 16 KiB frames; hand them on as one buffer so
        // the socket behind us sees one write, not one syscall per frame.
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
        if (remote || code !== ResetCode.CANCEL) this.destroy(new StreamResetError(code, reason, remote));
        else this.destroy();
      },
    });
  }

  private flushBatch(): void {
    if (this.batch.length === 0 || this.destroyed) return;
    const n = this.batchBytes;
    const buf = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch, n);
    this.batch = [];
    this.batchBytes = 0;
    if (this.push(buf)) this.stream.release(n);
    else this.unreleased += n;
    if (this.ended) this.push(null);
  }

  override _read(): void {
    if (this.unreleased > 0) {
      const n = this.unreleased;
      this.unreleased = 0;
      this.stream.release(n);
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.stream.isClosed) {
      cb(new Error('stream closed'));
      return;
    }
    if (this.stream.write(chunk)) cb();
    else this.pendingWrite = () => cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.stream.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Auto-destroy after both directions ended is a normal close: the session
    // still delivers our queued bytes and FIN. Anything else aborts the stream.
    const finished = err === null && this.readableEnded && this.writableFinished;
    if (!this.stream.isClosed && !finished) this.stream.reset(ResetCode.CANCEL, err ? err.message.slice(0, 100) : '');
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    w?.();
    cb(err);
  }
}
