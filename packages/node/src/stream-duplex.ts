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

  constructor(readonly stream: Stream) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: 64 * 1024 });
    stream.setHandlers({
      data: (chunk) => {
        const below = this.push(chunk);
        if (below) stream.release(chunk.length);
        else this.unreleased += chunk.length;
      },
      end: () => this.push(null),
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
    if (!this.stream.isClosed) this.stream.reset(ResetCode.CANCEL, err ? err.message.slice(0, 100) : '');
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    w?.();
    cb(err);
  }
}
