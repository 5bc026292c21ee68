import type { ByteChannel } from './channel.js';
import type { Clock, Timer } from './clock.js';
import { ErrorCode, PlaitError } from './errors.js';
import { HandshakeReader, type HandshakeMessage } from './handshake-messages.js';

/**
 * Reads cleartext handshake messages off a channel until the handshake is
 * over; then `detach()` hands over the bytes that followed (sealed records).
 */
export interface HandshakeChannelOptions {
  /** Bytes buffered at most before the handshake is over (a server's pre-auth budget). */
  maxBuffered?: number;
  /** Called with the running total of bytes received (a server tracks a stranger's progress). */
  onBytes?(total: number): void;
}

export class HandshakeChannel {
  private readonly reader: HandshakeReader;
  private waiter: { resolve(m: HandshakeMessage): void; reject(e: Error): void } | undefined;
  private byteWaiter: { resolve(): void; reject(e: Error): void } | undefined;
  private failure: Error | undefined;
  private received = 0;

  constructor(
    readonly channel: ByteChannel,
    private readonly clock: Clock,
    opts: HandshakeChannelOptions = {},
  ) {
    this.reader = new HandshakeReader(opts.maxBuffered);
    channel.setHandlers({
      data: (chunk) => {
        // A failed handshake is being refused: its input is dropped, never buffered.
        if (this.failure) return;
        this.received += chunk.length;
        opts.onBytes?.(this.received);
        try {
          this.reader.push(chunk);
        } catch (e) {
          this.fail(e instanceof Error ? e : new Error(String(e)));
          return;
        }
        this.wake();
      },
      drain: () => undefined,
      close: (err) => this.fail(new PlaitError(ErrorCode.CLOSED, `connection closed during the handshake${err ? `: ${err.message}` : ''}`)),
    });
  }

  send(bytes: Uint8Array): void {
    this.channel.write(bytes);
  }

  /** Bytes received so far (including those already parsed). */
  get bytesReceived(): number {
    return this.received;
  }

  /**
   * Fail the handshake from outside (e.g. evicted): pending and later waits
   * reject with `err`. False if it had already failed (that failure stands).
   */
  abort(err: Error): boolean {
    if (this.failure) return false;
    this.fail(err);
    return true;
  }

  /**
   * The next message; rejects on close, bad input, or `deadline` (clock ms),
   * the latter with a PlaitError TIMEOUT saying `timeoutReason`.
   */
  next(deadline: number, timeoutReason = 'handshake timed out'): Promise<HandshakeMessage> {
    return new Promise<HandshakeMessage>((resolve, reject) => {
      let timer: Timer | undefined;
      const done = (): void => {
        timer?.cancel();
        this.waiter = undefined;
      };
      this.waiter = {
        resolve: (m) => {
          done();
          resolve(m);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      const left = deadline - this.clock.now();
      timer = this.clock.setTimeout(
        () => this.waiter?.reject(new PlaitError(ErrorCode.TIMEOUT, timeoutReason)),
        Math.max(0, left),
      );
      this.wake();
    });
  }

  /**
   * Wait until at least one byte follows the last message. After
   * JOIN_CONFIRM the server answers with a record (first byte 0x00) or a
   * cleartext REJECT (0x0f); this lets the caller tell which.
   */
  waitForBytes(deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.byteWaiter = undefined;
        reject(new PlaitError(ErrorCode.TIMEOUT, 'handshake timed out'));
      }, Math.max(0, deadline - this.clock.now()));
      this.byteWaiter = {
        resolve: () => {
          timer.cancel();
          this.byteWaiter = undefined;
          resolve();
        },
        reject: (e) => {
          timer.cancel();
          this.byteWaiter = undefined;
          reject(e);
        },
      };
      this.wake();
    });
  }

  /** The first buffered byte after the last message, if any. */
  peekByte(): number | undefined {
    return this.reader.peekByte();
  }

  /** Bytes after the last message (the start of the record stream). */
  detach(): Uint8Array {
    return this.reader.takeRest();
  }

  private wake(): void {
    if (this.byteWaiter) {
      if (this.failure) this.byteWaiter.reject(this.failure);
      else if (this.reader.buffered > 0) this.byteWaiter.resolve();
    }
    if (!this.waiter) return;
    if (this.failure) {
      this.waiter.reject(this.failure);
      return;
    }
    let m: HandshakeMessage | undefined;
    try {
      m = this.reader.next();
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (m) this.waiter.resolve(m);
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.waiter?.reject(this.failure);
    this.byteWaiter?.reject(this.failure);
  }
}
