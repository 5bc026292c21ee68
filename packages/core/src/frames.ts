/**
 * Frame codec (PROTOCOL.md section 6). Pure and allocation-light: u64 fields
 * are handled as two u32 halves in plain numbers (values are capped at
 * 2^53 - 1 by the protocol), and decoded DATA payloads are views into the
 * record plaintext.
 */
import { WIRE } from './config.js';
import { type ControlMessage, decodeControl, encodeControl, truncateUtf8 } from './control.js';
import { ErrorCode, PlaitError, ProtocolError } from './errors.js';

export const FrameType = { DATA: 1, ACK: 2, WINDOW: 3, RESET: 4, PING: 5, CONTROL: 6, DATAGRAM: 7 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export type DataFrame = { type: 1; fin: boolean; stream: number; offset: number; payload: Uint8Array };
export type AckFrame = { type: 2; subflow: number; records: number };
export type WindowFrame = { type: 3; finReceived: boolean; stream: number; ackOffset: number; maxOffset: number };
export type ResetFrame = { type: 4; code: number; stream: number; reason: string };
export type PingFrame = { type: 5 };
export type ControlFrame = { type: 6; message: ControlMessage };
/**
 * DATAGRAM (PROTOCOL.md 6.7): one UDP payload for a flow, unreliable. `addr`
 * is the raw address of `atyp` (4 or 16 bytes, or the name's bytes for a
 * domain; empty for the resolver); `port` is 0 for the resolver.
 */
export type DatagramFrame = {
  type: 7;
  flags: number;
  flow: number;
  seq: number;
  atyp: DatagramAtyp;
  addr: Uint8Array;
  port: number;
  payload: Uint8Array;
};
export type Frame = DataFrame | AckFrame | WindowFrame | ResetFrame | PingFrame | ControlFrame | DatagramFrame;

/** DATAGRAM address types (SOCKS5's numbers, plus 0 for the server's DNS resolver). */
export const Atyp = { RESOLVER: 0, IPV4: 1, DOMAIN: 3, IPV6: 4 } as const;
export type DatagramAtyp = (typeof Atyp)[keyof typeof Atyp];
/** DATAGRAM flags: copies may arrive (de-duplicate by seq); a DNS query that came over TCP (ask the resolver over TCP). */
export const DatagramFlag = { DUP: 0x01, DNS_TCP: 0x02 } as const;
/** type, flags, flow u32, seq u32, atyp; then the address, port (not for the resolver), length u16. */
export const DATAGRAM_FIXED_SIZE = 1 + 1 + 4 + 4 + 1 + 2;

export const DATA_HEADER_SIZE = 16;
export const ACK_SIZE = 13;
export const WINDOW_SIZE = 22;
export const RESET_HEADER_SIZE = 7;
export const PING_SIZE = 1;
export const CONTROL_HEADER_SIZE = 3;
export const RESET_REASON_MAX = 255;
const CONTROL_BODY_MAX = 0xffff;
const FLAG_FIN = 0x01;
const TWO32 = 0x1_0000_0000;
/** Largest high half of a u64 that keeps the value <= 2^53 - 1. */
const U64_HI_MAX = 0x1f_ffff;

const utf8Fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Encoded RESET reasons and CONTROL bodies, so frameSize and writeFrame (and
 * retransmissions of the same frame object) encode them once. Frames are
 * treated as immutable values.
 */
const bodyCache = new WeakMap<Frame, Uint8Array>();

function internal(message: string): PlaitError {
  return new PlaitError(ErrorCode.INTERNAL, message);
}

function protocol(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.PROTOCOL, message);
}

// `(v >>> 0) === v` is true exactly for integers 0..2^32-1 (NaN, fractions and negatives fail).
function isU32(v: number): boolean {
  return v >>> 0 === v;
}

function isOffset(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}

function put32(buf: Uint8Array, p: number, v: number): void {
  buf[p] = v >>> 24;
  buf[p + 1] = v >>> 16;
  buf[p + 2] = v >>> 8;
  buf[p + 3] = v;
}

function put64(buf: Uint8Array, p: number, v: number): void {
  put32(buf, p, Math.floor(v / TWO32));
  put32(buf, p + 4, v >>> 0); // ToUint32 is v mod 2^32 for any integer
}

function body(f: ResetFrame | ControlFrame): Uint8Array {
  let b = bodyCache.get(f);
  if (!b) {
    if (f.type === FrameType.RESET) {
      b = truncateUtf8(f.reason, RESET_REASON_MAX);
    } else {
      b = encodeControl(f.message);
      if (b.length > CONTROL_BODY_MAX) throw internal(`CONTROL body of ${b.length} bytes`);
    }
    bodyCache.set(f, b);
  }
  return b;
}

/** Encoded size of a frame, in bytes. */
export function frameSize(f: Frame): number {
  switch (f.type) {
    case FrameType.DATA:
      return DATA_HEADER_SIZE + f.payload.length;
    case FrameType.ACK:
      return ACK_SIZE;
    case FrameType.WINDOW:
      return WINDOW_SIZE;
    case FrameType.RESET:
      return RESET_HEADER_SIZE + body(f).length;
    case FrameType.PING:
      return PING_SIZE;
    case FrameType.CONTROL:
      return CONTROL_HEADER_SIZE + body(f).length;
    case FrameType.DATAGRAM:
      return datagramHeaderSize(f.atyp, f.addr.length) + f.payload.length;
  }
}

/** Encoded size of a DATAGRAM frame's header (everything but the payload). */
export function datagramHeaderSize(atyp: DatagramAtyp, addrLen: number): number {
  switch (atyp) {
    case Atyp.RESOLVER:
      return DATAGRAM_FIXED_SIZE;
    case Atyp.DOMAIN:
      return DATAGRAM_FIXED_SIZE + 1 + addrLen + 2;
    default:
      return DATAGRAM_FIXED_SIZE + addrLen + 2;
  }
}

const ATYP_ADDR_LEN: Record<number, number> = { [Atyp.RESOLVER]: 0, [Atyp.IPV4]: 4, [Atyp.IPV6]: 16 };

function writeDatagram(buf: Uint8Array, pos: number, f: DatagramFrame): number {
  if (!isU32(f.flow) || !isU32(f.seq)) throw internal('invalid DATAGRAM flow or seq');
  if (!Number.isInteger(f.flags) || f.flags < 0 || f.flags > 0xff) throw internal(`invalid DATAGRAM flags ${f.flags}`);
  if (f.payload.length > WIRE.DATAGRAM_MAX_PAYLOAD) throw internal(`DATAGRAM payload of ${f.payload.length} bytes`);
  const fixed = ATYP_ADDR_LEN[f.atyp];
  if (f.atyp === Atyp.DOMAIN ? f.addr.length < 1 || f.addr.length > 255 : fixed !== f.addr.length) {
    throw internal(`invalid DATAGRAM address (type ${f.atyp}, ${f.addr.length} bytes)`);
  }
  if (f.atyp === Atyp.RESOLVER ? f.port !== 0 : !(Number.isInteger(f.port) && f.port >= 1 && f.port <= 0xffff)) {
    throw internal(`invalid DATAGRAM port ${f.port}`);
  }
  const size = datagramHeaderSize(f.atyp, f.addr.length) + f.payload.length;
  if (!(pos >= 0 && pos + size <= buf.length)) throw internal('buffer too small for DATAGRAM');
  let p = pos;
  buf[p++] = FrameType.DATAGRAM;
  buf[p++] = f.flags;
  put32(buf, p, f.flow);
  put32(buf, p + 4, f.seq);
  p += 8;
  buf[p++] = f.atyp;
  if (f.atyp !== Atyp.RESOLVER) {
    if (f.atyp === Atyp.DOMAIN) buf[p++] = f.addr.length;
    buf.set(f.addr, p);
    p += f.addr.length;
    buf[p++] = f.port >>> 8;
    buf[p++] = f.port;
  }
  buf[p++] = f.payload.length >>> 8;
  buf[p++] = f.payload.length;
  buf.set(f.payload, p);
  return p + f.payload.length;
}

/**
 * Writes a DATA header; the caller copies `length` payload bytes right after
 * it (returned position). Checks that the buffer has room for both, because
 * typed-array writes past the end are silently dropped.
 */
export function writeDataHeader(
  buf: Uint8Array,
  pos: number,
  fin: boolean,
  stream: number,
  offset: number,
  length: number,
): number {
  if (!isU32(stream)) throw internal(`invalid stream id ${stream}`);
  if (!isOffset(offset)) throw internal(`invalid offset ${offset}`);
  if (!Number.isInteger(length) || length < 0 || length > WIRE.DATA_MAX_PAYLOAD) throw internal(`invalid DATA length ${length}`);
  if (offset + length > WIRE.MAX_OFFSET) throw internal('DATA end beyond 2^53 - 1');
  if (!(pos >= 0 && pos + DATA_HEADER_SIZE + length <= buf.length)) throw internal('buffer too small for DATA frame');
  buf[pos] = FrameType.DATA;
  buf[pos + 1] = fin ? FLAG_FIN : 0;
  buf[pos + 2] = length >>> 8;
  buf[pos + 3] = length;
  put32(buf, pos + 4, stream);
  put64(buf, pos + 8, offset);
  return pos + DATA_HEADER_SIZE;
}

/** Writes `f` at `pos` (the caller sized `buf` with frameSize); returns the position after it. */
export function writeFrame(buf: Uint8Array, pos: number, f: Frame): number {
  switch (f.type) {
    case FrameType.DATA: {
      const p = writeDataHeader(buf, pos, f.fin, f.stream, f.offset, f.payload.length);
      buf.set(f.payload, p);
      return p + f.payload.length;
    }
    case FrameType.ACK: {
      if (!isU32(f.subflow)) throw internal(`invalid subflow ${f.subflow}`);
      if (!isOffset(f.records)) throw internal(`invalid record count ${f.records}`);
      if (!(pos >= 0 && pos + ACK_SIZE <= buf.length)) throw internal('buffer too small for ACK');
      buf[pos] = FrameType.ACK;
      put32(buf, pos + 1, f.subflow);
      put64(buf, pos + 5, f.records);
      return pos + ACK_SIZE;
    }
    case FrameType.WINDOW: {
      if (!isU32(f.stream)) throw internal(`invalid stream id ${f.stream}`);
      if (!isOffset(f.ackOffset) || !isOffset(f.maxOffset)) throw internal('invalid WINDOW offsets');
      if (!(pos >= 0 && pos + WINDOW_SIZE <= buf.length)) throw internal('buffer too small for WINDOW');
      buf[pos] = FrameType.WINDOW;
      buf[pos + 1] = f.finReceived ? FLAG_FIN : 0;
      put32(buf, pos + 2, f.stream);
      put64(buf, pos + 6, f.ackOffset);
      put64(buf, pos + 14, f.maxOffset);
      return pos + WINDOW_SIZE;
    }
    case FrameType.RESET: {
      if (!isU32(f.stream)) throw internal(`invalid stream id ${f.stream}`);
      if (!Number.isInteger(f.code) || f.code < 0 || f.code > 0xff) throw internal(`invalid RESET code ${f.code}`);
      const reason = body(f);
      if (!(pos >= 0 && pos + RESET_HEADER_SIZE + reason.length <= buf.length)) throw internal('buffer too small for RESET');
      buf[pos] = FrameType.RESET;
      buf[pos + 1] = f.code;
      put32(buf, pos + 2, f.stream);
      buf[pos + 6] = reason.length;
      buf.set(reason, pos + RESET_HEADER_SIZE);
      return pos + RESET_HEADER_SIZE + reason.length;
    }
    case FrameType.PING:
      if (!(pos >= 0 && pos + PING_SIZE <= buf.length)) throw internal('buffer too small for PING');
      buf[pos] = FrameType.PING;
      return pos + PING_SIZE;
    case FrameType.CONTROL: {
      const b = body(f);
      if (!(pos >= 0 && pos + CONTROL_HEADER_SIZE + b.length <= buf.length)) throw internal('buffer too small for CONTROL');
      buf[pos] = FrameType.CONTROL;
      buf[pos + 1] = b.length >>> 8;
      buf[pos + 2] = b.length;
      buf.set(b, pos + CONTROL_HEADER_SIZE);
      return pos + CONTROL_HEADER_SIZE + b.length;
    }
    case FrameType.DATAGRAM:
      return writeDatagram(buf, pos, f);
  }
}

/** Frames concatenated into one new buffer (a record's plaintext). */
export function encodeFrames(frames: Frame[]): Uint8Array {
  let size = 0;
  for (const f of frames) size += frameSize(f);
  const buf = new Uint8Array(size);
  let pos = 0;
  for (const f of frames) pos = writeFrame(buf, pos, f);
  return buf;
}

function truncated(what: string): ProtocolError {
  return protocol(`truncated ${what} frame`);
}

function readU64(dv: DataView, p: number, what: string): number {
  const hi = dv.getUint32(p);
  if (hi > U64_HI_MAX) throw protocol(`${what} above 2^53 - 1`);
  return hi * TWO32 + dv.getUint32(p + 4);
}

/**
 * Decodes a record's plaintext, calling `visit` for each frame in order.
 * DATA payloads are subarrays of `plaintext`, which therefore must not be
 * reused while they are alive. A malformed frame throws
 * ProtocolError(PROTOCOL) after the frames before it were visited; that
 * error ends the session, so the partial visit does no harm. Unknown flag
 * bits are ignored.
 */
export function decodeFrames(plaintext: Uint8Array, visit: (f: Frame) => void): void {
  const end = plaintext.length;
  // "A record's plaintext is one or more whole frames."
  if (end === 0) throw protocol('empty record');
  const dv = new DataView(plaintext.buffer, plaintext.byteOffset, end);
  let p = 0;
  while (p < end) {
    const type = dv.getUint8(p);
    const left = end - p;
    switch (type) {
      case FrameType.DATA: {
        if (left < DATA_HEADER_SIZE) throw truncated('DATA');
        const len = dv.getUint16(p + 2);
        // Checked before anything is sliced or allocated.
        if (len > WIRE.DATA_MAX_PAYLOAD) throw protocol(`DATA length ${len} above ${WIRE.DATA_MAX_PAYLOAD}`);
        if (left - DATA_HEADER_SIZE < len) throw truncated('DATA');
        const fin = (dv.getUint8(p + 1) & FLAG_FIN) !== 0;
        const stream = dv.getUint32(p + 4);
        const offset = readU64(dv, p + 8, 'DATA offset');
        // The final size offset + length must be exact in a double too.
        if (offset + len > WIRE.MAX_OFFSET) throw protocol('DATA end above 2^53 - 1');
        const start = p + DATA_HEADER_SIZE;
        p = start + len;
        visit({ type: FrameType.DATA, fin, stream, offset, payload: plaintext.subarray(start, p) });
        break;
      }
      case FrameType.ACK: {
        if (left < ACK_SIZE) throw truncated('ACK');
        const subflow = dv.getUint32(p + 1);
        const records = readU64(dv, p + 5, 'ACK records');
        p += ACK_SIZE;
        visit({ type: FrameType.ACK, subflow, records });
        break;
      }
      case FrameType.WINDOW: {
        if (left < WINDOW_SIZE) throw truncated('WINDOW');
        const finReceived = (dv.getUint8(p + 1) & FLAG_FIN) !== 0;
        const stream = dv.getUint32(p + 2);
        const ackOffset = readU64(dv, p + 6, 'WINDOW ack_offset');
        const maxOffset = readU64(dv, p + 14, 'WINDOW max_offset');
        p += WINDOW_SIZE;
        visit({ type: FrameType.WINDOW, finReceived, stream, ackOffset, maxOffset });
        break;
      }
      case FrameType.RESET: {
        if (left < RESET_HEADER_SIZE) throw truncated('RESET');
        const code = dv.getUint8(p + 1);
        const stream = dv.getUint32(p + 2);
        const len = dv.getUint8(p + 6);
        if (left - RESET_HEADER_SIZE < len) throw truncated('RESET');
        const start = p + RESET_HEADER_SIZE;
        let reason: string;
        try {
          reason = utf8Fatal.decode(plaintext.subarray(start, start + len));
        } catch {
          throw protocol('RESET reason is not UTF-8');
        }
        p = start + len;
        visit({ type: FrameType.RESET, code, stream, reason });
        break;
      }
      case FrameType.PING:
        p += PING_SIZE;
        visit({ type: FrameType.PING });
        break;
      case FrameType.CONTROL: {
        if (left < CONTROL_HEADER_SIZE) throw truncated('CONTROL');
        const len = dv.getUint16(p + 1);
        if (left - CONTROL_HEADER_SIZE < len) throw truncated('CONTROL');
        const start = p + CONTROL_HEADER_SIZE;
        p = start + len;
        visit({ type: FrameType.CONTROL, message: decodeControl(plaintext.subarray(start, p)) });
        break;
      }
      case FrameType.DATAGRAM: {
        p = readDatagram(plaintext, dv, p, visit);
        break;
      }
      default:
        throw protocol(`unknown frame type 0x${type.toString(16)}`);
    }
  }
}

/** Decodes the DATAGRAM frame at `p`; returns the position after it. */
function readDatagram(plaintext: Uint8Array, dv: DataView, p: number, visit: (f: Frame) => void): number {
  const end = plaintext.length;
  let q = p + 11;
  if (q > end) throw truncated('DATAGRAM');
  const flags = dv.getUint8(p + 1);
  const flow = dv.getUint32(p + 2);
  const seq = dv.getUint32(p + 6);
  const atyp = dv.getUint8(p + 10);
  let addr: Uint8Array;
  let port = 0;
  if (atyp === Atyp.RESOLVER) {
    addr = plaintext.subarray(q, q);
  } else {
    let len: number;
    if (atyp === Atyp.DOMAIN) {
      if (q + 1 > end) throw truncated('DATAGRAM');
      len = dv.getUint8(q++);
      if (len === 0) throw protocol('DATAGRAM with an empty domain name');
    } else if (atyp === Atyp.IPV4 || atyp === Atyp.IPV6) {
      len = ATYP_ADDR_LEN[atyp]!;
    } else {
      throw protocol(`DATAGRAM address type ${atyp}`);
    }
    if (q + len + 2 > end) throw truncated('DATAGRAM');
    addr = plaintext.subarray(q, q + len);
    q += len;
    port = dv.getUint16(q);
    if (port === 0) throw protocol('DATAGRAM port 0');
    q += 2;
  }
  if (q + 2 > end) throw truncated('DATAGRAM');
  const len = dv.getUint16(q);
  if (len > WIRE.DATAGRAM_MAX_PAYLOAD) throw protocol(`DATAGRAM length ${len} above ${WIRE.DATAGRAM_MAX_PAYLOAD}`);
  q += 2;
  if (q + len > end) throw truncated('DATAGRAM');
  visit({ type: FrameType.DATAGRAM, flags, flow, seq, atyp: atyp as DatagramAtyp, addr, port, payload: plaintext.subarray(q, q + len) });
  return q + len;
}
