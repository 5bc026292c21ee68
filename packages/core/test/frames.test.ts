import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WIRE } from '../src/config.js';
import { decodeControl, encodeControl, type ControlMessage } from '../src/control.js';
import { ErrorCode, PlaitError, ProtocolError } from '../src/errors.js';
import {
  DATA_HEADER_SIZE,
  decodeFrames,
  encodeFrames,
  frameSize,
  FrameType,
  writeDataHeader,
  writeFrame,
  type Frame,
} from '../src/frames.js';

const MAX = Number.MAX_SAFE_INTEGER;

// ------------------------------------------------------------------ helpers

function decodeAll(b: Uint8Array): Frame[] {
  const out: Frame[] = [];
  decodeFrames(b, (f) => out.push(f));
  return out;
}

/** Runs fn; returns the error it threw (or fails the test if it did not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an exception');
}

function expectProtocol(fn: () => unknown): ProtocolError {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(ProtocolError);
  expect((e as ProtocolError).code).toBe(ErrorCode.PROTOCOL);
  return e as ProtocolError;
}

function expectInternal(fn: () => unknown): void {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(PlaitError);
  expect((e as PlaitError).code).toBe(ErrorCode.INTERNAL);
}

/** Independent truncation: whole code points while they fit in 255 bytes. */
function refTruncate(s: string): string {
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    // Lone surrogates are written as U+FFFD (3 bytes).
    const isLone = c >= 0xd800 && c <= 0xdfff;
    const n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (bytes + n > 255) break;
    bytes += n;
    out += isLone ? '\ufffd' : ch;
  }
  return out;
}

/** What a frame decodes back to (reasons are truncated / made well-formed). */
function normalize(f: Frame): Frame {
  return f.type === FrameType.RESET ? { ...f, reason: refTruncate(f.reason) } : f;
}

/** Payloads as hex: vitest compares big typed arrays element by element, slowly. */
function canon(fs: Frame[]): unknown[] {
  return fs.map((f) => (f.type === FrameType.DATA ? { ...f, payload: Buffer.from(f.payload).toString('hex') } : f));
}

// ------------------------------------------------------------------ arbitraries

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const offset = fc.oneof(fc.integer({ min: 0, max: 1 << 20 }), fc.maxSafeNat(), fc.constant(MAX));
const PATTERN = Uint8Array.from({ length: WIRE.DATA_MAX_PAYLOAD + 256 }, (_, i) => (i * 31 + (i >> 8)) & 0xff);
const smallPayload = fc.uint8Array({ maxLength: 64 });
const payload = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  {
    weight: 1,
    // Big payloads are cut from a fixed pattern: generating 16 KiB byte by byte is slow.
    arbitrary: fc
      .tuple(fc.constantFrom(1000, WIRE.DATA_MAX_PAYLOAD - 1, WIRE.DATA_MAX_PAYLOAD), fc.nat(255))
      .map(([n, seed]) => PATTERN.slice(seed, seed + n)),
  },
);
const str = fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'grapheme', maxLength: 100 }));
const host = fc.oneof(fc.domain(), fc.ipV4(), fc.string({ unit: 'binary', minLength: 1, maxLength: 60 }));

const controlMsg: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.record({
    t: fc.constant('ok' as const),
    subflow: u32,
    addrs: fc.option(
      fc.array(fc.record({ id: fc.integer({ min: 0, max: 255 }), host, port: fc.integer({ min: 1, max: 65535 }) }), { maxLength: 4 }),
      { nil: undefined },
    ),
  }).map((m) => (m.addrs === undefined ? { t: m.t, subflow: m.subflow } : m)),
  fc.record({ t: fc.constant('close' as const), code: fc.integer({ min: 0, max: 255 }), reason: fc.string({ maxLength: 40 }) }),
  fc.record({ t: fc.constant('prio' as const), subflow: u32, backup: fc.boolean() }),
  fc.record({ t: fc.constant('unknown' as const), name: fc.string({ maxLength: 10 }).filter((s) => !['ok', 'close', 'prio'].includes(s)) }),
);

const frameWith = (payload: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Frame> => fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant(1 as const), fin: fc.boolean(), stream: u32, offset, payload })
      .map((f) => ({ ...f, offset: Math.min(f.offset, MAX - f.payload.length) })) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant(2 as const), subflow: u32, records: offset }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant(3 as const), finReceived: fc.boolean(), stream: u32, ackOffset: offset, maxOffset: offset }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant(4 as const), code: fc.integer({ min: 0, max: 255 }), stream: u32, reason: str }) },
  { weight: 1, arbitrary: fc.constant({ type: 5 as const }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant(6 as const), message: controlMsg }) },
  {
    weight: 1,
    arbitrary: fc
      .record({
        flags: fc.integer({ min: 0, max: 255 }),
        flow: u32,
        seq: u32,
        where: fc.oneof(
          fc.constant({ atyp: 0 as const, addr: new Uint8Array(0), port: 0 }),
          fc.record({ atyp: fc.constant(1 as const), addr: fc.uint8Array({ minLength: 4, maxLength: 4 }), port: fc.integer({ min: 1, max: 65535 }) }),
          fc.record({ atyp: fc.constant(4 as const), addr: fc.uint8Array({ minLength: 16, maxLength: 16 }), port: fc.integer({ min: 1, max: 65535 }) }),
          fc.record({ atyp: fc.constant(3 as const), addr: fc.uint8Array({ minLength: 1, maxLength: 255 }), port: fc.integer({ min: 1, max: 65535 }) }),
        ),
        payload: smallPayload,
      })
      .map(({ where, ...f }): Frame => ({ type: 7 as const, ...f, ...where })),
  },
);
const frame = frameWith(payload);
const frames = fc.array(frame, { minLength: 1, maxLength: 8 });
/** For the byte-by-byte reference decoder, which is slow on 16 KiB payloads. */
const smallFrames = fc.array(frameWith(smallPayload), { minLength: 1, maxLength: 8 });

// ------------------------------------------------------------------ reference decoder

type RefResult = { frames: Frame[]; error: boolean };

/**
 * Deliberately naive: a byte cursor, BigInt for u64, one check per read.
 * Returns the frames decoded before any error, like the visitor sees them.
 */
function refDecode(b: Uint8Array): RefResult {
  const bytes = Array.from(b);
  let i = 0;
  const out: Frame[] = [];
  const take = (n: number): number[] => {
    if (i + n > bytes.length) throw new Error('short');
    const r = bytes.slice(i, i + n);
    i += n;
    return r;
  };
  const uint = (n: number): bigint => take(n).reduce((acc, x) => acc * 256n + BigInt(x), 0n);
  const u64 = (): number => {
    const v = uint(8);
    if (v > BigInt(MAX)) throw new Error('u64 too big');
    return Number(v);
  };
  try {
    if (bytes.length === 0) throw new Error('empty');
    while (i < bytes.length) {
      const type = Number(uint(1));
      if (type === 1) {
        const flags = Number(uint(1));
        const len = Number(uint(2));
        const stream = Number(uint(4));
        const off = u64();
        if (len > 16384) throw new Error('len');
        if (off + len > MAX) throw new Error('end');
        const start = i;
        take(len);
        out.push({ type: 1, fin: (flags & 1) === 1, stream, offset: off, payload: b.slice(start, start + len) });
      } else if (type === 2) {
        const subflow = Number(uint(4));
        out.push({ type: 2, subflow, records: u64() });
      } else if (type === 3) {
        const flags = Number(uint(1));
        const stream = Number(uint(4));
        const ackOffset = u64();
        const maxOffset = u64();
        out.push({ type: 3, finReceived: (flags & 1) === 1, stream, ackOffset, maxOffset });
      } else if (type === 4) {
        const code = Number(uint(1));
        const stream = Number(uint(4));
        const len = Number(uint(1));
        const reason = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Uint8Array.from(take(len)));
        out.push({ type: 4, code, stream, reason });
      } else if (type === 5) {
        out.push({ type: 5 });
      } else if (type === 6) {
        const len = Number(uint(2));
        out.push({ type: 6, message: decodeControl(Uint8Array.from(take(len))) });
      } else if (type === 7) {
        // DATAGRAM (PROTOCOL.md 6.7): atyp 0 = the server's resolver (no address, no port).
        const flags = Number(uint(1));
        const flow = Number(uint(4));
        const seq = Number(uint(4));
        const atyp = Number(uint(1));
        let addr: number[] = [];
        let port = 0;
        if (atyp !== 0) {
          if (atyp === 1) addr = take(4);
          else if (atyp === 4) addr = take(16);
          else if (atyp === 3) {
            const n = Number(uint(1));
            if (n === 0) throw new Error('empty domain');
            addr = take(n);
          } else throw new Error('atyp');
          port = Number(uint(2));
          if (port === 0) throw new Error('port 0');
        }
        const len = Number(uint(2));
        if (len > WIRE.DATAGRAM_MAX_PAYLOAD) throw new Error('datagram len');
        const payload = Uint8Array.from(take(len));
        out.push({ type: 7, flags, flow, seq, atyp: atyp as 0 | 1 | 3 | 4, addr: Uint8Array.from(addr), port, payload });
      } else {
        throw new Error('type');
      }
    }
    return { frames: out, error: false };
  } catch {
    return { frames: out, error: true };
  }
}

function realDecode(b: Uint8Array): RefResult {
  const out: Frame[] = [];
  try {
    decodeFrames(b, (f) => out.push(f));
    return { frames: out, error: false };
  } catch (e) {
    // Anything but a typed PROTOCOL error is a bug (a crash).
    expect(e).toBeInstanceOf(ProtocolError);
    expect((e as ProtocolError).code).toBe(ErrorCode.PROTOCOL);
    return { frames: out, error: true };
  }
}

// ------------------------------------------------------------------ tests

describe('frames: round trip', () => {
  it('decode(encode(frames)) gives the frames back', () => {
    fc.assert(
      fc.property(frames, (fs) => {
        const buf = encodeFrames(fs);
        expect(buf.length).toBe(fs.reduce((n, f) => n + frameSize(f), 0));
        expect(canon(decodeAll(buf))).toEqual(canon(fs.map(normalize)));
      }),
      { numRuns: 1000 },
    );
  });

  it('writeFrame writes exactly frameSize bytes at the given position', () => {
    fc.assert(
      fc.property(frame, fc.nat(10), (f, at) => {
        const size = frameSize(f);
        const buf = new Uint8Array(at + size + 3).fill(0xee);
        expect(writeFrame(buf, at, f)).toBe(at + size);
        expect(buf.subarray(0, at).every((x) => x === 0xee)).toBe(true);
        expect(buf.subarray(at + size).every((x) => x === 0xee)).toBe(true);
        expect(canon(decodeAll(buf.subarray(at, at + size)))).toEqual(canon([normalize(f)]));
      }),
    );
  });

  it('writeDataHeader + copied payload equals writeFrame of the DATA frame', () => {
    fc.assert(
      fc.property(fc.boolean(), u32, offset, fc.uint8Array({ maxLength: 40 }), (fin, stream, off, p) => {
        const o = Math.min(off, MAX - p.length);
        const a = new Uint8Array(DATA_HEADER_SIZE + p.length);
        const pos = writeDataHeader(a, 0, fin, stream, o, p.length);
        expect(pos).toBe(DATA_HEADER_SIZE);
        a.set(p, pos);
        expect(a).toEqual(encodeFrames([{ type: 1, fin, stream, offset: o, payload: p }]));
      }),
    );
  });

  it('uses the exact byte layout of PROTOCOL.md section 6', () => {
    const buf = encodeFrames([
      { type: 1, fin: true, stream: 0x01020304, offset: 0x0005_0607_0809, payload: Uint8Array.of(0xaa, 0xbb) },
      { type: 2, subflow: 7, records: 2 ** 32 + 1 },
      { type: 3, finReceived: true, stream: 9, ackOffset: 1, maxOffset: 262144 },
      { type: 4, code: 2, stream: 3, reason: 'no' },
      { type: 5 },
    ]);
    // prettier-ignore
    expect(Array.from(buf)).toEqual([
      1, 1, 0, 2, 1, 2, 3, 4, 0, 0, 0, 5, 6, 7, 8, 9, 0xaa, 0xbb,
      2, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1,
      3, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 0,
      4, 2, 0, 0, 0, 3, 2, 0x6e, 0x6f,
      5,
    ]);
  });

  it('DATA payload is a zero-copy view of the plaintext', () => {
    const buf = encodeFrames([{ type: 1, fin: false, stream: 1, offset: 0, payload: Uint8Array.of(1, 2, 3) }]);
    const [f] = decodeAll(buf);
    if (f?.type !== FrameType.DATA) throw new Error('not DATA');
    expect(f.payload.buffer).toBe(buf.buffer);
    expect(f.payload.byteOffset).toBe(DATA_HEADER_SIZE);
  });

  it('offsets up to 2^53 - 1 round trip; DATA may end exactly there', () => {
    const fs: Frame[] = [
      { type: 1, fin: true, stream: 0xffffffff, offset: MAX - 5, payload: new Uint8Array(5) },
      { type: 1, fin: true, stream: 1, offset: MAX, payload: new Uint8Array(0) },
      { type: 2, subflow: 0xffffffff, records: MAX },
      { type: 3, finReceived: false, stream: 0, ackOffset: MAX, maxOffset: 2 ** 32 },
    ];
    expect(decodeAll(encodeFrames(fs))).toEqual(fs);
  });

  it('sends lone surrogates in reasons as U+FFFD (valid UTF-8)', () => {
    const [back] = decodeAll(encodeFrames([{ type: 4, code: 1, stream: 1, reason: 'a\ud800b\udc00' }]));
    expect(back).toEqual({ type: 4, code: 1, stream: 1, reason: 'a\ufffdb\ufffd' });
  });

  it('truncates RESET reasons to 255 UTF-8 bytes at a character boundary', () => {
    const cases: [string, number][] = [
      ['a'.repeat(300), 255],
      ['é'.repeat(200), 254], // 2-byte characters: 127 fit
      ['€'.repeat(100), 255], // 3-byte: 85 fit
      ['😀'.repeat(70), 252], // 4-byte: 63 fit
      ['a' + '😀'.repeat(70), 253],
    ];
    for (const [reason, bytes] of cases) {
      const f: Frame = { type: 4, code: 1, stream: 1, reason };
      expect(frameSize(f)).toBe(7 + bytes);
      const [back] = decodeAll(encodeFrames([f]));
      if (back?.type !== FrameType.RESET) throw new Error('not RESET');
      expect(new TextEncoder().encode(back.reason).length).toBe(bytes);
      expect(reason.startsWith(back.reason)).toBe(true);
    }
  });
});

describe('frames: hostile input', () => {
  it('every truncated prefix of a valid encoding is a typed error (or the whole frames before it)', () => {
    fc.assert(
      fc.property(frames, (fs) => {
        const buf = encodeFrames(fs);
        const boundaries = new Map<number, number>(); // byte length -> frames
        let n = 0;
        fs.forEach((f, k) => boundaries.set((n += frameSize(f)), k + 1));
        // A 16 KiB DATA frame has 16 K prefixes: sample those, test all others.
        const step = Math.max(1, Math.floor(buf.length / 600));
        for (let len = 0; len < buf.length; len += len < 64 ? 1 : step) {
          // A view: the bytes after it exist in memory and must not be read.
          const prefix = buf.subarray(0, len);
          const whole = boundaries.get(len);
          if (whole !== undefined) expect(canon(decodeAll(prefix))).toEqual(canon(fs.slice(0, whole).map(normalize)));
          else expectProtocol(() => decodeAll(prefix));
        }
        // And right before each boundary, the worst case for an off-by-one.
        for (const b of boundaries.keys()) {
          if (!boundaries.has(b - 1)) expectProtocol(() => decodeAll(buf.subarray(0, b - 1)));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('random garbage is valid frames or a typed error, matching the reference decoder', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (b) => {
        expect(realDecode(b)).toEqual(refDecode(b));
      }),
      { numRuns: 3000 },
    );
  });

  it('mutated valid encodings match the reference decoder', () => {
    fc.assert(
      fc.property(
        smallFrames,
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (fs, flips, cutSeed) => {
          const buf = encodeFrames(fs);
          for (const [at, v] of flips) buf[at % buf.length] = v;
          const cut = buf.subarray(0, buf.length - (cutSeed % 3 === 0 ? cutSeed % Math.min(buf.length, 20) : 0));
          expect(realDecode(cut)).toEqual(refDecode(cut));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('refuses a DATA length above 16384 even when the bytes are present', () => {
    for (const len of [WIRE.DATA_MAX_PAYLOAD + 1, 0xffff]) {
      const header = Uint8Array.of(1, 0, len >>> 8, len & 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0);
      let visited = 0;
      // Header alone: must fail on the length, not wait for / slice the payload.
      const e = expectProtocol(() => decodeFrames(header, () => visited++));
      expect(e.message).toMatch(/length/);
      const full = new Uint8Array(DATA_HEADER_SIZE + len);
      full.set(header);
      expectProtocol(() => decodeFrames(full, () => visited++));
      expect(visited).toBe(0);
    }
    // The limit itself is accepted.
    const ok = new Uint8Array(DATA_HEADER_SIZE + WIRE.DATA_MAX_PAYLOAD);
    ok.set([1, 0, 0x40, 0x00]);
    expect(decodeAll(ok)).toHaveLength(1);
  });

  it('refuses u64 values above 2^53 - 1', () => {
    const data = (hi: number, lo: number, len: number): Uint8Array => {
      const b = new Uint8Array(DATA_HEADER_SIZE + len);
      const dv = new DataView(b.buffer);
      b[0] = 1;
      dv.setUint16(2, len);
      dv.setUint32(8, hi);
      dv.setUint32(12, lo);
      return b;
    };
    expect(decodeAll(data(0x1fffff, 0xffffffff, 0))).toHaveLength(1);
    expectProtocol(() => decodeAll(data(0x200000, 0, 0)));
    expectProtocol(() => decodeAll(data(0xffffffff, 0xffffffff, 0)));
    // offset + length past 2^53 - 1: the final size would not be exact.
    expectProtocol(() => decodeAll(data(0x1fffff, 0xffffffff, 1)));

    const ack = (hi: number): Uint8Array => {
      const b = new Uint8Array(13);
      b[0] = 2;
      new DataView(b.buffer).setUint32(5, hi);
      return b;
    };
    expect(decodeAll(ack(0x1fffff))).toHaveLength(1);
    expectProtocol(() => decodeAll(ack(0x200000)));

    const win = (ackHi: number, maxHi: number): Uint8Array => {
      const b = new Uint8Array(22);
      b[0] = 3;
      new DataView(b.buffer).setUint32(6, ackHi);
      new DataView(b.buffer).setUint32(14, maxHi);
      return b;
    };
    expect(decodeAll(win(0x1fffff, 0x1fffff))).toHaveLength(1);
    expectProtocol(() => decodeAll(win(0x200000, 0)));
    expectProtocol(() => decodeAll(win(0, 0x200000)));
  });

  it('refuses unknown types, empty records, bad UTF-8 and reason overruns', () => {
    for (const t of [0, 7, 0x80, 0xff]) expectProtocol(() => decodeAll(Uint8Array.of(t)));
    expectProtocol(() => decodeAll(Uint8Array.of(5, 5, 9))); // good frames, then an unknown type
    expectProtocol(() => decodeAll(new Uint8Array(0)));
    expectProtocol(() => decodeAll(Uint8Array.of(4, 1, 0, 0, 0, 1, 2, 0xc3, 0x28))); // invalid UTF-8
    expectProtocol(() => decodeAll(Uint8Array.of(4, 1, 0, 0, 0, 1, 1, 0xed))); // lone lead byte
    expectProtocol(() => decodeAll(Uint8Array.of(4, 1, 0, 0, 0, 1, 3, 0xed, 0xa0, 0x80))); // encoded surrogate
    expectProtocol(() => decodeAll(Uint8Array.of(4, 1, 0, 0, 0, 1, 3, 0x61, 0x62))); // reason_len overrun
    expect(decodeAll(Uint8Array.of(4, 1, 0, 0, 0, 1, 2, 0xc3, 0xa9))).toEqual([{ type: 4, code: 1, stream: 1, reason: 'é' }]);
    expectProtocol(() => decodeAll(Uint8Array.of(6, 0, 0))); // empty CONTROL body is not a map
    const prio = encodeControl({ t: 'prio', subflow: 1, backup: true });
    expect(decodeAll(Uint8Array.of(6, 0, prio.length, ...prio))).toHaveLength(1);
    expectProtocol(() => decodeAll(Uint8Array.of(6, 0, prio.length + 1, ...prio))); // CONTROL length overrun
    expectProtocol(() => decodeAll(Uint8Array.of(6, 0, 1, 0x80))); // a map without t
  });

  it('ignores unknown flag bits', () => {
    const b = encodeFrames([{ type: 1, fin: false, stream: 1, offset: 0, payload: new Uint8Array(0) }]);
    b[1] = 0xfe;
    expect(decodeAll(b)).toEqual([{ type: 1, fin: false, stream: 1, offset: 0, payload: new Uint8Array(0) }]);
    b[1] = 0xff;
    expect(decodeAll(b)).toEqual([{ type: 1, fin: true, stream: 1, offset: 0, payload: new Uint8Array(0) }]);
  });
});

describe('frames: encoder refuses what it cannot write', () => {
  it('invalid field values are INTERNAL errors, not silently wrapped bytes', () => {
    const p = new Uint8Array(0);
    const bad: Frame[] = [
      { type: 1, fin: false, stream: -1, offset: 0, payload: p },
      { type: 1, fin: false, stream: 2 ** 32, offset: 0, payload: p },
      { type: 1, fin: false, stream: 1, offset: 1.5, payload: p },
      { type: 1, fin: false, stream: 1, offset: MAX + 1, payload: p },
      { type: 1, fin: false, stream: 1, offset: MAX, payload: new Uint8Array(1) },
      { type: 1, fin: false, stream: 1, offset: 0, payload: new Uint8Array(WIRE.DATA_MAX_PAYLOAD + 1) },
      { type: 2, subflow: 1, records: -1 },
      { type: 3, finReceived: false, stream: 1, ackOffset: 0, maxOffset: NaN },
      { type: 4, code: 256, stream: 1, reason: '' },
      { type: 6, message: { t: 'ok', subflow: -1 } },
    ];
    for (const f of bad) expectInternal(() => encodeFrames([f]));
  });

  it('a buffer too small is an error, not a silent short write', () => {
    const f: Frame = { type: 3, finReceived: false, stream: 1, ackOffset: 0, maxOffset: 0 };
    expectInternal(() => writeFrame(new Uint8Array(frameSize(f) - 1), 0, f));
    expectInternal(() => writeFrame(new Uint8Array(frameSize(f)), 1, f));
    expectInternal(() => writeDataHeader(new Uint8Array(DATA_HEADER_SIZE + 9), 0, false, 1, 0, 10));
    expectInternal(() => writeFrame(new Uint8Array(0), 0, { type: 5 }));
  });
});
