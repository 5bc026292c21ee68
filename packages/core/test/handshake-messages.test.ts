import { truncateUtf8 } from '../src/control.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, PlaitError, ProtocolError } from '../src/errors.js';
import {
  BODY_SIZE,
  decodeBody,
  encodeHandshake,
  encodeReject,
  HandshakeReader,
  MsgType,
  startsWithReject,
  type HandshakeFields,
  type HandshakeMessage,
} from '../src/handshake-messages.js';

const b = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const byte = fc.integer({ min: 0, max: 255 });
const flags = fc.constantFrom(0, 1);

/** REJECT reasons that survive the 200-byte limit unchanged. */
const reason = fc.string({ unit: 'grapheme', maxLength: 60 }).filter((s) => new TextEncoder().encode(s).length <= 200);

const arbFields: fc.Arbitrary<HandshakeFields> = fc.oneof(
  fc.record({
    type: fc.constant(MsgType.HELLO),
    version: fc.constant(1),
    flags,
    addrId: byte,
    timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    nonce: b(32),
    ephemeral: b(32),
    mac: b(32),
  }),
  fc.record({ type: fc.constant(MsgType.HELLO_ACK), nonce: b(32), ephemeral: b(32), mac: b(32) }),
  fc.record({ type: fc.constant(MsgType.JOIN), version: fc.constant(1), flags, addrId: byte, token: b(16), rA: b(32) }),
  fc.record({ type: fc.constant(MsgType.JOIN_ACK), rB: b(32), hmacB: b(8) }),
  fc.record({ type: fc.constant(MsgType.JOIN_CONFIRM), hmacA: b(32) }),
  fc.record({ type: fc.constant(MsgType.REJECT), code: byte, reason }),
);

/** Compare a decoded message with the fields it was encoded from. */
function expectSame(got: HandshakeMessage | undefined, want: HandshakeFields): void {
  expect(got).toBeDefined();
  const { body, ...fields } = got as HandshakeMessage;
  const norm = (o: object) =>
    Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v]));
  expect(norm(fields)).toEqual(norm(want));
  expect(Buffer.from(body).equals(Buffer.from(encodeHandshake(want).subarray(3)))).toBe(true);
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

function readAll(r: HandshakeReader, n: number): HandshakeMessage[] {
  const out: HandshakeMessage[] = [];
  for (let i = 0; i < n; i++) {
    const m = r.next();
    if (!m) break;
    out.push(m);
  }
  return out;
}

function expectCode(fn: () => unknown, code: ErrorCode): ProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    expect((e as ProtocolError).code).toBe(code);
    return e as ProtocolError;
  }
  return expect.unreachable('expected a ProtocolError');
}

describe('encodeHandshake', () => {
  it('writes the section 3 layout (HELLO)', () => {
    const enc = encodeHandshake({
      type: MsgType.HELLO,
      version: 1,
      flags: 1,
      addrId: 7,
      timestamp: 0x0102_0304_0506,
      nonce: new Uint8Array(32).fill(0xaa),
      ephemeral: new Uint8Array(32).fill(0xbb),
      mac: new Uint8Array(32).fill(0xcc),
    });
    expect(enc.length).toBe(3 + 107);
    expect(Buffer.from(enc.subarray(0, 14)).toString('hex')).toBe('01006b' + '010107' + '0000010203040506');
    expect(enc[14]).toBe(0xaa);
    expect(enc[3 + 43]).toBe(0xbb);
    expect(enc[3 + 75]).toBe(0xcc);
    expect(enc[3 + 106]).toBe(0xcc);
  });

  it('sizes match the table', () => {
    const z = (n: number) => new Uint8Array(n);
    expect(encodeHandshake({ type: MsgType.HELLO_ACK, nonce: z(32), ephemeral: z(32), mac: z(32) }).length).toBe(3 + BODY_SIZE.HELLO_ACK);
    expect(encodeHandshake({ type: MsgType.JOIN, version: 1, flags: 0, addrId: 0, token: z(16), rA: z(32) }).length).toBe(3 + 51);
    expect(encodeHandshake({ type: MsgType.JOIN_ACK, rB: z(32), hmacB: z(8) }).length).toBe(3 + 40);
    expect(encodeHandshake({ type: MsgType.JOIN_CONFIRM, hmacA: z(32) }).length).toBe(3 + 32);
    expect(Buffer.from(encodeReject(5, 'no')).toString('hex')).toBe('0f0004' + '05' + '02' + '6e6f');
  });

  it('refuses fields of the wrong size or range (our own bug, INTERNAL)', () => {
    const z = (n: number) => new Uint8Array(n);
    for (const bad of [
      () => encodeHandshake({ type: MsgType.JOIN_ACK, rB: z(31), hmacB: z(8) }),
      () => encodeHandshake({ type: MsgType.JOIN, version: 1, flags: 0, addrId: 256, token: z(16), rA: z(32) }),
      () =>
        encodeHandshake({ type: MsgType.HELLO, version: 1, flags: 0, addrId: 0, timestamp: -1, nonce: z(32), ephemeral: z(32), mac: z(32) }),
    ]) {
      try {
        bad();
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(PlaitError);
        expect((e as PlaitError).code).toBe(ErrorCode.INTERNAL);
      }
    }
  });

  it('truncates REJECT reasons to 200 bytes on a character boundary', () => {
    const long = 'é'.repeat(150); // 300 bytes, 2 per char
    const enc = encodeReject(3, long);
    expect(enc.length).toBe(3 + 2 + 200);
    const r = new HandshakeReader();
    r.push(enc);
    const m = r.next();
    expect(m?.type).toBe(MsgType.REJECT);
    if (m?.type === MsgType.REJECT) expect(m.reason).toBe('é'.repeat(100));
    // An odd limit must back up over the split character.
    expect(truncateUtf8('aé', 2).length).toBe(1);
    expect(truncateUtf8('a✓', 3).length).toBe(1);
    expect(truncateUtf8('a✓', 4).length).toBe(4);
  });
});

describe('HandshakeReader', () => {
  it('round-trips every message type (property)', () => {
    fc.assert(
      fc.property(arbFields, (fields) => {
        const r = new HandshakeReader();
        r.push(encodeHandshake(fields));
        expectSame(r.next(), fields);
        expect(r.next()).toBeUndefined();
        expect(r.takeRest().length).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes a sequence whatever the chunking, and keeps the rest (property)', () => {
    fc.assert(
      fc.property(
        fc.array(arbFields, { minLength: 1, maxLength: 4 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (msgs, rest, cuts) => {
          const wire = concat([...msgs.map(encodeHandshake), rest]);
          const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((x, y) => x - y);
          const r = new HandshakeReader();
          const got: HandshakeMessage[] = [];
          let prev = 0;
          for (const p of [...points, wire.length]) {
            r.push(wire.subarray(prev, p));
            prev = p;
            // Read greedily, but never past the messages we sent (the rest may look like anything).
            while (got.length < msgs.length) {
              const m = r.next();
              if (!m) break;
              got.push(m);
            }
          }
          expect(got.length).toBe(msgs.length);
          msgs.forEach((m, i) => expectSame(got[i], m));
          expect(Buffer.from(r.takeRest()).equals(Buffer.from(rest))).toBe(true);
          expect(r.buffered).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('handles every two-chunk split and byte-at-a-time feeding', () => {
    const msgs: HandshakeFields[] = [
      { type: MsgType.JOIN, version: 1, flags: 1, addrId: 9, token: new Uint8Array(16).fill(3), rA: new Uint8Array(32).fill(4) },
      { type: MsgType.JOIN_CONFIRM, hmacA: new Uint8Array(32).fill(5) },
    ];
    const rest = Uint8Array.of(0, 0, 0, 17, 99);
    const wire = concat([...msgs.map(encodeHandshake), rest]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const r = new HandshakeReader();
      r.push(wire.subarray(0, cut));
      const got = readAll(r, 2);
      r.push(wire.subarray(cut));
      got.push(...readAll(r, 2 - got.length));
      expect(got.length).toBe(2);
      expectSame(got[0], msgs[0] as HandshakeFields);
      expectSame(got[1], msgs[1] as HandshakeFields);
      expect(Buffer.from(r.takeRest()).toString('hex')).toBe('0000001163');
    }
    const r = new HandshakeReader();
    const got: HandshakeMessage[] = [];
    for (let i = 0; i < wire.length; i++) {
      r.push(wire.subarray(i, i + 1));
      got.push(...readAll(r, 2 - got.length));
    }
    expect(got.map((m) => m.type)).toEqual([MsgType.JOIN, MsgType.JOIN_CONFIRM]);
  });

  it('returns undefined (not an error) on a truncated message', () => {
    const enc = encodeHandshake({ type: MsgType.JOIN_ACK, rB: new Uint8Array(32), hmacB: new Uint8Array(8) });
    for (let n = 0; n < enc.length; n++) {
      const r = new HandshakeReader();
      r.push(enc.subarray(0, n));
      expect(r.next()).toBeUndefined();
    }
  });

  it('does not alias the pushed chunk (Uint8Array or Buffer)', () => {
    for (const wrap of [(u: Uint8Array) => u, (u: Uint8Array) => Buffer.from(u)]) {
      const enc = wrap(encodeHandshake({ type: MsgType.JOIN_CONFIRM, hmacA: new Uint8Array(32).fill(7) }));
      const r = new HandshakeReader();
      r.push(enc);
      const m = r.next();
      enc.fill(0);
      expect(m?.body[0]).toBe(7);
      expect(m?.type === MsgType.JOIN_CONFIRM && m.hmacA[31]).toBe(7);
    }
  });

  it('refuses an oversized length from the header alone (no body buffered)', () => {
    for (const type of [MsgType.HELLO, MsgType.REJECT, MsgType.JOIN]) {
      const r = new HandshakeReader();
      r.push(Uint8Array.of(type, 0xea, 0x60)); // 60000
      const e = expectCode(() => r.next(), ErrorCode.BAD_MESSAGE);
      expect(e.message).toMatch(/60000/);
    }
    const r = new HandshakeReader();
    r.push(Uint8Array.of(MsgType.HELLO, 0x04, 0x01)); // 1025
    expectCode(() => r.next(), ErrorCode.BAD_MESSAGE);
  });

  it('refuses unknown types and wrong fixed sizes from the header alone', () => {
    for (const header of [
      [0x00, 0, 0],
      [0x06, 0, 32],
      [0x10, 0, 1],
      [0xff, 0xff, 0xff],
      [MsgType.HELLO_ACK, 0, 95],
      [MsgType.JOIN_ACK, 0, 41],
      [MsgType.JOIN_CONFIRM, 0, 0],
      [MsgType.REJECT, 0, 0],
      [MsgType.REJECT, 0, 1],
      [MsgType.REJECT, 0, 243],
    ]) {
      const r = new HandshakeReader();
      r.push(Uint8Array.from(header));
      expectCode(() => r.next(), ErrorCode.BAD_MESSAGE);
      // And it stays failed.
      expectCode(() => r.next(), ErrorCode.BAD_MESSAGE);
    }
  });

  it('reports VERSION for another protocol version, BAD_MESSAGE for a wrong v1 size or reserved flags', () => {
    const hello = encodeHandshake({
      type: MsgType.HELLO,
      version: 1,
      flags: 0,
      addrId: 0,
      timestamp: 1,
      nonce: new Uint8Array(32),
      ephemeral: new Uint8Array(32),
      mac: new Uint8Array(32),
    });
    const v2 = hello.slice();
    v2[3] = 2;
    let r = new HandshakeReader();
    r.push(v2);
    expectCode(() => r.next(), ErrorCode.VERSION);

    // A v2 HELLO of another size is still reported as VERSION.
    r = new HandshakeReader();
    r.push(Uint8Array.of(MsgType.HELLO, 0, 2, 2, 0));
    expectCode(() => r.next(), ErrorCode.VERSION);

    r = new HandshakeReader();
    r.push(Uint8Array.of(MsgType.HELLO, 0, 2, 1, 0));
    expectCode(() => r.next(), ErrorCode.BAD_MESSAGE);

    // Bits 1-2 are the cipher id (cipher.ts); bit 3 and up are reserved.
    const flagged = hello.slice();
    flagged[4] = 0x08;
    r = new HandshakeReader();
    r.push(flagged);
    expectCode(() => r.next(), ErrorCode.BAD_MESSAGE);

    const join = encodeHandshake({ type: MsgType.JOIN, version: 1, flags: 0, addrId: 0, token: new Uint8Array(16), rA: new Uint8Array(32) });
    const j2 = join.slice();
    j2[3] = 0;
    r = new HandshakeReader();
    r.push(j2);
    expectCode(() => r.next(), ErrorCode.VERSION);
    expect(() => decodeBody(MsgType.JOIN, j2.subarray(3))).toThrow(ProtocolError);
  });

  it('never throws anything but a typed ProtocolError on garbage, and holds at most the input (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (garbage) => {
        const r = new HandshakeReader();
        r.push(garbage);
        try {
          for (let i = 0; i < 50; i++) if (!r.next()) break;
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
          expect([ErrorCode.BAD_MESSAGE, ErrorCode.VERSION]).toContain((e as ProtocolError).code);
        }
        expect(r.buffered).toBeLessThanOrEqual(garbage.length);
      }),
      { numRuns: 1000 },
    );
  });

  it('decodes a REJECT with invalid UTF-8 leniently (the code is what matters)', () => {
    const r = new HandshakeReader();
    r.push(Uint8Array.of(MsgType.REJECT, 0, 4, 8, 2, 0xff, 0x41));
    const m = r.next();
    expect(m?.type).toBe(MsgType.REJECT);
    if (m?.type === MsgType.REJECT) {
      expect(m.code).toBe(8);
      expect(m.reason).toBe('\ufffdA');
    }
  });
});

describe('startsWithReject', () => {
  it('tells a REJECT from a sealed record by its first byte', () => {
    expect(startsWithReject(encodeReject(3, 'x'))).toBe(true);
    expect(startsWithReject(Uint8Array.of(0, 1, 0, 16))).toBe(false);
    expect(startsWithReject(new Uint8Array(0))).toBe(false);
  });
});

describe('REJECT layout (section 3.1)', () => {
  it('round-trips a proof and refuses bodies that fit no layout', () => {
    const mac = new Uint8Array(32).fill(7);
    const enc = encodeHandshake({ type: MsgType.REJECT, code: 4, reason: 'skew', proof: { time: 1_800_000_000_123, mac } });
    expect(enc.length).toBe(3 + 2 + 4 + 40);
    const r = new HandshakeReader();
    r.push(enc);
    const m = r.next();
    expect(m?.type).toBe(MsgType.REJECT);
    if (m?.type === MsgType.REJECT) {
      expect(m.reason).toBe('skew');
      expect(m.proof?.time).toBe(1_800_000_000_123);
      expect(Buffer.from(m.proof!.mac).equals(Buffer.from(mac))).toBe(true);
    }
    // reason_len says 4 but 5 bytes follow the header (neither 0 nor 40 extra).
    for (const body of [
      [4, 4, 0x61, 0x62, 0x63, 0x64, 0x65],
      [4, 5, 0x61],
      [4, 201, ...new Array(201).fill(0x61)],
    ]) {
      const rr = new HandshakeReader();
      rr.push(Uint8Array.from([MsgType.REJECT, body.length >> 8, body.length & 0xff, ...body]));
      expectCode(() => rr.next(), ErrorCode.BAD_MESSAGE);
    }
  });
});
