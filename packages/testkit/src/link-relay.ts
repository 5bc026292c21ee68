/**
 * Root-free link emulator for tests: a TCP relay on loopback that adds one-way
 * delay, a per-direction rate limit and link failures between a plait client
 * and a plait server. One relay per emulated link.
 *
 * Pipeline per direction:
 *   source socket -> rate queue (token bucket) -> delay line -> destination socket
 *
 * Limits of the approach (it terminates TCP, unlike netem):
 *  - The client's kernel gets ACKs from the relay at loopback speed, so the
 *    emulated delay is visible to application-level timing (pings, acks of the
 *    plait protocol) but not to the client's own TCP RTT/cwnd.
 *  - Kernel socket buffers (relay receive buffer + sender's send buffer, both
 *    autotuned up to several MiB on Linux) sit in front of the rate queue, so a
 *    sender that keeps writing into a rate-limited link sees extra queueing
 *    ("bufferbloat") beyond `queueBytes` before its writes block.
 */
import net from 'node:net';
import { realClock, type Clock, type Timer } from '@plait/core';
import { listenEphemeral } from './listen.js';

export type CutMode = 'reset' | 'close' | 'blackhole';

export interface LinkRelayOptions {
  /** Loopback address to listen on. Default 127.0.0.1. */
  listenHost?: string;
  target: { host: string; port: number };
  /** One-way delay applied in each direction, ms. Default 0. */
  delayMs?: number;
  /** Token-bucket rate per direction, bits/s. undefined = unlimited. */
  rateBitsPerSec?: number;
  /**
   * Bound of the rate queue per direction (bytes). When reached, the relay
   * stops reading the source socket (TCP backpressure) instead of dropping.
   * May be exceeded by at most one read chunk (<= 64 KiB). Default 64 KiB.
   */
  queueBytes?: number;
  /**
   * What cut('blackhole') does with data:
   *  - 'drop' (default): everything already queued in the relay and everything
   *    that arrives during the blackhole is read and discarded; senders' writes
   *    keep succeeding. After restore() only data sent after the restore is
   *    forwarded, so a connection that lived through the blackhole has a gap
   *    in its byte stream: treat it as dead (the plait client is expected to
   *    abandon it). FIN/RST seen during the blackhole are forwarded on restore,
   *    as TCP would retransmit them.
   *  - 'hold': the relay stops reading and stops delivering; on restore()
   *    everything resumes losslessly (an outage shorter than TCP's timeout).
   */
  blackhole?: 'drop' | 'hold';
  /** Accept connections only from this source address (others are reset), to pin one local address to one emulated link. */
  allowFrom?: string;
  /**
   * Time for the delay line, the token bucket and the close guard. Default the
   * real clock. A test passes a TestClock to assert on clock time: data then
   * moves through the delay line and the rate limit only as the clock is
   * advanced, while the sockets keep running on real I/O.
   */
  clock?: Clock;
}

export interface LinkRelayStats {
  /** Connections accepted since start. */
  readonly connections: number;
  /** Connections currently tracked (not yet fully closed). */
  readonly active: number;
  /** Bytes forwarded client -> server. */
  readonly bytesUp: number;
  /** Bytes forwarded server -> client. */
  readonly bytesDown: number;
  /** Bytes currently held in rate queues and delay lines (all connections). */
  readonly bufferedBytes: number;
}

export interface LinkRelay {
  readonly port: number;
  readonly host: string;
  /**
   * Cut every current connection:
   *  - 'reset': RST both sides (socket.resetAndDestroy).
   *  - 'close': FIN both sides; queued data is discarded.
   *  - 'blackhole': stop forwarding in both directions but keep the sockets
   *    open (the realistic way a link dies). Stays in effect, also for new
   *    connections, until restore(). See LinkRelayOptions.blackhole.
   * 'reset'/'close' do not change the blackhole state; without a blackhole,
   * new connections after them work normally.
   */
  cut(mode: CutMode): void;
  /**
   * Undo a blackhole: resume forwarding (in 'drop' mode data from during the
   * blackhole is lost, like on a dead link) and accept new connections
   * normally. Connections accepted during the blackhole (which were not yet
   * connected to the target, like a SYN that hangs) now connect.
   */
  restore(): void;
  /** Applies to data arriving from now on; FIFO order is always preserved. */
  setDelay(ms: number): void;
  setRate(bitsPerSec: number | undefined): void;
  /** Live counters. */
  readonly stats: LinkRelayStats;
  close(): Promise<void>;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const DEFAULT_QUEUE_BYTES = 64 * KiB;
/** Delay-line cap when unlimited: lets ~80 MB/s through a 50 ms line. */
const UNLIMITED_DELAY_LINE_BYTES = 4 * MiB;

/** Mutable link parameters shared by every pipe of a relay. */
interface LinkState {
  target: { host: string; port: number };
  delayMs: number;
  rateBps: number | undefined;
  queueBytes: number;
  blackholed: boolean;
  blackholeMode: 'drop' | 'hold';
}

/** Array-backed FIFO with amortised O(1) shift (Array#shift is O(n)). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(v: T): void {
    this.items.push(v);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  replaceHead(v: T): void {
    this.items[this.head] = v;
  }
  shift(): T | undefined {
    const v = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
  forEach(fn: (v: T) => void): void {
    for (let i = this.head; i < this.items.length; i++) fn(this.items[i] as T);
  }
  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/** null marks end-of-stream (FIN), which travels through the pipeline like data. */
type Item = Buffer | null;

function itemLen(item: Item): number {
  return item === null ? 0 : item.length;
}

/** Burst: 10 ms worth of rate, at least 10 full-size packets. */
function burstBytes(rateBps: number): number {
  return Math.max(15_000, (rateBps / 8) * 0.01);
}

/** Smallest split worth a timer wake-up: a packet, or 2 ms worth at high rates. */
function quantumBytes(rateBps: number): number {
  return Math.max(1500, (rateBps / 8) * 0.002);
}

function rst(sock: net.Socket): void {
  if (sock.destroyed) return;
  try {
    sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
}

/** One direction of one connection. */
class Pipe {
  private readonly rateQ = new Fifo<Item>();
  rateQBytes = 0;
  private tokens: number;
  private lastRefill: number;
  private rateTimer: Timer | undefined;

  private readonly delayQ = new Fifo<{ item: Item; at: number }>();
  delayQBytes = 0;
  private delayTimer: Timer | undefined;

  /** dst.write() returned false; wait for 'drain'. */
  private dstBlocked = false;
  private paused = false;
  private dead = false;

  private srcEnded = false;
  private eofQueued = false;
  private eofDelivered = false;

  constructor(
    private readonly link: LinkState,
    private readonly clock: Clock,
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly onForwarded: (n: number) => void,
  ) {
    this.lastRefill = clock.now();
    this.tokens = link.rateBps === undefined ? 0 : burstBytes(link.rateBps);
    dst.on('drain', () => {
      if (this.dead || !this.dstBlocked) return;
      this.dstBlocked = false;
      this.releaseDue();
      this.updateFlow();
    });
  }

  // ---- inputs ----------------------------------------------------------

  onData(buf: Buffer): void {
    if (this.dead) return;
    if (this.link.blackholed && this.link.blackholeMode === 'drop') return; // dead link: lost
    this.enqueue(buf);
    this.updateFlow();
  }

  onEnd(): void {
    if (this.dead) return;
    this.srcEnded = true;
    // In drop mode the FIN is replayed by restore(), like a TCP retransmission.
    if (this.link.blackholed && this.link.blackholeMode === 'drop') return;
    this.enqueue(null);
    this.updateFlow();
  }

  // ---- link control ----------------------------------------------------

  blackhole(): void {
    this.clearTimers();
    if (this.link.blackholeMode === 'drop') this.clearQueues();
    this.updateFlow();
  }

  restore(): void {
    if (this.dead) return;
    const now = this.clock.now();
    // Held data "is retransmitted" once the link is back: it still needs the delay.
    const earliest = now + this.link.delayMs;
    this.delayQ.forEach((e) => {
      if (e.at < earliest) e.at = earliest;
    });
    this.lastRefill = now;
    if (this.srcEnded && !this.eofQueued && !this.eofDelivered) this.enqueue(null);
    this.pumpRate();
    this.scheduleDelay();
    this.updateFlow();
  }

  rateChanged(oldRate: number | undefined): void {
    if (this.dead) return;
    const now = this.clock.now();
    if (oldRate !== undefined) {
      // Account tokens earned at the old rate before switching.
      this.tokens = Math.min(burstBytes(oldRate), this.tokens + (now - this.lastRefill) * (oldRate / 8000));
    }
    this.lastRefill = now;
    const r = this.link.rateBps;
    if (r !== undefined) this.tokens = oldRate === undefined ? burstBytes(r) : Math.min(this.tokens, burstBytes(r));
    if (this.rateTimer) {
      this.rateTimer.cancel();
      this.rateTimer = undefined;
    }
    this.pumpRate();
    this.updateFlow();
  }

  delayChanged(): void {
    this.updateFlow(); // the delay-line cap depends on the delay
  }

  /** Stop everything; optionally keep reading so a pending FIN can be seen. */
  dispose(keepReading: boolean): void {
    this.dead = true;
    this.clearTimers();
    this.clearQueues();
    if (keepReading) this.src.resume();
  }

  // ---- pipeline --------------------------------------------------------

  private get frozen(): boolean {
    return this.dead || this.link.blackholed;
  }

  private enqueue(item: Item): void {
    if (item === null) this.eofQueued = true;
    if (this.link.rateBps === undefined && this.rateQ.length === 0) {
      this.toDelay(item);
    } else {
      this.rateQ.push(item);
      this.rateQBytes += itemLen(item);
      this.pumpRate();
    }
  }

  private refill(rate: number): void {
    const now = this.clock.now();
    this.tokens = Math.min(burstBytes(rate), this.tokens + (now - this.lastRefill) * (rate / 8000));
    this.lastRefill = now;
  }

  private pumpRate(): void {
    if (this.frozen) return;
    const rate = this.link.rateBps;
    if (rate === undefined) {
      while (this.rateQ.length > 0) this.toDelay(this.rateQ.shift() as Item);
      this.rateQBytes = 0;
      return;
    }
    this.refill(rate);
    const quantum = quantumBytes(rate);
    while (this.rateQ.length > 0) {
      const head = this.rateQ.peek() as Item;
      if (head === null) {
        this.rateQ.shift();
        this.toDelay(null);
        continue;
      }
      const n = Math.min(head.length, Math.floor(this.tokens));
      // Avoid dribbling tiny fragments when a send would be a split anyway.
      if (n <= 0 || (n < head.length && n < quantum)) break;
      let piece: Buffer;
      if (n === head.length) {
        this.rateQ.shift();
        piece = head;
      } else {
        piece = head.subarray(0, n);
        this.rateQ.replaceHead(head.subarray(n));
      }
      this.tokens -= n;
      this.rateQBytes -= n;
      this.toDelay(piece);
    }
    if (this.rateQ.length > 0 && !this.rateTimer) {
      const head = this.rateQ.peek() as Buffer; // null heads are consumed above
      const want = Math.min(head.length, quantum);
      const waitMs = Math.max(1, Math.ceil((want - this.tokens) / (rate / 8000)));
      this.rateTimer = this.clock.setTimeout(() => {
        this.rateTimer = undefined;
        this.pumpRate();
        this.updateFlow();
      }, waitMs);
    }
  }

  private toDelay(item: Item): void {
    // Fast path: nothing to wait for and nothing ahead of us.
    if (this.link.delayMs <= 0 && this.delayQ.length === 0 && !this.dstBlocked && !this.frozen) {
      this.deliver(item);
      return;
    }
    this.delayQ.push({ item, at: this.clock.now() + this.link.delayMs });
    this.delayQBytes += itemLen(item);
    this.scheduleDelay();
  }

  /** One timer per direction, armed for the head of the delay line. */
  private scheduleDelay(): void {
    if (this.delayTimer || this.dstBlocked || this.frozen) return;
    const head = this.delayQ.peek();
    if (!head) return;
    const wait = head.at - this.clock.now();
    if (wait <= 0) {
      this.releaseDue();
      return;
    }
    // On the real clock a timer may fire a little early w.r.t. performance.now()
    // (libuv caches loop time); releaseDue re-checks and re-arms, so the delay is
    // never short. (A virtual clock fires exactly; the re-check then passes.)
    this.delayTimer = this.clock.setTimeout(() => {
      this.delayTimer = undefined;
      this.releaseDue();
      this.updateFlow();
    }, Math.ceil(wait));
  }

  private releaseDue(): void {
    const now = this.clock.now();
    while (this.delayQ.length > 0 && !this.dstBlocked && !this.frozen) {
      const head = this.delayQ.peek() as { item: Item; at: number };
      if (head.at > now) break;
      this.delayQ.shift();
      this.delayQBytes -= itemLen(head.item);
      this.deliver(head.item);
    }
    this.scheduleDelay();
  }

  private deliver(item: Item): void {
    if (this.dst.destroyed || this.dst.writableEnded) return; // peer gone; its close handler deals with it
    if (item === null) {
      this.eofDelivered = true;
      this.dst.end();
      return;
    }
    this.onForwarded(item.length);
    if (!this.dst.write(item)) this.dstBlocked = true;
  }

  /** Backpressure: pause the source while anything downstream is over its bound. */
  private updateFlow(): void {
    if (this.dead) return;
    let wantPause: boolean;
    if (this.link.blackholed) {
      wantPause = this.link.blackholeMode === 'hold'; // 'drop' keeps reading to discard
    } else {
      wantPause =
        this.dstBlocked ||
        this.rateQBytes >= this.link.queueBytes ||
        this.delayQBytes >= this.delayLineCap();
    }
    if (wantPause === this.paused) return;
    this.paused = wantPause;
    if (wantPause) this.src.pause();
    else this.src.resume();
  }

  /** rate*delay*2 + 1 MiB: enough to keep the line full, bounded memory. */
  private delayLineCap(): number {
    const r = this.link.rateBps;
    if (r === undefined) return UNLIMITED_DELAY_LINE_BYTES;
    return (r / 8) * (this.link.delayMs / 1000) * 2 + MiB;
  }

  private clearTimers(): void {
    this.rateTimer?.cancel();
    this.delayTimer?.cancel();
    this.rateTimer = undefined;
    this.delayTimer = undefined;
  }

  private clearQueues(): void {
    this.rateQ.clear();
    this.delayQ.clear();
    this.rateQBytes = 0;
    this.delayQBytes = 0;
    if (!this.eofDelivered) this.eofQueued = false;
  }
}

/** A client connection and its upstream connection to the target. */
class Conn {
  readonly upstream: net.Socket;
  readonly up: Pipe;
  readonly down: Pipe;
  private upstreamStarted = false;
  /** 'open' forwards; 'cut' = being torn down by cut(); 'done' = finalised. */
  private state: 'open' | 'cut' | 'done' = 'open';
  /** An RST seen during a blackhole, to be forwarded on restore(). */
  private pendingReset = false;

  constructor(
    private readonly link: LinkState,
    private readonly clock: Clock,
    readonly client: net.Socket,
    counters: { bytesUp: number; bytesDown: number },
    private readonly onDone: (c: Conn) => void,
  ) {
    this.upstream = new net.Socket({ allowHalfOpen: true });
    client.setNoDelay(true); // Nagle would add its own delay on top of ours
    this.up = new Pipe(link, clock, client, this.upstream, (n) => (counters.bytesUp += n));
    this.down = new Pipe(link, clock, this.upstream, client, (n) => (counters.bytesDown += n));

    client.on('data', (d: Buffer) => this.up.onData(d));
    client.on('end', () => this.up.onEnd());
    client.on('error', () => {}); // surfaced via 'close'(hadError)
    client.on('close', (hadError) => this.onSocketClose(this.upstream, hadError));
    this.upstream.on('data', (d: Buffer) => this.down.onData(d));
    this.upstream.on('end', () => this.down.onEnd());
    this.upstream.on('error', () => {});
    this.upstream.on('close', (hadError) => this.onSocketClose(client, hadError));

    // A dead route: the SYN would hang, so don't even contact the target yet.
    if (!link.blackholed) this.startUpstream();
    else {
      this.up.blackhole();
      this.down.blackhole();
    }
  }

  private startUpstream(): void {
    if (this.upstreamStarted) return;
    this.upstreamStarted = true;
    this.upstream.connect({ host: this.link.target.host, port: this.link.target.port });
    this.upstream.setNoDelay(true);
  }

  private onSocketClose(other: net.Socket, hadError: boolean): void {
    if (this.state === 'open' && hadError) {
      // An RST (or refused connect) on one side is forwarded as an RST on the
      // other, unless the link is dead, in which case it is replayed on restore.
      if (this.link.blackholed) this.pendingReset = true;
      else this.resetBoth();
    }
    this.maybeDone();
  }

  private resetBoth(): void {
    this.up.dispose(false);
    this.down.dispose(false);
    rst(this.client);
    if (this.upstreamStarted) rst(this.upstream);
    else this.upstream.destroy();
  }

  private maybeDone(): void {
    if (this.state === 'done') return;
    // A never-started upstream has nothing to wait for.
    if (!this.upstreamStarted && this.client.destroyed && !this.upstream.destroyed) this.upstream.destroy();
    if (!this.client.destroyed || !this.upstream.destroyed) return;
    this.state = 'done';
    this.up.dispose(false);
    this.down.dispose(false);
    this.onDone(this);
  }

  cut(mode: CutMode): void {
    if (this.state !== 'open') return;
    if (mode === 'blackhole') {
      this.up.blackhole();
      this.down.blackhole();
      return;
    }
    this.state = 'cut';
    if (mode === 'reset') {
      this.resetBoth();
      return;
    }
    // 'close': FIN both ways, discard whatever is queued or still arrives, and
    // keep reading so the peers' FINs complete the close.
    this.up.dispose(true);
    this.down.dispose(true);
    this.client.end();
    if (this.upstreamStarted) this.upstream.end();
    else this.upstream.destroy();
    // Peers that never send their FIN must not keep the sockets forever
    // (realClock's timers are unref'd, so this one does not hold the process).
    this.clock.setTimeout(() => {
      this.client.destroy();
      this.upstream.destroy();
    }, 2000);
  }

  restore(): void {
    if (this.state !== 'open') return;
    if (this.pendingReset) {
      this.resetBoth();
      this.maybeDone();
      return;
    }
    if (!this.client.destroyed) this.startUpstream();
    this.up.restore();
    this.down.restore();
  }

  rateChanged(oldRate: number | undefined): void {
    this.up.rateChanged(oldRate);
    this.down.rateChanged(oldRate);
  }

  delayChanged(): void {
    this.up.delayChanged();
    this.down.delayChanged();
  }

  bufferedBytes(): number {
    return this.up.rateQBytes + this.up.delayQBytes + this.down.rateQBytes + this.down.delayQBytes;
  }

  destroy(): void {
    this.up.dispose(false);
    this.down.dispose(false);
    this.client.destroy();
    this.upstream.destroy();
  }
}

function checkDelay(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`delayMs must be a finite number >= 0, got ${ms}`);
  return ms;
}

function checkRate(bps: number | undefined): number | undefined {
  if (bps === undefined) return undefined;
  if (!Number.isFinite(bps) || bps <= 0) throw new RangeError(`rateBitsPerSec must be > 0 or undefined, got ${bps}`);
  return bps;
}

export async function startLinkRelay(opts: LinkRelayOptions): Promise<LinkRelay> {
  const host = opts.listenHost ?? '127.0.0.1';
  // realClock's timers are unref'd; the relay's need no ref: a rate or delay
  // timer is pending only while a tracked connection has data queued, and the
  // listening server keeps the process alive until close() cancels them all.
  const clock = opts.clock ?? realClock;
  const queueBytes = opts.queueBytes ?? DEFAULT_QUEUE_BYTES;
  if (!Number.isFinite(queueBytes) || queueBytes <= 0) throw new RangeError(`queueBytes must be > 0, got ${queueBytes}`);
  const link: LinkState = {
    target: { ...opts.target },
    delayMs: checkDelay(opts.delayMs ?? 0),
    rateBps: checkRate(opts.rateBitsPerSec),
    queueBytes,
    blackholed: false,
    blackholeMode: opts.blackhole ?? 'drop',
  };
  const conns = new Set<Conn>();
  const counters = { connections: 0, bytesUp: 0, bytesDown: 0 };
  let closed = false;

  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    if (closed || (opts.allowFrom !== undefined && sock.remoteAddress !== opts.allowFrom)) {
      sock.resetAndDestroy();
      return;
    }
    counters.connections++;
    conns.add(new Conn(link, clock, sock, counters, (c) => conns.delete(c)));
  });

  const port = await listenEphemeral(server, host);

  const stats: LinkRelayStats = {
    get connections() {
      return counters.connections;
    },
    get active() {
      return conns.size;
    },
    get bytesUp() {
      return counters.bytesUp;
    },
    get bytesDown() {
      return counters.bytesDown;
    },
    get bufferedBytes() {
      let n = 0;
      for (const c of conns) n += c.bufferedBytes();
      return n;
    },
  };

  return {
    port,
    host,
    stats,
    cut(mode: CutMode): void {
      if (mode === 'blackhole') link.blackholed = true;
      for (const c of [...conns]) c.cut(mode);
    },
    restore(): void {
      if (!link.blackholed) return;
      link.blackholed = false;
      for (const c of [...conns]) c.restore();
    },
    setDelay(ms: number): void {
      link.delayMs = checkDelay(ms);
      for (const c of conns) c.delayChanged();
    },
    setRate(bitsPerSec: number | undefined): void {
      const old = link.rateBps;
      link.rateBps = checkRate(bitsPerSec);
      for (const c of conns) c.rateChanged(old);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of [...conns]) c.destroy();
      conns.clear();
      await done;
    },
  };
}
