/**
 * CONTROL messages (PROTOCOL.md section 6.6) and stream headers (section 7).
 * Both are MessagePack maps read from the network, so decoding is two-step:
 * a strict structural scan of our own first (bounds, types, depth), and only
 * then msgpackr. The scan is what makes msgpackr safe on untrusted bytes: it
 * refuses every extension type (msgpackr's records, structured-clone
 * references, bundled strings, Error/RegExp constructors all live there),
 * walks every element so no count can exceed the input (msgpackr
 * preallocates `new Array(count)`), bounds nesting depth, and refuses
 * non-string, `__proto__` and duplicate keys and invalid UTF-8.
 */
import { Packr } from 'msgpackr';
import { ByteQueue } from './byte-queue.js';
import { WIRE } from './config.js';
import { ErrorCode, PlaitError, ProtocolError } from './errors.js';
import { isSubflowRole, roleBackupBit, type SubflowRole } from './roles.js';

export interface PeerAddr {
  id: number;
  host: string;
  port: number;
}

export type ControlMessage =
  /** `instance`: the server instance holding the session (plait server --instance-id), for JOINs to name. */
  | { t: 'ok'; subflow: number; addrs?: PeerAddr[]; dgram?: number; instance?: number }
  /** The client ended datagram flow `flow` (PROTOCOL.md 6.7). */
  | { t: 'uclose'; flow: number }
  | { t: 'close'; code: number; reason: string }
  /**
   * MP_PRIO: the sender changed a subflow's role. `role` (absent from older
   * senders) wins over `backup`; `seq` (also optional) orders the changes.
   */
  | { t: 'prio'; subflow: number; backup: boolean; role?: SubflowRole; seq?: number }
  /**
   * The client's scheduler choice for both directions (PROTOCOL.md 6.6
   * `sched`): its name and the target ports whose streams are latency class.
   */
  | { t: 'sched'; name: string; ports?: number[] }
  /** Client -> server: publish server port `port` to this client (PROTOCOL.md 7.1, like ssh -R). */
  | { t: 'pub'; port: number }
  /** Server -> client: the state of the publication of `port` (PublishCode; 0 = the server listens). */
  | { t: 'pubst'; port: number; code: number; reason: string }
  /** A `t` this implementation does not know: receivers ignore it (forward compatibility). */
  | { t: 'unknown'; name: string };

/** Longest scheduler name and most latency ports a `sched` may carry. */
export const SCHED_NAME_MAX = 64;
export const SCHED_PORTS_MAX = 64;

export interface OpenHeader {
  host: string;
  port: number;
}

/**
 * The header of a server-opened stream (PROTOCOL.md 7.1): it names a
 * publication by its server port, never a destination; the client connects
 * to the target its own --publish flag gave that port. `from` (informative,
 * for logs) is the address the inbound connection came from.
 */
export interface InboundHeader {
  pub: number;
  from?: string;
}

/** What an opener's header may be: a target (client-opened) or a publication (server-opened). */
export type StreamOpen = OpenHeader | InboundHeader;

export function isInboundHeader(h: StreamOpen): h is InboundHeader {
  return 'pub' in h;
}

/** Publication states a `pubst` carries (PROTOCOL.md 7.1). A code this version does not know means "not published". */
export const PublishCode = {
  /** The server listens on the port for this session. */
  OPEN: 0,
  /** The port is not listed for this user (or no longer, after a reload). */
  NOT_ALLOWED: 1,
  /** Another user's session, or another program on the server, holds the port. */
  IN_USE: 2,
  /** The session already has the most publications the server allows. */
  LIMIT: 3,
  /** The server could not listen on the port for another reason (permission, address). */
  FAILED: 4,
  /** A newer session of the same user took the port over. */
  TAKEN: 5,
} as const;
export type PublishCode = (typeof PublishCode)[keyof typeof PublishCode];

const PUBLISH_NAMES: Record<number, string> = { 0: 'OPEN', 1: 'NOT_ALLOWED', 2: 'IN_USE', 3: 'LIMIT', 4: 'FAILED', 5: 'TAKEN' };
export function publishCodeName(code: number): string {
  return PUBLISH_NAMES[code] ?? `CODE_${code}`;
}

/** Longest `pubst` reason we send (the wire allows more; we accept up to CLOSE_REASON_MAX bytes too). */
export const PUBLISH_REASON_MAX = 255;

/** Longest `close` reason we send, like RESET's (the wire allows more; we accept more). */
export const CLOSE_REASON_MAX = 255;
/** Nesting allowed in a received map; our messages need 3 (map > array > map). */
const MAX_DEPTH = 8;
const KNOWN_T = new Set(['ok', 'close', 'prio', 'uclose', 'sched', 'pub', 'pubst']);

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  // Non-minimal integer encodings from other implementations stay numbers;
  // the range checks below reject anything that does not fit.
  int64AsType: 'number',
  // A bin value in an unknown field must not pin the record buffer.
  copyBuffers: true,
  structuredClone: false,
  bundleStrings: false,
  moreTypes: false,
});

const utf8Encoder = new TextEncoder();
const utf8Fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function protocol(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.PROTOCOL, message);
}

function internal(message: string): PlaitError {
  return new PlaitError(ErrorCode.INTERNAL, message);
}

// ---------------------------------------------------------------- UTF-8 helpers

/** UTF-8 bytes of `s`, cut to at most `max` bytes at a character boundary. */
export function truncateUtf8(s: string, max: number): Uint8Array {
  const b = utf8Encoder.encode(s);
  if (b.length <= max) return b;
  let cut = max;
  // b[cut] is the first byte dropped; if it continues a character, drop that
  // character's earlier bytes too.
  while (cut > 0 && ((b[cut] ?? 0) & 0xc0) === 0x80) cut--;
  return b.subarray(0, cut);
}

/** UTF-8 length without encoding; lone surrogates count as U+FFFD (3 bytes) like TextEncoder. */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

// Unpaired surrogates cannot be encoded as UTF-8; msgpackr would write them
// as invalid bytes that a strict peer (us included) refuses.
const LONE_SURROGATE = /\p{Surrogate}/u;

/** host: 1..255 UTF-8 bytes (the SOCKS5 limit; identical to characters for DNS names and IP literals). */
function isHost(v: unknown): v is string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 255) return false;
  return utf8Length(v) <= 255 && !LONE_SURROGATE.test(v);
}

function isSchedName(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= SCHED_NAME_MAX && utf8Length(v) <= SCHED_NAME_MAX && !LONE_SURROGATE.test(v);
}

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

function isU8(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff;
}

function isU16(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

function isU32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

// ---------------------------------------------------------------- strict scan

const PROTO_BYTES = utf8Encoder.encode('__proto__');

class Scanner {
  private readonly dv: DataView;
  private readonly end: number;
  constructor(private readonly b: Uint8Array) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.end = b.length;
  }

  private need(p: number, n: number): void {
    if (this.end - p < n) throw protocol('truncated MessagePack');
  }

  /** Checks a string's bytes; returns it decoded (for key comparisons). */
  private str(p: number, len: number): string {
    this.need(p, len);
    try {
      return utf8Fatal.decode(this.b.subarray(p, p + len));
    } catch {
      throw protocol('MessagePack string is not UTF-8');
    }
  }

  private isProto(p: number, len: number): boolean {
    if (len !== PROTO_BYTES.length) return false;
    for (let i = 0; i < len; i++) if (this.b[p + i] !== PROTO_BYTES[i]) return false;
    return true;
  }

  /** Returns [string length, header size] if a str token starts at p. */
  private strHeader(p: number): [number, number] | undefined {
    this.need(p, 1);
    const t = this.dv.getUint8(p);
    if (t >= 0xa0 && t <= 0xbf) return [t & 0x1f, 1];
    if (t === 0xd9) return (this.need(p, 2), [this.dv.getUint8(p + 1), 2]);
    if (t === 0xda) return (this.need(p, 3), [this.dv.getUint16(p + 1), 3]);
    if (t === 0xdb) return (this.need(p, 5), [this.dv.getUint32(p + 1), 5]);
    return undefined;
  }

  // No separate count check: every element takes at least one byte, so a
  // count larger than the input fails this walk on truncation before
  // msgpackr (which preallocates `new Array(count)`) ever sees it.
  private array(p: number, count: number, depth: number): number {
    for (let i = 0; i < count; i++) p = this.value(p, depth);
    return p;
  }

  private map(p: number, count: number, depth: number): number {
    const keys = new Set<string>();
    for (let i = 0; i < count; i++) {
      const h = this.strHeader(p);
      if (!h) throw protocol('MessagePack map key is not a string');
      const [len, hs] = h;
      const start = p + hs;
      const key = this.str(start, len);
      // msgpackr would rename it; refusing is simpler to reason about.
      if (this.isProto(start, len)) throw protocol('MessagePack key __proto__');
      // First-wins vs last-wins differs between implementations: refuse.
      if (keys.has(key)) throw protocol(`duplicate MessagePack key ${JSON.stringify(key)}`);
      keys.add(key);
      p = this.value(start + len, depth);
    }
    return p;
  }

  /** Validates one value at p; returns the position after it. */
  value(p: number, depth: number): number {
    this.need(p, 1);
    const t = this.dv.getUint8(p);
    if (t <= 0x7f || t >= 0xe0) return p + 1; // fixint
    const s = this.strHeader(p);
    if (s) {
      const [len, hs] = s;
      this.str(p + hs, len);
      return p + hs + len;
    }
    const isMap = t <= 0x8f || t === 0xde || t === 0xdf;
    const isArray = (t >= 0x90 && t <= 0x9f) || t === 0xdc || t === 0xdd;
    if ((isMap || isArray) && depth >= MAX_DEPTH) throw protocol('MessagePack nested too deeply');
    p++;
    if (t <= 0x8f) return this.map(p, t & 0x0f, depth + 1);
    if (t <= 0x9f) return this.array(p, t & 0x0f, depth + 1);
    switch (t) {
      case 0xc0: // nil
      case 0xc2: // false
      case 0xc3: // true
        return p;
      case 0xc4: return (this.need(p, 1), this.skip(p + 1, this.dv.getUint8(p))); // bin 8
      case 0xc5: return (this.need(p, 2), this.skip(p + 2, this.dv.getUint16(p))); // bin 16
      case 0xc6: return (this.need(p, 4), this.skip(p + 4, this.dv.getUint32(p))); // bin 32
      case 0xcc: case 0xd0: return this.skip(p, 1); // (u)int 8
      case 0xcd: case 0xd1: return this.skip(p, 2); // (u)int 16
      case 0xce: case 0xd2: return this.skip(p, 4); // (u)int 32
      case 0xcf: case 0xd3: return this.skip(p, 8); // (u)int 64
      // No field is fractional; a float port 80.0 would pass an integer
      // check after decoding, so floats are refused at the wire type.
      case 0xca: case 0xcb: throw protocol('MessagePack floats are not allowed');
      case 0xdc: return (this.need(p, 2), this.array(p + 2, this.dv.getUint16(p), depth + 1));
      case 0xdd: return (this.need(p, 4), this.array(p + 4, this.dv.getUint32(p), depth + 1));
      case 0xde: return (this.need(p, 2), this.map(p + 2, this.dv.getUint16(p), depth + 1));
      case 0xdf: return (this.need(p, 4), this.map(p + 4, this.dv.getUint32(p), depth + 1));
      default:
        // 0xc1 (never used) and every ext type (0xc7-0xc9, 0xd4-0xd8).
        throw protocol(`MessagePack type 0x${t.toString(16)} not allowed`);
    }
  }

  private skip(p: number, n: number): number {
    this.need(p, n);
    return p + n;
  }
}

/** Decodes untrusted bytes that must hold exactly one MessagePack map. */
function decodeMap(body: Uint8Array, what: string): Record<string, unknown> {
  if (body.length === 0) throw protocol(`empty ${what}`);
  const t = body[0] ?? 0;
  if (!((t >= 0x80 && t <= 0x8f) || t === 0xde || t === 0xdf)) throw protocol(`${what} is not a MessagePack map`);
  const end = new Scanner(body).value(0, 0);
  if (end !== body.length) throw protocol(`trailing bytes after ${what}`);
  let v: unknown;
  try {
    v = packr.unpack(body);
  } catch (e) {
    // Unreachable after the scan, but msgpackr errors must not escape untyped.
    throw protocol(`bad MessagePack in ${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) {
    throw protocol(`${what} is not a MessagePack map`);
  }
  return v as Record<string, unknown>;
}

function own(o: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(o, k) ? o[k] : undefined;
}

function pack(value: Record<string, unknown>): Uint8Array {
  return packr.pack(value);
}

// ---------------------------------------------------------------- CONTROL

/** An `addrs` host: an IPv6 literal is written bare (`::1`), never in brackets. */
function isAddrHost(v: unknown): v is string {
  return isHost(v) && !v.startsWith('[');
}

function checkAddr(a: PeerAddr): PeerAddr {
  if (!isU8(a.id) || !isAddrHost(a.host) || !isPort(a.port)) throw internal(`invalid addr ${JSON.stringify(a)}`);
  return { id: a.id, host: a.host, port: a.port };
}

/** MessagePack body of a CONTROL frame. Invalid fields are a programming error (INTERNAL). */
export function encodeControl(m: ControlMessage): Uint8Array {
  switch (m.t) {
    case 'ok': {
      if (!isU32(m.subflow)) throw internal(`invalid subflow ${m.subflow}`);
      const o: Record<string, unknown> = { t: 'ok', subflow: m.subflow };
      if (m.addrs !== undefined) {
        o.addrs = m.addrs.map(checkAddr);
      }
      if (m.dgram !== undefined) {
        if (!isU32(m.dgram)) throw internal(`invalid dgram ${m.dgram}`);
        o.dgram = m.dgram;
      }
      if (m.instance !== undefined) {
        if (!isU16(m.instance)) throw internal(`invalid instance ${m.instance}`);
        o.instance = m.instance;
      }
      return pack(o);
    }
    case 'close': {
      if (!isU8(m.code)) throw internal(`invalid close code ${m.code}`);
      // Round trip through bytes so lone surrogates become U+FFFD and the cut is whole characters.
      const reason = utf8Fatal.decode(truncateUtf8(m.reason, CLOSE_REASON_MAX));
      return pack({ t: 'close', code: m.code, reason });
    }
    case 'prio': {
      if (!isU32(m.subflow)) throw internal(`invalid subflow ${m.subflow}`);
      if (typeof m.backup !== 'boolean') throw internal('invalid backup flag');
      const o: Record<string, unknown> = { t: 'prio', subflow: m.subflow, backup: m.backup };
      if (m.role !== undefined) {
        // An older receiver reads only `backup`: it must say what the role means to it.
        if (!isSubflowRole(m.role) || roleBackupBit(m.role) !== m.backup) throw internal(`invalid role ${String(m.role)} with backup ${m.backup}`);
        o.role = m.role;
      }
      if (m.seq !== undefined) {
        if (!isU32(m.seq)) throw internal(`invalid prio seq ${m.seq}`);
        o.seq = m.seq;
      }
      return pack(o);
    }
    case 'uclose':
      if (!isU32(m.flow)) throw internal(`invalid flow ${m.flow}`);
      return pack({ t: 'uclose', flow: m.flow });
    case 'sched': {
      if (!isSchedName(m.name)) throw internal(`invalid scheduler name ${JSON.stringify(m.name)}`);
      const o: Record<string, unknown> = { t: 'sched', name: m.name };
      if (m.ports !== undefined) {
        if (m.ports.length > SCHED_PORTS_MAX || !m.ports.every(isPort)) throw internal(`invalid latency ports ${JSON.stringify(m.ports)}`);
        o.ports = m.ports;
      }
      return pack(o);
    }
    case 'pub':
      if (!isPort(m.port)) throw internal(`invalid publish port ${m.port}`);
      return pack({ t: 'pub', port: m.port });
    case 'pubst': {
      if (!isPort(m.port)) throw internal(`invalid publish port ${m.port}`);
      if (!isU8(m.code)) throw internal(`invalid publish code ${m.code}`);
      const reason = utf8Fatal.decode(truncateUtf8(m.reason, PUBLISH_REASON_MAX));
      return pack({ t: 'pubst', port: m.port, code: m.code, reason });
    }
    case 'unknown':
      // Lets tests (and future versions) send a message old receivers must ignore.
      if (typeof m.name !== 'string' || KNOWN_T.has(m.name) || LONE_SURROGATE.test(m.name)) {
        throw internal(`invalid unknown control name ${JSON.stringify(m.name)}`);
      }
      return pack({ t: m.name });
  }
}

/** Parses a CONTROL body; anything malformed or mistyped is ProtocolError(PROTOCOL). */
export function decodeControl(body: Uint8Array): ControlMessage {
  const m = decodeMap(body, 'CONTROL');
  const t = own(m, 't');
  if (typeof t !== 'string') throw protocol('CONTROL without a string t');
  switch (t) {
    case 'ok': {
      const subflow = own(m, 'subflow');
      if (!isU32(subflow)) throw protocol('CONTROL ok: bad subflow');
      const dgramRaw = own(m, 'dgram');
      if (dgramRaw !== undefined && dgramRaw !== null && !isU32(dgramRaw)) throw protocol('CONTROL ok: bad dgram');
      const dgram = dgramRaw === undefined || dgramRaw === null ? {} : { dgram: dgramRaw };
      const raw = own(m, 'addrs');
      const inst = own(m, 'instance');
      let instance: number | undefined;
      if (inst !== undefined && inst !== null) {
        if (!isU16(inst)) throw protocol('CONTROL ok: bad instance');
        instance = inst;
      }
      const withInstance = instance !== undefined ? { instance } : {};
      // nil is accepted as "absent": encoders in other languages write empty optionals that way.
      if (raw === undefined || raw === null) return { t: 'ok', subflow, ...dgram, ...withInstance };
      if (!Array.isArray(raw)) throw protocol('CONTROL ok: addrs is not an array');
      const addrs: PeerAddr[] = [];
      for (const a of raw as unknown[]) {
        if (typeof a !== 'object' || a === null || Array.isArray(a)) throw protocol('CONTROL ok: addr is not a map');
        const rec = a as Record<string, unknown>;
        const id = own(rec, 'id');
        const host = own(rec, 'host');
        const port = own(rec, 'port');
        if (!isU8(id) || !isAddrHost(host) || !isPort(port)) throw protocol('CONTROL ok: bad addr');
        addrs.push({ id, host, port });
      }
      return { t: 'ok', subflow, addrs, ...dgram, ...withInstance };
    }
    case 'close': {
      const code = own(m, 'code');
      const reason = own(m, 'reason');
      if (!isU8(code)) throw protocol('CONTROL close: bad code');
      if (typeof reason !== 'string') throw protocol('CONTROL close: bad reason');
      return { t: 'close', code, reason };
    }
    case 'prio': {
      const subflow = own(m, 'subflow');
      const backup = own(m, 'backup');
      if (!isU32(subflow)) throw protocol('CONTROL prio: bad subflow');
      if (typeof backup !== 'boolean') throw protocol('CONTROL prio: bad backup');
      const out: ControlMessage = { t: 'prio', subflow, backup };
      // A role this version does not know (a later one's) is absent: `backup` then says what to do.
      const role = own(m, 'role');
      if (role !== undefined && role !== null && typeof role !== 'string') throw protocol('CONTROL prio: bad role');
      if (isSubflowRole(role)) out.role = role;
      const seq = own(m, 'seq');
      if (seq !== undefined && seq !== null) {
        if (!isU32(seq)) throw protocol('CONTROL prio: bad seq');
        out.seq = seq;
      }
      return out;
    }
    case 'uclose': {
      const flow = own(m, 'flow');
      if (!isU32(flow)) throw protocol('CONTROL uclose: bad flow');
      return { t: 'uclose', flow };
    }
    case 'sched': {
      const name = own(m, 'name');
      if (!isSchedName(name)) throw protocol('CONTROL sched: bad name');
      const raw = own(m, 'ports');
      if (raw === undefined || raw === null) return { t: 'sched', name };
      if (!Array.isArray(raw) || raw.length > SCHED_PORTS_MAX) throw protocol('CONTROL sched: ports is not an array of at most 64');
      const ports: number[] = [];
      for (const p of raw as unknown[]) {
        if (!isPort(p)) throw protocol('CONTROL sched: bad port');
        ports.push(p);
      }
      return { t: 'sched', name, ports };
    }
    case 'pub': {
      const port = own(m, 'port');
      if (!isPort(port)) throw protocol('CONTROL pub: bad port');
      return { t: 'pub', port };
    }
    case 'pubst': {
      const port = own(m, 'port');
      const code = own(m, 'code');
      const reason = own(m, 'reason');
      if (!isPort(port)) throw protocol('CONTROL pubst: bad port');
      if (!isU8(code)) throw protocol('CONTROL pubst: bad code');
      // A reason is informative: absent or nil reads as empty, a long one is cut for the log.
      if (reason !== undefined && reason !== null && typeof reason !== 'string') throw protocol('CONTROL pubst: bad reason');
      const text = typeof reason === 'string' ? utf8Fatal.decode(truncateUtf8(reason, PUBLISH_REASON_MAX)) : '';
      return { t: 'pubst', port, code, reason: text };
    }
    default:
      return { t: 'unknown', name: t };
  }
}

// ---------------------------------------------------------------- stream headers

/**
 * `u16 length | MessagePack map`. `{}` is the acceptor's reply. A host or port
 * that parseOpenHeader would refuse is ProtocolError(PROTOCOL) here too, so a
 * bad target is caught before it is sent.
 */
export function encodeStreamHeader(h: StreamOpen | Record<string, never>): Uint8Array {
  let body: Uint8Array;
  if ('pub' in h) {
    const { pub, from } = parseInboundHeader({ ...h });
    body = pack(from !== undefined ? { pub, from } : { pub });
  } else if ('host' in h || 'port' in h) {
    const { host, port } = parseOpenHeader({ ...h });
    body = pack({ host, port });
  } else {
    body = pack({});
  }
  // Cannot trigger for valid headers (host <= 255 bytes); guards future fields.
  if (body.length > WIRE.STREAM_HEADER_MAX) throw protocol('stream header too large');
  const out = new Uint8Array(2 + body.length);
  out[0] = body.length >>> 8;
  out[1] = body.length & 0xff;
  out.set(body, 2);
  return out;
}

/**
 * Reads the header at the start of a stream direction from the chunks as
 * they arrive, and hands back the bytes after it. One-shot: after it has
 * returned a header (or thrown), further pushes are an INTERNAL error.
 */
export class StreamHeaderReader {
  private readonly queue = new ByteQueue();
  /** Body length once both length bytes are in, else -1. */
  private len = -1;
  private finished = false;

  push(chunk: Uint8Array): { header: Record<string, unknown>; rest: Uint8Array } | undefined {
    if (this.finished) throw internal('StreamHeaderReader used after the header');
    const q = this.queue;
    q.push(chunk);
    if (this.len < 0) {
      if (q.length < 2) return undefined;
      this.len = q.readUInt16BE(0);
      if (this.len === 0 || this.len > WIRE.STREAM_HEADER_MAX) {
        this.finished = true;
        q.clear();
        throw protocol(`stream header length ${this.len}`);
      }
      q.skip(2);
    }
    if (q.length < this.len) return undefined;
    this.finished = true;
    // Common case: the whole header is in this chunk and is decoded in place (a view, no copy).
    const body = q.consume(this.len);
    // Earlier chunks went wholly into the header, so the rest lies in this chunk: a view.
    const rest = q.consume(q.length);
    return { header: decodeMap(body, 'stream header'), rest };
  }
}

/** The opener's header: `host` 1..255 UTF-8 bytes, `port` 1..65535; other keys are ignored. */
export function parseOpenHeader(h: Record<string, unknown>): OpenHeader {
  const host = own(h, 'host');
  const port = own(h, 'port');
  if (!isHost(host)) throw protocol('stream header: bad host');
  if (!isPort(port)) throw protocol('stream header: bad port');
  return { host, port };
}

/**
 * A server-opened stream's header: `pub` the publication's server port
 * (1..65535), `from` optional, 1..255 UTF-8 bytes (informative); other keys
 * are ignored.
 */
export function parseInboundHeader(h: Record<string, unknown>): InboundHeader {
  const pub = own(h, 'pub');
  const from = own(h, 'from');
  if (!isPort(pub)) throw protocol('stream header: bad pub');
  if (from === undefined || from === null) return { pub };
  if (!isHost(from)) throw protocol('stream header: bad from');
  return { pub, from };
}
