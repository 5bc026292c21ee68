import { createCipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WIRE } from '../src/config.js';
import { ErrorCode, PlaitError, ProtocolError } from '../src/errors.js';
import { RECORD_OVERHEAD, RecordOpener, RecordSealer } from '../src/record.js';

const KEY = new Uint8Array(32).fill(0x42);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Independent reference: section 5 with node:crypto directly. */
function referenceSeal(key: Uint8Array, counter: bigint, pt: Uint8Array): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(pt.length + 16);
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(counter, 4);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(header);
  return Buffer.concat([header, c.update(pt), c.final(), c.getAuthTag()]);
}

function expectCode(fn: () => unknown, code: ErrorCode, cls: typeof PlaitError = PlaitError): PlaitError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(cls);
    expect((e as PlaitError).code).toBe(code);
    return e as PlaitError;
  }
  return expect.unreachable('expected an error');
}

function drain(o: RecordOpener): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let m = o.next(); m; m = o.next()) out.push(m);
  return out;
}

describe('RecordSealer', () => {
  it('produces the section 5 format (checked against node:crypto)', () => {
    const s = new RecordSealer(KEY);
    const a = s.seal(new TextEncoder().encode('hello'));
    const b = s.seal(Uint8Array.of(1, 2, 3));
    expect(hex(a)).toBe(hex(referenceSeal(KEY, 0n, new TextEncoder().encode('hello'))));
    expect(hex(b)).toBe(hex(referenceSeal(KEY, 1n, Uint8Array.of(1, 2, 3))));
    expect(hex(a.subarray(0, 4))).toBe('00000015');
    expect(a.length).toBe(5 + RECORD_OVERHEAD);
    expect(s.counter).toBe(2);
  });

  it('pins a literal vector', () => {
    expect(hex(new RecordSealer(KEY).seal(new TextEncoder().encode('hello')))).toBe(PINNED_HELLO);
  });

  it('writes the high word of the counter into the nonce', () => {
    const s = new RecordSealer(KEY);
    (s as unknown as { count: number }).count = 2 ** 32 + 5;
    expect(hex(s.seal(Uint8Array.of(9)))).toBe(hex(referenceSeal(KEY, 2n ** 32n + 5n, Uint8Array.of(9))));
  });

  it('sealParts equals seal of the concatenation', () => {
    const parts = [randomBytes(10), new Uint8Array(0), randomBytes(3000), randomBytes(1)];
    const x = new RecordSealer(KEY).sealParts(parts);
    const y = new RecordSealer(KEY).seal(Buffer.concat(parts));
    expect(hex(x)).toBe(hex(y));
  });

  it('accepts 1..65536 plaintext bytes only', () => {
    const s = new RecordSealer(KEY);
    expect(s.seal(new Uint8Array(WIRE.RECORD_MAX_PLAINTEXT)).length).toBe(65536 + 20);
    expectCode(() => s.seal(new Uint8Array(WIRE.RECORD_MAX_PLAINTEXT + 1)), ErrorCode.INTERNAL);
    expectCode(() => s.seal(new Uint8Array(0)), ErrorCode.INTERNAL);
    expectCode(() => s.sealParts([]), ErrorCode.INTERNAL);
    expect(s.counter).toBe(1); // refused records use no counter value
    expectCode(() => new RecordSealer(new Uint8Array(16)), ErrorCode.INTERNAL);
  });

  it('refuses to reach counter 2^40', () => {
    const s = new RecordSealer(KEY);
    (s as unknown as { count: number }).count = 2 ** 40 - 1;
    expect(s.exhausted).toBe(false);
    s.seal(Uint8Array.of(1));
    expect(s.exhausted).toBe(true);
    expectCode(() => s.seal(Uint8Array.of(1)), ErrorCode.LIMIT);
  });

  it('copies the key', () => {
    const k = KEY.slice();
    const s = new RecordSealer(k);
    k.fill(0);
    expect(hex(s.seal(Uint8Array.of(1)))).toBe(hex(referenceSeal(KEY, 0n, Uint8Array.of(1))));
  });
});

describe('RecordOpener', () => {
  it('round-trips any records under any chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            { weight: 8, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 300 }) },
            { weight: 1, arbitrary: fc.integer({ min: 1, max: 65536 }).map((n) => randomBytes(n)) },
          ),
          { minLength: 1, maxLength: 8 },
        ),
        fc.array(fc.nat(), { maxLength: 30 }),
        (pts, cuts) => {
          const key = randomBytes(32);
          const s = new RecordSealer(key);
          const wire = Buffer.concat(pts.map((p) => s.seal(p)));
          const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
          const o = new RecordOpener(key);
          const got: Uint8Array[] = [];
          let prev = 0;
          for (const p of [...points, wire.length]) {
            o.push(wire.subarray(prev, p));
            prev = p;
            got.push(...drain(o));
          }
          expect(got.length).toBe(pts.length);
          got.forEach((g, i) => expect(Buffer.from(g).equals(Buffer.from(pts[i] as Uint8Array))).toBe(true));
          expect(o.counter).toBe(pts.length);
          expect(o.buffered).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('works byte by byte', () => {
    const s = new RecordSealer(KEY);
    const wire = Buffer.concat([s.seal(Uint8Array.of(1, 2)), s.seal(randomBytes(100))]);
    const o = new RecordOpener(KEY);
    const got: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i++) {
      o.push(wire.subarray(i, i + 1));
      got.push(...drain(o));
    }
    expect(got.map((g) => g.length)).toEqual([2, 100]);
  });

  it('any flipped byte -> DECRYPT_FAILED (or BAD_MESSAGE for a length out of range), never plaintext', () => {
    const pt = randomBytes(64);
    const rec = new RecordSealer(KEY).seal(pt);
    for (let i = 0; i < rec.length; i++) {
      const bad = Buffer.from(rec);
      bad[i] = (bad[i] ?? 0) ^ 0x80;
      const o = new RecordOpener(KEY);
      o.push(bad);
      o.push(new Uint8Array(70_000)); // so a length that grew can still complete
      try {
        const m = o.next();
        expect.unreachable(`byte ${i}: got ${m ? 'plaintext' : 'nothing'}`);
      } catch (e) {
        expect(e).toBeInstanceOf(PlaitError);
        const code = (e as PlaitError).code;
        if (i < 4) expect([ErrorCode.BAD_MESSAGE, ErrorCode.DECRYPT_FAILED]).toContain(code);
        else expect(code).toBe(ErrorCode.DECRYPT_FAILED);
      }
      // The opener stays failed.
      expect(() => o.next()).toThrow(PlaitError);
    }
  });

  it('reordered, dropped or cross-direction records -> DECRYPT_FAILED', () => {
    const s = new RecordSealer(KEY);
    const r0 = s.seal(Uint8Array.of(0));
    const r1 = s.seal(Uint8Array.of(1));
    let o = new RecordOpener(KEY);
    o.push(r1);
    expectCode(() => o.next(), ErrorCode.DECRYPT_FAILED);
    o = new RecordOpener(KEY);
    o.push(r0);
    o.push(r0);
    expect(o.next()).toBeDefined();
    expectCode(() => o.next(), ErrorCode.DECRYPT_FAILED);
    o = new RecordOpener(new Uint8Array(32).fill(0x43));
    o.push(r0);
    expectCode(() => o.next(), ErrorCode.DECRYPT_FAILED);
  });

  it('refuses a bad length from the 4 header bytes alone', () => {
    for (const len of [0, 1, 16, 65553, 0x7fffffff, 0xffffffff]) {
      const o = new RecordOpener(KEY);
      const h = Buffer.alloc(4);
      h.writeUInt32BE(len);
      o.push(h);
      const e = expectCode(() => o.next(), ErrorCode.BAD_MESSAGE, ProtocolError);
      expect(e.message).toMatch(String(len));
    }
    // A smaller configured maximum is enforced too.
    const o = new RecordOpener(KEY, 1000);
    o.push(Uint8Array.of(0, 0, 0x03, 0xf9)); // 1017 = 1001 + 16
    expectCode(() => o.next(), ErrorCode.BAD_MESSAGE);
    const ok = new RecordOpener(KEY, 1000);
    ok.push(new RecordSealer(KEY).seal(new Uint8Array(1000)));
    expect(ok.next()?.length).toBe(1000);
    expectCode(() => new RecordOpener(KEY, 65537), ErrorCode.INTERNAL);
  });

  it('waits (undefined) on a partial record and accepts the 65536-byte maximum', () => {
    const rec = new RecordSealer(KEY).seal(randomBytes(65536));
    const o = new RecordOpener(KEY);
    o.push(rec.subarray(0, 3));
    expect(o.next()).toBeUndefined();
    o.push(rec.subarray(3, rec.length - 1));
    expect(o.next()).toBeUndefined();
    expect(o.buffered).toBe(rec.length - 1);
    o.push(rec.subarray(rec.length - 1));
    expect(o.next()?.length).toBe(65536);
    expect(o.next()).toBeUndefined();
  });

  it('counts records per direction independently', () => {
    const c2s = randomBytes(32);
    const s2c = randomBytes(32);
    const up = new RecordSealer(c2s);
    const down = new RecordSealer(s2c);
    const upO = new RecordOpener(c2s);
    const downO = new RecordOpener(s2c);
    for (let i = 0; i < 3; i++) upO.push(up.seal(Uint8Array.of(i)));
    downO.push(down.seal(Uint8Array.of(9)));
    expect(drain(upO).map((m) => m[0])).toEqual([0, 1, 2]);
    expect(drain(downO).map((m) => m[0])).toEqual([9]);
    expect([up.counter, upO.counter, down.counter, downO.counter]).toEqual([3, 3, 1, 1]);
  });

  // Throughput is a figure for scripts/bench-cipher.mjs, not a timed test: this one checks the volume path.
  it('opens 64 MiB of records pushed in MSS-sized chunks, every byte in order', () => {
    const key = randomBytes(32);
    const s = new RecordSealer(key);
    const o = new RecordOpener(key);
    const pt = randomBytes(65536);
    const total = 64 * 1024 * 1024;
    let opened = 0;
    let intact = true;
    for (let sent = 0; sent < total; sent += pt.length) {
      pt.writeUInt32BE(sent, 0); // each record's own marker: a dropped, repeated or swapped record shows
      const rec = s.seal(pt);
      for (let i = 0; i < rec.length; i += 1460) o.push(rec.subarray(i, i + 1460));
      for (let m = o.next(); m; m = o.next()) {
        intact &&= m.length === pt.length && Buffer.from(m.buffer, m.byteOffset, m.byteLength).equals(pt);
        opened += m.length;
      }
    }
    expect(opened).toBe(total);
    expect(intact).toBe(true);
  });
});

// AES-256-GCM(key = 0x42 * 32, nonce = 0^12, aad = 00000015, "hello"), length-prefixed.
const PINNED_HELLO = '00000015' + '9cd79395333aa307993492b1f5d80d4a325bd72c15';

describe('RecordSealer.recycle', () => {
  const pt = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

  it('reuses the newest record once it is handed back, and the records still open', () => {
    const sealer = new RecordSealer(KEY);
    const opener = new RecordOpener(KEY);
    const a = sealer.seal(pt(20000, 1));
    opener.push(Uint8Array.from(a)); // the wire copy, as a socket would have sent it
    RecordSealer.recycle(a);
    const b = sealer.seal(pt(20000, 2));
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset).toBe(a.byteOffset);
    opener.push(Uint8Array.from(b));
    expect(hex(opener.next()!)).toBe(hex(pt(20000, 1)));
    expect(hex(opener.next()!)).toBe(hex(pt(20000, 2)));
  });

  it('never hands out memory still held by a newer record', () => {
    const sealer = new RecordSealer(KEY);
    const a = sealer.seal(pt(20000, 1));
    const b = sealer.seal(pt(20000, 2));
    const bCopy = Uint8Array.from(b);
    RecordSealer.recycle(a); // not the newest: ignored
    RecordSealer.recycle(a);
    const c = sealer.seal(pt(20000, 3));
    const overlaps = c.buffer === b.buffer && c.byteOffset < b.byteOffset + b.length && b.byteOffset < c.byteOffset + c.length;
    expect(overlaps).toBe(false);
    expect(hex(b)).toBe(hex(bCopy));
    RecordSealer.recycle(c);
    const d = sealer.seal(pt(20000, 4)); // takes c's memory
    const e = sealer.seal(pt(20000, 5)); // must not take it too
    expect(d.byteOffset === e.byteOffset && d.buffer === e.buffer).toBe(false);
  });
});
