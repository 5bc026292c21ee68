// Byte-level mutations and hostile MessagePack. All randomness comes from
// the Rng passed in.
import { ByteWriter, concat, INTERESTING_U16, INTERESTING_U32, INTERESTING_U8 } from './rng.mjs';

function setBE(b, pos, width, v) {
  for (let i = width - 1; i >= 0; i--) {
    b[pos + i] = v & 0xff;
    v = Math.floor(v / 256);
  }
}

/**
 * One mutation of `b` (returns a new array; `b` is untouched). `corpus` holds
 * other valid inputs to splice in.
 */
export function mutateOnce(rng, b, corpus = []) {
  const out = b.slice();
  const n = out.length;
  const pos = () => rng.int(Math.max(1, n));
  switch (rng.int(14)) {
    case 0: // bit flip
      if (n) out[pos()] ^= 1 << rng.int(8);
      return out;
    case 1: // interesting byte
      if (n) out[pos()] = rng.pick(INTERESTING_U8);
      return out;
    case 2: // random byte
      if (n) out[pos()] = rng.int(256);
      return out;
    case 3: // interesting u16 (length-field lies)
      if (n >= 2) setBE(out, rng.int(n - 1), 2, rng.pick(INTERESTING_U16));
      return out;
    case 4: // interesting u32
      if (n >= 4) setBE(out, rng.int(n - 3), 4, rng.pick(INTERESTING_U32));
      return out;
    case 5: // truncate
      return out.subarray(0, rng.int(n + 1)).slice();
    case 6: // drop the head
      return out.subarray(rng.int(n + 1)).slice();
    case 7: { // insert random bytes
      const p = rng.int(n + 1);
      return concat([out.subarray(0, p), rng.bytes(rng.size(64)), out.subarray(p)]);
    }
    case 8: { // delete a range
      const p = rng.int(n + 1);
      const q = Math.min(n, p + rng.size(32));
      return concat([out.subarray(0, p), out.subarray(q)]);
    }
    case 9: { // duplicate a range
      const p = rng.int(n + 1);
      const q = Math.min(n, p + rng.size(64));
      return concat([out.subarray(0, q), out.subarray(p, q), out.subarray(q)]);
    }
    case 10: { // splice another input
      if (corpus.length === 0) return out;
      const other = rng.pick(corpus);
      const p = rng.int(n + 1);
      const q = rng.int(other.length + 1);
      return rng.chance(0.5) ? concat([out.subarray(0, p), other.subarray(q)]) : concat([other.subarray(0, q), out.subarray(p)]);
    }
    case 11: // repeat the whole thing
      return concat([out, out]);
    case 12: // append garbage
      return concat([out, rng.bytes(rng.size(256))]);
    default: // zero or 0xff a run
      if (n) out.fill(rng.chance(0.5) ? 0 : 0xff, pos(), Math.min(n, pos() + rng.size(16)));
      return out;
  }
}

/** 1..k mutations (geometric). */
export function mutate(rng, b, corpus) {
  let out = mutateOnce(rng, b, corpus);
  while (rng.chance(0.35)) out = mutateOnce(rng, out, corpus);
  return out;
}

/** Split into chunks at random boundaries (sometimes 1 byte at a time). */
export function chunk(rng, b) {
  if (b.length === 0) return [b];
  const mode = rng.int(4);
  if (mode === 0) return [b];
  // At most ~256 pieces: tiny pieces of a long input cost time and find nothing new.
  const floor = Math.ceil(b.length / 256);
  const out = [];
  let p = 0;
  while (p < b.length) {
    const step = Math.max(floor, mode === 1 ? 1 : mode === 2 ? 1 + rng.int(8) : 1 + rng.size(b.length));
    out.push(b.subarray(p, Math.min(b.length, p + step)));
    p += step;
  }
  return out;
}

// ------------------------------------------------------------ MessagePack

const te = new TextEncoder();

/** str token, with an optional length lie. */
export function mpStr(w, s, rng) {
  const b = typeof s === 'string' ? te.encode(s) : s;
  let len = b.length;
  if (rng && rng.chance(0.03)) len = rng.pick([0, 1, len + 1, len + 100, 0xffff, 0xffffffff]);
  const fmt = rng && rng.chance(0.1) ? rng.int(4) : len < 32 ? 0 : len < 256 ? 1 : len < 65536 ? 2 : 3;
  if (fmt === 0 && len < 32) w.u8(0xa0 | len);
  else if (fmt <= 1 && len < 256) w.u8(0xd9).u8(len);
  else if (fmt <= 2 && len < 65536) w.u8(0xda).u16(len);
  else w.u8(0xdb).u32(len);
  w.raw(b);
  return w;
}

function mpInt(w, rng, v) {
  if (v === undefined) v = rng.pick([0, 1, 80, 443, 65535, 65536, 127, 128, 255, 256, -1, -32, -33, 2 ** 31, 2 ** 32, 2 ** 32 - 1, -(2 ** 31)]);
  const enc = rng.int(4);
  if (v >= 0 && v < 128 && enc === 0) return w.u8(v);
  if (v < 0 && v >= -32 && enc === 0) return w.u8(v & 0xff);
  if (v >= 0) {
    if (v < 256 && enc <= 1) return w.u8(0xcc).u8(v);
    if (v < 65536 && enc <= 2) return w.u8(0xcd).u16(v);
    if (v < 2 ** 32 && enc <= 3) return w.u8(0xce).u32(v);
    return w.u8(0xcf).u64(v);
  }
  if (v >= -128 && enc <= 1) return w.u8(0xd0).u8(v);
  if (v >= -32768 && enc <= 2) return w.u8(0xd1).u16(v);
  if (v >= -(2 ** 31)) return w.u8(0xd2).u32(v);
  return w.u8(0xd3).u32(0xffffffff).u32(v);
}

function mpFloat(w, rng, v) {
  if (v === undefined) v = rng.pick([0, -0, 1.5, 80, 443.0000001, NaN, Infinity, -Infinity, 65535.5, 1e300, 5e-324, 2 ** 53, -1]);
  if (rng.chance(0.5)) {
    const b = new Uint8Array(5);
    b[0] = 0xca;
    new DataView(b.buffer).setFloat32(1, v);
    return w.raw(b);
  }
  const b = new Uint8Array(9);
  b[0] = 0xcb;
  new DataView(b.buffer).setFloat64(1, v);
  return w.raw(b);
}

const EXT_TYPES = [0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xc7, 0xc8, 0xc9];

function mpExt(w, rng) {
  const t = rng.pick(EXT_TYPES);
  // msgpackr's interesting extensions: -1 timestamp, 0x72 record, 0x73 set, 0x65 error, 0x78 regexp, 0x70 ref.
  const extType = rng.pick([0xff, 0x72, 0x73, 0x65, 0x78, 0x70, 0x62, 0x00, 0x74, rng.int(256)]);
  const fixed = { 0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16 }[t];
  if (fixed) return w.u8(t).u8(extType).raw(rng.bytes(fixed));
  const len = rng.size(40);
  if (t === 0xc7) w.u8(t).u8(len);
  else if (t === 0xc8) w.u8(t).u16(len);
  else w.u8(t).u32(len);
  return w.u8(extType).raw(rng.bytes(len));
}

const KEYS = ['t', 'host', 'port', 'subflow', 'addrs', 'code', 'reason', 'backup', 'id', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', 'x'];
const T_VALUES = ['ok', 'close', 'prio', 'unknown', '', 'OK', 'ok\u0000', '__proto__', 'x'.repeat(300)];

/** A random MessagePack value; `depth` bounds recursion (deep nesting is made on purpose). */
export function mpValue(w, rng, depth = 0) {
  const kind = rng.weighted([
    [6, 'int'], [3, 'float'], [5, 'str'], [2, 'nil'], [2, 'bool'], [1, 'bin'], [2, 'array'], [2, 'map'], [1, 'ext'], [1, 'c1'], [1, 'lie'],
  ]);
  switch (kind) {
    case 'int': return mpInt(w, rng);
    case 'float': return mpFloat(w, rng);
    case 'str': {
      const choice = rng.int(6);
      if (choice === 0) return mpStr(w, rng.bytes(rng.size(40)), rng); // random bytes: often not UTF-8
      if (choice === 1) return mpStr(w, 'a'.repeat(rng.pick([255, 256, 1023, 1024, 4000, 60000])), rng);
      if (choice === 2) return mpStr(w, Uint8Array.of(0xed, 0xa0, 0x80), rng); // encoded lone surrogate
      if (choice === 3) return mpStr(w, '\ufeff\u0000é漢😀', rng);
      return mpStr(w, rng.pick(KEYS), rng);
    }
    case 'nil': return w.u8(0xc0);
    case 'bool': return w.u8(rng.chance(0.5) ? 0xc3 : 0xc2);
    case 'bin': {
      const len = rng.size(64);
      const t = rng.int(3);
      if (t === 0) w.u8(0xc4).u8(len);
      else if (t === 1) w.u8(0xc5).u16(len);
      else w.u8(0xc6).u32(rng.chance(0.1) ? 0xffffffff : len);
      return w.raw(rng.bytes(len));
    }
    case 'array': {
      if (depth > 12) return w.u8(0x90);
      const n = rng.size(6);
      const t = rng.int(3);
      if (t === 0 && n < 16) w.u8(0x90 | n);
      else if (t === 1) w.u8(0xdc).u16(rng.chance(0.05) ? 0xffff : n);
      else w.u8(0xdd).u32(rng.chance(0.05) ? 0xffffffff : n);
      for (let i = 0; i < n; i++) mpValue(w, rng, depth + 1);
      return w;
    }
    case 'map': {
      if (depth > 12) return w.u8(0x80);
      return mpMap(w, rng, depth + 1);
    }
    case 'ext': return mpExt(w, rng);
    case 'c1': return w.u8(0xc1);
    default: // a header whose count or length lies
      return w.u8(rng.pick([0xdf, 0xdd, 0xdb, 0xc6, 0xde, 0xdc])).u32(rng.pick(INTERESTING_U32));
  }
}

function mapHeader(w, rng, n) {
  const t = rng.int(4);
  if (t <= 1 && n < 16) return w.u8(0x80 | n);
  if (t === 2) return w.u8(0xde).u16(n);
  return w.u8(0xdf).u32(n);
}

/** A map of random keys and values (duplicate and hostile keys included). */
export function mpMap(w, rng, depth = 0, n = rng.size(6)) {
  mapHeader(w, rng, rng.chance(0.03) ? rng.pick([n + 1, 0xffff, 0xffffffff]) : n);
  for (let i = 0; i < n; i++) {
    if (rng.chance(0.05)) mpValue(w, rng, depth); // non-string key
    else mpStr(w, rng.pick(KEYS), rng);
    mpValue(w, rng, depth);
  }
  return w;
}

/** Deep nesting: map > array > map ... `levels` deep. */
function mpDeep(w, rng, levels) {
  for (let i = 0; i < levels; i++) {
    if (i % 2 === 0) w.u8(0x81).u8(0xa1).u8(0x78);
    else w.u8(0x91);
  }
  return w.u8(0xc0);
}

/** A typed-but-wrong value for a field (wrong types, out-of-range numbers). */
function fieldValue(w, rng, key) {
  if (rng.chance(0.35)) return mpValue(w, rng, 2);
  switch (key) {
    case 'port': return rng.chance(0.5) ? mpInt(w, rng, rng.pick([0, 1, 80, 65535, 65536, -1, 2 ** 32, 2 ** 53 - 1])) : mpFloat(w, rng);
    case 'host': return mpStr(w, rng.pick(['example.com', '', 'a'.repeat(255), 'a'.repeat(256), 'é'.repeat(128), '127.0.0.1', '::1', '\u0000']), rng);
    case 'subflow': return mpInt(w, rng, rng.pick([0, 1, 2, 3, 0xffffffff, 2 ** 32, 2 ** 53 - 1]));
    case 'code': return mpInt(w, rng, rng.pick([0, 1, 9, 10, 14, 15, 16, 255, 256, -1]));
    case 'backup': return w.u8(rng.pick([0xc2, 0xc3, 0xc0, 0x01]));
    case 'reason': return mpStr(w, rng.pick(['', 'bye', 'x'.repeat(300), '\ufeffbom']), rng);
    case 'addrs': {
      const n = rng.size(5);
      w.u8(0x90 | Math.min(n, 15));
      for (let i = 0; i < Math.min(n, 15); i++) {
        if (rng.chance(0.2)) mpValue(w, rng, 3);
        else {
          const keys = ['id', 'host', 'port'].filter(() => rng.chance(0.85));
          if (rng.chance(0.2)) keys.push(rng.pick(KEYS));
          w.u8(0x80 | keys.length);
          for (const k of keys) {
            mpStr(w, k, rng);
            fieldValue(w, rng, k === 'id' ? 'code' : k);
          }
        }
      }
      return w;
    }
    case 't': return mpStr(w, rng.pick(T_VALUES), rng);
    default: return mpValue(w, rng, 2);
  }
}

/** A CONTROL body: mostly plausible maps with hostile details. */
export function controlBody(rng) {
  const w = new ByteWriter();
  const mode = rng.int(10);
  if (mode === 0) return mpMap(w, rng).bytes();
  if (mode === 1) return mpDeep(w, rng, rng.range(6, 12)).bytes();
  if (mode === 2) return mpValue(w, rng).bytes();
  const t = rng.pick(['ok', 'close', 'prio', 'prio', 'close', 'unknown-x']);
  const fields = { ok: ['subflow', 'addrs'], close: ['code', 'reason'], prio: ['subflow', 'backup'] }[t] ?? [];
  const keys = ['t', ...fields.filter(() => rng.chance(0.9))];
  if (rng.chance(0.15)) keys.push(rng.pick(KEYS));
  if (rng.chance(0.05)) keys.push('t'); // duplicate
  mapHeader(w, rng, keys.length);
  for (const k of keys) {
    mpStr(w, k, rng);
    if (k === 't' && rng.chance(0.9)) mpStr(w, t);
    else fieldValue(w, rng, k);
  }
  let b = w.bytes();
  if (rng.chance(0.05)) b = concat([b, rng.bytes(rng.range(1, 4))]); // trailing bytes
  return b;
}

/** A stream header body (the map, without the u16 length). */
export function headerBody(rng, valid) {
  const w = new ByteWriter();
  if (valid) {
    w.u8(0x82);
    mpStr(w, 'host').raw(new Uint8Array(0));
    mpStr(w, rng.pick(['example.com', 'echo.test', '10.0.0.1']));
    mpStr(w, 'port');
    return mpInt(w, rng, rng.pick([80, 443, 7])).bytes();
  }
  const mode = rng.int(6);
  if (mode === 0) return mpMap(w, rng).bytes();
  if (mode === 1) return mpDeep(w, rng, rng.range(6, 12)).bytes();
  if (mode === 2) return mpValue(w, rng).bytes();
  const keys = ['host', 'port'].filter(() => rng.chance(0.85));
  if (rng.chance(0.3)) keys.push(rng.pick(KEYS));
  mapHeader(w, rng, keys.length);
  for (const k of keys) {
    mpStr(w, k, rng);
    fieldValue(w, rng, k);
  }
  return w.bytes();
}
