/**
 * An in-memory link for driving @plait/core sessions on a VirtualClock: two
 * ByteChannel ends, a one-way delay and serialisation rate per direction, and
 * failure injection (cut, blackhole, a flipped bit). A test double; the core
 * never uses it.
 */
import type { ByteChannel, ChannelHandlers, Clock } from '@plait/core';

export interface LinkOptions {
  /** One-way delay in ms. */
  delayMs?: number;
  /** Serialisation rate in bytes per ms (undefined = infinite). */
  bytesPerMs?: number;
  /** write() returns false above this many undelivered bytes. */
  highWaterMark?: number;
}

/** One direction of an in-memory link: ordered, delayed, rate-limited. */
class Direction {
  private busyUntil = 0;
  private pending = 0;
  blackholed = false;
  /** Flip a byte in the next chunk sent (tamper test). */
  corruptNext = false;
  deliver: (chunk: Uint8Array) => void = () => undefined;
  onDrain: () => void = () => undefined;
  constructor(
    private readonly clock: Clock,
    readonly opts: LinkOptions,
  ) {}

  send(chunk: Uint8Array): boolean {
    if (this.blackholed) return true;
    const now = this.clock.now();
    const serial = this.opts.bytesPerMs ? chunk.length / this.opts.bytesPerMs : 0;
    this.busyUntil = Math.max(this.busyUntil, now) + serial;
    const at = this.busyUntil + (this.opts.delayMs ?? 0);
    this.pending += chunk.length;
    const copy = chunk.slice();
    if (this.corruptNext && copy.length > 0) {
      this.corruptNext = false;
      copy[copy.length - 1]! ^= 0x01;
    }
    this.clock.setTimeout(() => {
      this.pending -= copy.length;
      if (!this.blackholed) this.deliver(copy);
      if (this.pending <= this.hwm() && this.wasFull) {
        this.wasFull = false;
        this.onDrain();
      }
    }, at - now);
    if (this.pending > this.hwm()) {
      this.wasFull = true;
      return false;
    }
    return true;
  }
  private wasFull = false;
  private hwm(): number {
    return this.opts.highWaterMark ?? 1 << 20;
  }
}

/** One end of an in-memory link. */
export class MemoryChannel implements ByteChannel {
  private handlers: ChannelHandlers | undefined;
  private early: Uint8Array[] = [];
  private paused = false;
  private held: Uint8Array[] = [];
  closed = false;
  peer!: MemoryChannel;

  constructor(
    private readonly out: Direction,
    readonly localLabel: string,
    readonly remoteLabel: string,
    private readonly clock: Clock,
  ) {}

  setHandlers(h: ChannelHandlers): void {
    this.handlers = h;
    const early = this.early;
    this.early = [];
    for (const c of early) this.receive(c);
  }
  write(data: Uint8Array): boolean {
    if (this.closed) return false;
    return this.out.send(data);
  }
  end(): void {
    this.shutdown();
  }
  destroy(): void {
    this.shutdown();
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    const held = this.held;
    this.held = [];
    for (const c of held) this.receive(c);
  }

  receive(chunk: Uint8Array): void {
    if (this.closed) return;
    if (!this.handlers) this.early.push(chunk);
    else if (this.paused) this.held.push(chunk);
    else this.handlers.data(chunk);
  }
  drained(): void {
    if (!this.closed) this.handlers?.drain();
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close();
    // The peer learns of the close after the link delay, as with a FIN.
    const peer = this.peer;
    this.clock.setTimeout(() => peer.remoteClosed(), this.out.opts.delayMs ?? 0);
  }
  remoteClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close();
  }
}

/** A bidirectional in-memory link with failure injection. */
export class MemoryLink {
  readonly a: MemoryChannel;
  readonly b: MemoryChannel;
  private readonly ab: Direction;
  private readonly ba: Direction;

  constructor(clock: Clock, opts: LinkOptions = {}, name = 'link') {
    this.ab = new Direction(clock, opts);
    this.ba = new Direction(clock, opts);
    this.a = new MemoryChannel(this.ab, `${name}:a`, `${name}:b`, clock);
    this.b = new MemoryChannel(this.ba, `${name}:b`, `${name}:a`, clock);
    this.a.peer = this.b;
    this.b.peer = this.a;
    this.ab.deliver = (c) => this.b.receive(c);
    this.ba.deliver = (c) => this.a.receive(c);
    this.ab.onDrain = () => this.a.drained();
    this.ba.onDrain = () => this.b.drained();
  }

  /** Both ends see the connection close (FIN/RST). */
  cut(): void {
    this.a.remoteClosed();
    this.b.remoteClosed();
  }

  /** Silently drop everything from now on; neither end notices (a dead route). */
  blackhole(): void {
    this.ab.blackholed = true;
    this.ba.blackholed = true;
  }

  /** Flip one bit in the next chunk from a to b (an on-path attacker). */
  tamperNextAtoB(): void {
    this.ab.corruptNext = true;
  }

  restore(): void {
    this.ab.blackholed = false;
    this.ba.blackholed = false;
  }
}
