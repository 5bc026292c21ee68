/**
 * Datagrams over the session (PROTOCOL.md 6.7): the sender's small bounded
 * queue and the receiver's duplicate filter. Datagrams are unreliable and
 * unordered: never retransmitted, never reassembled. The session asks the
 * outbox for queued datagrams ahead of stream data on every pump, so a DNS
 * query or a voice packet waits behind no download.
 */
import { WIRE } from './config.js';
import { Atyp, DatagramFlag, FrameType, type DatagramAtyp, type DatagramFrame } from './frames.js';

/** One UDP payload for a flow, as the application hands it over or receives it. */
export interface Datagram {
  /** Association id, chosen by the client (1..2^32-1). */
  flow: number;
  /** Destination (client -> server) or source (server -> client); RESOLVER = the server's DNS resolver. */
  atyp: DatagramAtyp;
  /** Raw address bytes: 4 (IPv4), 16 (IPv6), the name (domain, 1..255), empty (resolver). */
  addr: Uint8Array;
  /** 1..65535; 0 for the resolver. */
  port: number;
  payload: Uint8Array;
  /** A DNS query that arrived over TCP: the server asks the resolver over TCP too. */
  dnsTcp?: boolean;
}

export interface DatagramLimits {
  datagramQueueCount: number;
  datagramQueueBytes: number;
  datagramMaxAgeMs: number;
}

/** The counters the outbox and the duplicate filter keep (a subset of SESSION_COUNTERS). */
export interface DatagramCounters {
  datagramsDroppedQueueFull: number;
  datagramsDroppedStale: number;
  datagramsDroppedTooLarge: number;
}

/** Why `push` refused a datagram. */
export type PushResult = 'queued' | 'too-large';

/**
 * The sender's datagram queue: at most `datagramQueueCount` datagrams and
 * `datagramQueueBytes` payload bytes, whatever the application offers. When
 * full the oldest is dropped (for voice and DNS the newest matters most);
 * one that waited `datagramMaxAgeMs` (no subflow had room) is dropped as
 * stale. Each gets the next sequence number (u32, wrapping) as it is queued.
 */
export class DatagramOutbox {
  private readonly items: { frame: DatagramFrame; at: number }[] = [];
  private head = 0;
  private bytes = 0;
  private nextSeq = 0;

  constructor(
    private readonly limits: DatagramLimits,
    private readonly counters: DatagramCounters,
  ) {}

  /** Datagrams queued. */
  get length(): number {
    return this.items.length - this.head;
  }

  /** Payload bytes queued. */
  get queuedBytes(): number {
    return this.bytes;
  }

  push(d: Datagram, now: number): PushResult {
    if (d.payload.length > WIRE.DATAGRAM_MAX_PAYLOAD) {
      this.counters.datagramsDroppedTooLarge++;
      return 'too-large';
    }
    while (this.length > 0 && (this.length >= this.limits.datagramQueueCount || this.bytes + d.payload.length > this.limits.datagramQueueBytes)) {
      this.dropHead();
      this.counters.datagramsDroppedQueueFull++;
    }
    const frame: DatagramFrame = {
      type: FrameType.DATAGRAM,
      flags: d.dnsTcp ? DatagramFlag.DNS_TCP : 0,
      flow: d.flow,
      seq: this.nextSeq,
      atyp: d.atyp,
      // Copied (new Uint8Array copies even a Buffer, whose slice() would not):
      // the caller may reuse its buffers once push returns.
      addr: new Uint8Array(d.addr),
      port: d.atyp === Atyp.RESOLVER ? 0 : d.port,
      payload: new Uint8Array(d.payload),
    };
    this.nextSeq = (this.nextSeq + 1) >>> 0;
    this.items.push({ frame, at: now });
    this.bytes += frame.payload.length;
    return 'queued';
  }

  /**
   * Hands queued datagrams to `place`, oldest first, until it refuses one
   * (no subflow has room now): that one and the rest stay queued for the
   * next pump. Stale ones are dropped on the way.
   */
  drain(now: number, place: (f: DatagramFrame) => boolean): void {
    while (this.length > 0) {
      const item = this.items[this.head]!;
      if (now - item.at > this.limits.datagramMaxAgeMs) {
        this.dropHead();
        this.counters.datagramsDroppedStale++;
        continue;
      }
      if (!place(item.frame)) break;
      this.dropHead();
    }
  }

  clear(): void {
    this.items.length = 0;
    this.head = 0;
    this.bytes = 0;
  }

  private dropHead(): void {
    const item = this.items[this.head]!;
    this.bytes -= item.frame.payload.length;
    this.head++;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 64 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
  }
}

/**
 * Which sequence numbers arrived recently (a sliding window of `size`
 * numbers behind the highest seen, as IPsec's anti-replay window), so a
 * duplicated datagram is delivered once. Older numbers cannot be told apart
 * and count as seen. Memory is fixed: one bit per window slot.
 */
export class DedupWindow {
  private readonly bits: Uint32Array;
  private high = -1;

  constructor(private readonly size = 1024) {
    if (size % 32 !== 0 || size < 32) throw new Error('window size must be a multiple of 32');
    this.bits = new Uint32Array(size / 32);
  }

  /** True if `seq` was seen before (or is too old to tell): drop it. Records it otherwise. */
  seen(seq: number): boolean {
    if (this.high < 0) {
      this.high = seq;
      this.set(seq);
      return false;
    }
    // Serial-number arithmetic mod 2^32 (RFC 1982): ahead if within half the space.
    const ahead = (seq - this.high) >>> 0;
    if (ahead !== 0 && ahead < 0x8000_0000) {
      if (ahead >= this.size) this.bits.fill(0);
      else for (let i = 1; i <= ahead; i++) this.clear((this.high + i) >>> 0);
      this.high = seq;
      this.set(seq);
      return false;
    }
    const behind = (this.high - seq) >>> 0;
    if (behind >= this.size) return true;
    if (this.get(seq)) return true;
    this.set(seq);
    return false;
  }

  private slot(seq: number): [number, number] {
    const i = seq % this.size;
    return [i >>> 5, 1 << (i & 31)];
  }
  private get(seq: number): boolean {
    const [w, m] = this.slot(seq);
    return (this.bits[w]! & m) !== 0;
  }
  private set(seq: number): void {
    const [w, m] = this.slot(seq);
    this.bits[w]! |= m;
  }
  private clear(seq: number): void {
    const [w, m] = this.slot(seq);
    this.bits[w]! &= ~m;
  }
}
