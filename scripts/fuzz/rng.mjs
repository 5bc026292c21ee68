// Seeded PRNG and byte helpers for the fuzzer. Every case gets its own
// generator from (seed, layer, index), so a failure is reproducible by seed
// and case index alone.

/** mulberry32: small, fast, good enough for fuzzing. */
function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A 32-bit seed for one case (splitmix-style mixing of the inputs). */
export function caseSeed(seed, layer, index) {
  let h = (seed >>> 0) ^ Math.imul(layer + 1, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h ^= index >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= Math.floor(index / 2 ** 32);
  h = Math.imul(h ^ (h >>> 16), 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}

export class Rng {
  constructor(seed) {
    this.seed = seed >>> 0;
    this.u32 = mulberry32(this.seed);
  }
  /** Integer in [0, n). */
  int(n) {
    return n <= 1 ? 0 : Math.floor((this.u32() / 4294967296) * n);
  }
  /** Integer in [lo, hi]. */
  range(lo, hi) {
    return lo + this.int(hi - lo + 1);
  }
  chance(p) {
    return this.u32() / 4294967296 < p;
  }
  pick(arr) {
    return arr[this.int(arr.length)];
  }
  /** Pick from [[weight, value], ...]. */
  weighted(table) {
    let total = 0;
    for (const [w] of table) total += w;
    let r = this.int(total);
    for (const [w, v] of table) {
      if (r < w) return v;
      r -= w;
    }
    return table[table.length - 1][1];
  }
  /** Mostly small sizes, sometimes large: 0..max with a bias to the low end. */
  size(max) {
    const r = this.int(4);
    if (r === 0) return this.int(Math.min(max, 8) + 1);
    if (r === 1) return this.int(Math.min(max, 64) + 1);
    if (r === 2) return this.int(Math.min(max, 1024) + 1);
    return this.int(max + 1);
  }
  bytes(n) {
    const out = new Uint8Array(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const v = this.u32();
      out[i] = v;
      out[i + 1] = v >>> 8;
      out[i + 2] = v >>> 16;
      out[i + 3] = v >>> 24;
    }
    for (; i < n; i++) out[i] = this.u32();
    return out;
  }
  /** A fresh derived generator (for independent sub-streams). */
  fork() {
    return new Rng(this.u32());
  }
}

export const INTERESTING_U8 = [0, 1, 2, 0x0f, 0x10, 0x7f, 0x80, 0xfe, 0xff];
export const INTERESTING_U16 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x3ff, 0x400, 0x401, 0x3fff, 0x4000, 0x4001, 0x7fff, 0x8000, 0xfffd, 0xfffe, 0xffff];
export const INTERESTING_U32 = [
  0, 1, 2, 3, 4, 15, 16, 17, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x10010, 0x10011, 65551, 65552, 65553,
  0x3ffff, 0x40000, 0x40001, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
];

/** Big-endian writer that accepts any value (lies included). */
export class ByteWriter {
  constructor() {
    this.parts = [];
    this.len = 0;
  }
  u8(v) {
    return this.raw(Uint8Array.of(v & 0xff));
  }
  u16(v) {
    return this.raw(Uint8Array.of((v >>> 8) & 0xff, v & 0xff));
  }
  u32(v) {
    v >>>= 0;
    return this.raw(Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff));
  }
  /** u64 from a non-negative number (exact up to 2^53) or from [hi, lo]. */
  u64(v) {
    if (Array.isArray(v)) return this.u32(v[0]).u32(v[1]);
    return this.u32(Math.floor(v / 2 ** 32)).u32(v % 2 ** 32);
  }
  raw(b) {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }
  bytes() {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

export function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Hex dump (offset, 16 bytes a line, ASCII), cut at `max` bytes. */
export function hexdump(b, max = 1024) {
  const lines = [];
  const n = Math.min(b.length, max);
  for (let i = 0; i < n; i += 16) {
    const row = b.subarray(i, Math.min(i + 16, n));
    const hex = [...row].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const asc = [...row].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    lines.push(`${i.toString(16).padStart(6, '0')}  ${hex.padEnd(47)}  ${asc}`);
  }
  if (b.length > n) lines.push(`... (${b.length - n} more bytes)`);
  return lines.join('\n');
}
