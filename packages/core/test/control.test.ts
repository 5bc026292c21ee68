import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { WIRE } from '../src/config.js';
import {
  decodeControl,
  encodeControl,
  encodeStreamHeader,
  parseOpenHeader,
  StreamHeaderReader,
  truncateUtf8,
  type ControlMessage,
} from '../src/control.js';
import { ErrorCode, PlaitError, ProtocolError } from '../src/errors.js';

// A plain msgpackr to build bodies a peer might send, valid or not.
const raw = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
const pk = (v: unknown): Uint8Array => raw.pack(v);
const utf8 = (s: string): number[] => Array.from(new TextEncoder().encode(s));
/** fixstr token */
const fs = (s: string): number[] => [0xa0 | utf8(s).length, ...utf8(s)];

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an exception');
}

function expectProtocol(fn: () => unknown): void {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(ProtocolError);
  expect((e as ProtocolError).code).toBe(ErrorCode.PROTOCOL);
}

function expectInternal(fn: () => unknown): void {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(PlaitError);
  expect((e as PlaitError).code).toBe(ErrorCode.INTERNAL);
}

function expectNoPollution(): void {
  const probe: Record<string, unknown> = {};
  expect(probe.polluted).toBeUndefined();
  expect(Object.prototype).not.toHaveProperty('polluted');
  expect(Object.getPrototypeOf(probe)).toBe(Object.prototype);
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const host = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6(), fc.string({ unit: 'binary', minLength: 1, maxLength: 63 }));
const port = fc.integer({ min: 1, max: 65535 });
const controlMsg: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.record({ t: fc.constant('ok' as const), subflow: u32 }),
  fc.record({
    t: fc.constant('ok' as const),
    subflow: u32,
    addrs: fc.array(fc.record({ id: fc.integer({ min: 0, max: 255 }), host, port }), { maxLength: 8 }),
  }),
  fc.record({ t: fc.constant('close' as const), code: fc.integer({ min: 0, max: 255 }), reason: fc.string({ unit: 'binary', maxLength: 60 }) }),
  fc.record({ t: fc.constant('prio' as const), subflow: u32, backup: fc.boolean() }),
  fc
    .record({ subflow: u32, role: fc.constantFrom('regular' as const, 'backup' as const, 'overflow' as const), seq: u32 })
    .map(({ subflow, role, seq }) => ({ t: 'prio' as const, subflow, backup: role !== 'regular', role, seq })),
  fc.record({ t: fc.constant('sched' as const), name: fc.constantFrom('earliest-arrival', 'round-robin', 'redundant', 'a-later-one') }),
  fc.record({ t: fc.constant('sched' as const), name: fc.constantFrom('redundant'), ports: fc.array(port, { maxLength: 64 }) }),
  fc.record({ t: fc.constant('unknown' as const), name: fc.string({ unit: 'binary', maxLength: 20 }).filter((s) => !['ok', 'close', 'prio', 'uclose', 'sched', 'pub', 'pubst'].includes(s)) }),
);

describe('CONTROL messages', () => {
  it('round trip', () => {
    fc.assert(
      fc.property(controlMsg, (m) => {
        expect(decodeControl(encodeControl(m))).toEqual(m);
      }),
      { numRuns: 1000 },
    );
  });

  it('decodes what another encoder writes, ignoring extra fields and int widths', () => {
    expect(decodeControl(pk({ t: 'prio', subflow: 3, backup: false, future: [1, { x: 'y' }] }))).toEqual({ t: 'prio', subflow: 3, backup: false });
    // A role from a later version is left out: the receiver then goes by `backup`. nil fields are absent.
    expect(decodeControl(pk({ t: 'prio', subflow: 3, backup: true, role: 'metered-later', seq: 4 }))).toEqual({ t: 'prio', subflow: 3, backup: true, seq: 4 });
    expect(decodeControl(pk({ t: 'prio', subflow: 3, backup: true, role: null, seq: null }))).toEqual({ t: 'prio', subflow: 3, backup: true });
    // subflow as uint64 (0xcf) and nil addrs are accepted.
    const body = Uint8Array.of(0x83, ...fs('t'), ...fs('ok'), ...fs('subflow'), 0xcf, 0, 0, 0, 0, 0, 0, 0, 7, ...fs('addrs'), 0xc0);
    expect(decodeControl(body)).toEqual({ t: 'ok', subflow: 7 });
    expect(decodeControl(pk({ t: 'later-version' }))).toEqual({ t: 'unknown', name: 'later-version' });
    // Keys named like Object.prototype members are ordinary, ignored fields.
    expect(decodeControl(pk({ t: 'close', code: 14, reason: '', constructor: 1, toString: 'x', hasOwnProperty: null }))).toEqual({
      t: 'close',
      code: 14,
      reason: '',
    });
  });

  it('truncates close reasons to 255 UTF-8 bytes', () => {
    const m = decodeControl(encodeControl({ t: 'close', code: 14, reason: '€'.repeat(100) }));
    expect(m).toEqual({ t: 'close', code: 14, reason: '€'.repeat(85) });
  });

  it('sends lone surrogates in close reasons as U+FFFD', () => {
    expect(decodeControl(encodeControl({ t: 'close', code: 1, reason: 'x\udc00' }))).toEqual({ t: 'close', code: 1, reason: 'x\ufffd' });
  });

  it('refuses missing, mistyped and out-of-range fields', () => {
    const bad: unknown[] = [
      {},
      { t: 1 },
      { t: null },
      { t: ['ok'] },
      { t: 'ok' },
      { t: 'ok', subflow: -1 },
      { t: 'ok', subflow: 2 ** 32 },
      { t: 'ok', subflow: 1.5 },
      { t: 'ok', subflow: '1' },
      { t: 'ok', subflow: 1, addrs: {} },
      { t: 'ok', subflow: 1, addrs: 'x' },
      { t: 'ok', subflow: 1, addrs: [1] },
      { t: 'ok', subflow: 1, addrs: [null] },
      { t: 'ok', subflow: 1, addrs: [[1, 'h', 80]] },
      { t: 'ok', subflow: 1, addrs: [{ id: 256, host: 'h', port: 80 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: -1, host: 'h', port: 80 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: 1, host: '', port: 80 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: 1, host: 'h'.repeat(256), port: 80 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: 1, host: 5, port: 80 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: 1, host: 'h', port: 0 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: 1, host: 'h', port: 65536 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: 1, host: 'h' }] },
      { t: 'close', code: 1 },
      { t: 'close', reason: 'x' },
      { t: 'close', code: 256, reason: 'x' },
      { t: 'close', code: 1, reason: 5 },
      { t: 'close', code: true, reason: 'x' },
      { t: 'prio', subflow: 1 },
      { t: 'prio', subflow: 1, backup: 1 },
      { t: 'prio', subflow: 'a', backup: true },
      { t: 'prio', subflow: 1, backup: true, role: 1 },
      { t: 'prio', subflow: 1, backup: true, role: ['backup'] },
      { t: 'prio', subflow: 1, backup: true, role: 'backup', seq: -1 },
      { t: 'prio', subflow: 1, backup: true, role: 'backup', seq: 2 ** 32 },
      { t: 'prio', subflow: 1, backup: true, role: 'backup', seq: 'x' },
    ];
    for (const v of bad) expectProtocol(() => decodeControl(pk(v)));
  });

  it('refuses non-map, malformed and oversized bodies', () => {
    const bodies: number[][] = [
      [], // empty
      [0xc0], // nil
      [0x01], // int
      [0x91, 0x80], // array
      [0xa1, 0x61], // string
      [0x81, ...fs('t')], // value missing
      [0x81, ...fs('t'), 0xa3, 0x6f, 0x6b], // string shorter than declared
      [0x80, 0x80], // trailing bytes
      [0x81, 0x01, 0x02], // non-string key
      [0x81, 0xc0, 0x02], // nil key
      [0x81, 0xa1, 0xff, 0x01], // invalid UTF-8 key
      [0x81, ...fs('t'), 0xa2, 0xc3, 0x28], // invalid UTF-8 value
      // Duplicate key (either copy alone would be a valid message).
      [0x84, ...fs('t'), ...fs('prio'), ...fs('subflow'), 1, ...fs('backup'), 0xc2, ...fs('backup'), 0xc3],
      // Non-string key, in an otherwise valid message.
      [0x84, ...fs('t'), ...fs('prio'), ...fs('subflow'), 1, ...fs('backup'), 0xc2, 0x01, 0x02],
      // Forbidden types in an ignored field of an unknown message: refused all the same.
      [0x82, ...fs('t'), ...fs('x'), ...fs('f'), 0xc1],
      [0x82, ...fs('t'), ...fs('x'), ...fs('f'), 0xd6, 0xff, 0, 0, 0, 0],
      [0x82, ...fs('t'), ...fs('x'), ...fs('f'), 0xd4, 0x00, 0x00],
      [0x81, ...fs('t'), 0xc1], // never-used byte
      [0x81, ...fs('t'), 0xd4, 0x00, 0x00], // ext 0 (msgpackr: undefined)
      [0x81, ...fs('t'), 0xd6, 0xff, 0, 0, 0, 0], // timestamp ext
      [0x81, ...fs('t'), 0xd4, 0x72, 0x40], // msgpackr record definition
      [0x81, ...fs('t'), 0xc7, 0x01, 0x65, 0x90], // msgpackr Error ext
      [0x81, ...fs('t'), 0xd5, 0x62, 0, 0], // msgpackr bundled strings
      [0x81, ...fs('t'), 0xdd, 0xff, 0xff, 0xff, 0xff], // array32 claiming 4G elements
      [0x81, ...fs('t'), 0xdf, 0xff, 0xff, 0xff, 0xff], // map32 claiming 4G entries
      [0xdf, 0x00, 0x01, 0x00, 0x00], // map32 header, body missing
      [0x81, ...fs('t'), 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], // str32 claiming 4 GB
      [0x81, ...fs('t'), 0xc6, 0x7f, 0xff, 0xff, 0xff], // bin32 claiming 2 GB
      [0x81, ...fs('t'), 0xcb, 0, 0, 0], // float64 truncated
    ];
    for (const b of bodies) expectProtocol(() => decodeControl(Uint8Array.from(b)));
  });

  it('bounds nesting depth (no stack overflow on deep input)', () => {
    const deep = new Uint8Array(60000).fill(0x91); // [[[[...
    deep[0] = 0x81;
    deep.set(fs('t'), 1);
    expectProtocol(() => decodeControl(deep));
    const deepMaps = new Uint8Array(30000);
    for (let i = 0; i < deepMaps.length; i += 3) deepMaps.set([0x81, 0xa1, 0x61], i);
    expectProtocol(() => decodeControl(deepMaps));
    // Moderate nesting in an unknown field is fine.
    expect(decodeControl(pk({ t: 'x', f: [[[{ a: [1] }]]] }))).toEqual({ t: 'unknown', name: 'x' });
  });

  it('__proto__ keys neither pollute nor pass', () => {
    const proto = [0xa9, ...utf8('__proto__')];
    const polluted = [0x81, ...fs('polluted'), 0xc3];
    const bodies = [
      [0x83, ...fs('t'), ...fs('prio'), ...fs('subflow'), 0x01, ...proto, ...polluted],
      [0x83, ...proto, ...polluted, ...fs('t'), ...fs('prio'), ...fs('subflow'), 0x01],
      // Nested inside an addr.
      [0x83, ...fs('t'), ...fs('ok'), ...fs('subflow'), 0x01, ...fs('addrs'), 0x91, 0x84, ...fs('id'), 1, ...fs('host'), ...fs('h'), ...fs('port'), 80, ...proto, ...polluted],
    ];
    for (const b of bodies) {
      expectProtocol(() => decodeControl(Uint8Array.from(b)));
      expectNoPollution();
    }
    // The same bodies with an innocent key instead decode fine, so the
    // refusal above really is about __proto__.
    const fine = [0x83, ...fs('t'), ...fs('prio'), ...fs('subflow'), 0x01, 0xa9, ...utf8('__proto_x'), ...polluted];
    expect(() => decodeControl(Uint8Array.from(fine))).toThrow(ProtocolError); // backup missing
    const fine2 = [0x84, ...fs('t'), ...fs('prio'), ...fs('subflow'), 0x01, ...fs('backup'), 0xc2, 0xa9, ...utf8('__proto_x'), ...polluted];
    expect(decodeControl(Uint8Array.from(fine2))).toEqual({ t: 'prio', subflow: 1, backup: false });
  });

  it('random bytes: a message or a typed error, never a crash or pollution', () => {
    // Bias toward map-shaped input so the scanner is exercised past byte 0.
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 64 }).map((b) => Uint8Array.of(0x83, ...fs('t'), ...b)),
      fc.tuple(controlMsg, fc.nat(), fc.nat(255)).map(([m, at, v]) => {
        const b = Uint8Array.from(encodeControl(m));
        b[at % b.length] = v;
        return b;
      }),
    );
    fc.assert(
      fc.property(body, (b) => {
        try {
          const m = decodeControl(b);
          expect(['ok', 'close', 'prio', 'uclose', 'sched', 'unknown']).toContain(m.t);
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
          expect((e as ProtocolError).code).toBe(ErrorCode.PROTOCOL);
        }
      }),
      { numRuns: 5000 },
    );
    expectNoPollution();
  });

  it('encoder refuses invalid messages (INTERNAL) instead of sending them', () => {
    const bad = [
      { t: 'ok', subflow: -1 },
      { t: 'ok', subflow: 1, addrs: [{ id: 300, host: 'h', port: 1 }] },
      { t: 'ok', subflow: 1, addrs: [{ id: 1, host: '\ud800', port: 1 }] },
      { t: 'close', code: 1.5, reason: '' },
      { t: 'prio', subflow: 1, backup: 'yes' },
      { t: 'unknown', name: 'ok' },
    ] as unknown as ControlMessage[];
    for (const m of bad) expectInternal(() => encodeControl(m));
  });
});

describe('CONTROL sched (the client\'s scheduler choice)', () => {
  it('round trip, and ports absent or nil mean "keep yours"', () => {
    const m: ControlMessage = { t: 'sched', name: 'redundant', ports: [22, 3389, 5060] };
    expect(decodeControl(encodeControl(m))).toEqual(m);
    expect(decodeControl(pk({ t: 'sched', name: 'earliest-arrival' }))).toEqual({ t: 'sched', name: 'earliest-arrival' });
    expect(decodeControl(pk({ t: 'sched', name: 'earliest-arrival', ports: null }))).toEqual({ t: 'sched', name: 'earliest-arrival' });
    expect(decodeControl(pk({ t: 'sched', name: 'x', ports: [] }))).toEqual({ t: 'sched', name: 'x', ports: [] });
  });

  it('refuses a bad name and bad or too many ports (PROTOCOL), the bound a peer cannot raise', () => {
    expectProtocol(() => decodeControl(pk({ t: 'sched' })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: '' })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 7 })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'x'.repeat(65) })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'é'.repeat(33) }))); // 66 bytes
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'a', ports: 22 })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'a', ports: [0] })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'a', ports: [65536] })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'a', ports: [22.5] })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'a', ports: ['22'] })));
    expectProtocol(() => decodeControl(pk({ t: 'sched', name: 'a', ports: Array.from({ length: 65 }, (_, i) => i + 1) })));
    expect(decodeControl(pk({ t: 'sched', name: 'x'.repeat(64), ports: Array.from({ length: 64 }, (_, i) => i + 1) })).t).toBe('sched');
    expectInternal(() => encodeControl({ t: 'sched', name: '' }));
    expectInternal(() => encodeControl({ t: 'sched', name: 'a', ports: [70000] }));
  });
});

describe('truncateUtf8', () => {
  it('never exceeds max, never splits a character, keeps a prefix', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 100 }), fc.nat(300), (s, max) => {
        const b = truncateUtf8(s, max);
        expect(b.length).toBeLessThanOrEqual(max);
        const back = new TextDecoder('utf-8', { fatal: true }).decode(b); // throws if split
        const full = new TextEncoder().encode(s);
        expect(full.subarray(0, b.length)).toEqual(b);
        // Maximal: the next character would not have fit.
        if (b.length < full.length) {
          const next = [...s.slice(back.length)][0] ?? '';
          expect(b.length + new TextEncoder().encode(next).length).toBeGreaterThan(max);
        }
      }),
    );
  });
});

describe('stream headers', () => {
  const openHeader = fc.record({ host, port });

  it('round trip through every split of the byte stream', () => {
    fc.assert(
      fc.property(
        fc.oneof(openHeader, fc.constant({})),
        fc.uint8Array({ maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (h, after, cutSeeds) => {
          const enc = encodeStreamHeader(h);
          expect(enc.length).toBeLessThanOrEqual(2 + WIRE.STREAM_HEADER_MAX);
          expect((enc[0]! << 8) | enc[1]!).toBe(enc.length - 2);
          const all = new Uint8Array([...enc, ...after]);
          const cuts = [...new Set(cutSeeds.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
          const bounds = [0, ...cuts, all.length];
          const r = new StreamHeaderReader();
          let got: { header: Record<string, unknown>; rest: Uint8Array } | undefined;
          let restAfter: number[] = [];
          for (let k = 0; k + 1 < bounds.length; k++) {
            const chunk = all.subarray(bounds[k], bounds[k + 1]);
            if (got) restAfter.push(...chunk);
            else {
              got = r.push(chunk);
              if (got) restAfter = Array.from(got.rest);
            }
          }
          expect(got).toBeDefined();
          expect(got?.header).toEqual(h);
          if ('host' in h) expect(parseOpenHeader(got?.header ?? {})).toEqual(h);
          expect(restAfter).toEqual(Array.from(after));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('byte-at-a-time delivery', () => {
    const enc = encodeStreamHeader({ host: 'example.com', port: 443 });
    const r = new StreamHeaderReader();
    for (let i = 0; i < enc.length - 1; i++) expect(r.push(enc.subarray(i, i + 1))).toBeUndefined();
    const got = r.push(Uint8Array.of(enc[enc.length - 1]!, 9, 9));
    expect(got?.header).toEqual({ host: 'example.com', port: 443 });
    expect(Array.from(got?.rest ?? [])).toEqual([9, 9]);
  });

  it('is one-shot: pushing after the header is an INTERNAL error', () => {
    const r = new StreamHeaderReader();
    expect(r.push(encodeStreamHeader({}))).toBeDefined();
    expectInternal(() => r.push(Uint8Array.of(1)));
  });

  it('refuses bad lengths as soon as the length is known', () => {
    for (const len of [0, WIRE.STREAM_HEADER_MAX + 1, 0xffff]) {
      const r = new StreamHeaderReader();
      expect(r.push(Uint8Array.of(len >>> 8))).toBeUndefined();
      expectProtocol(() => r.push(Uint8Array.of(len & 0xff)));
    }
    // Exactly the maximum is accepted.
    let k = WIRE.STREAM_HEADER_MAX;
    while (pk({ pad: 'x'.repeat(k) }).length > WIRE.STREAM_HEADER_MAX) k--;
    const exact = pk({ pad: 'x'.repeat(k) });
    expect(exact.length).toBe(WIRE.STREAM_HEADER_MAX);
    const got = new StreamHeaderReader().push(Uint8Array.of(exact.length >>> 8, exact.length & 0xff, ...exact));
    expect(got?.header).toEqual({ pad: 'x'.repeat(k) });
  });

  it('refuses non-map and malformed bodies, and __proto__', () => {
    const frame = (b: number[]): Uint8Array => Uint8Array.of(b.length >>> 8, b.length & 0xff, ...b);
    for (const b of [[0xc0], [0x92, 1, 2], [0x81, ...fs('host')], [0x80, 0x80], [0x81, 0xa9, ...utf8('__proto__'), 0x80]]) {
      expectProtocol(() => new StreamHeaderReader().push(frame(b)));
      expectNoPollution();
    }
  });

  it('parseOpenHeader validates host and port', () => {
    expect(parseOpenHeader({ host: 'h'.repeat(255), port: 65535, extra: true })).toEqual({ host: 'h'.repeat(255), port: 65535 });
    expect(parseOpenHeader({ host: '::1', port: 1 })).toEqual({ host: '::1', port: 1 });
    const bad: Record<string, unknown>[] = [
      {},
      { host: 'h' },
      { port: 80 },
      { host: '', port: 80 },
      { host: 'h'.repeat(256), port: 80 },
      { host: 'é'.repeat(128), port: 80 }, // 128 characters but 256 bytes
      { host: 1, port: 80 },
      { host: 'h', port: 0 },
      { host: 'h', port: 65536 },
      { host: 'h', port: 80.5 },
      { host: 'h', port: '80' },
      { host: 'h', port: null },
    ];
    for (const h of bad) expectProtocol(() => parseOpenHeader(h));
    // Inherited properties do not count as fields.
    const inherited = Object.create({ host: 'h', port: 80 }) as Record<string, unknown>;
    expectProtocol(() => parseOpenHeader(inherited));
  });

  it('encodeStreamHeader refuses targets parseOpenHeader would refuse', () => {
    expectProtocol(() => encodeStreamHeader({ host: 'h'.repeat(256), port: 80 }));
    expectProtocol(() => encodeStreamHeader({ host: 'h', port: 0 }));
    expectProtocol(() => encodeStreamHeader({ host: '\udc00', port: 80 }));
    // The largest host (255 bytes of 4-byte characters is 63 characters) fits easily.
    const big = encodeStreamHeader({ host: '😀'.repeat(63), port: 65535 });
    expect(big.length).toBeLessThan(2 + WIRE.STREAM_HEADER_MAX);
  });
});
