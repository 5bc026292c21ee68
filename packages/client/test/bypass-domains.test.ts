import fc from 'fast-check';
import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { flushMicrotasks, VirtualClock } from '@plait/core';
import { BypassDomains, type CommandRunner } from '../src/bypass-domains.js';
import { parseDnsAnswer, type DnsLearned } from '../src/dns-answer.js';

// ---------------------------------------------------------------- DNS answers, built by hand

function name(n: string): number[] {
  const out: number[] = [];
  for (const label of n.split('.')) out.push(label.length, ...Buffer.from(label, 'latin1'));
  return [...out, 0];
}
const u16 = (v: number): number[] => [v >> 8, v & 0xff];
const u32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

interface Rr {
  owner: number[];
  type: number;
  ttl: number;
  rdata: number[];
  cls?: number;
}
function message(q: string, answers: Rr[], opts: { flags?: number; qd?: number; an?: number } = {}): Uint8Array {
  const header = [...u16(0x1234), ...u16(opts.flags ?? 0x8180), ...u16(opts.qd ?? 1), ...u16(opts.an ?? answers.length), ...u16(0), ...u16(0)];
  const question = [...name(q), ...u16(1), ...u16(1)];
  const body = answers.flatMap((r) => [...r.owner, ...u16(r.type), ...u16(r.cls ?? 1), ...u32(r.ttl), ...u16(r.rdata.length), ...r.rdata]);
  return Uint8Array.from([...header, ...question, ...body]);
}
const PTR_Q = [0xc0, 12]; // compression pointer to the question's name
const a = (owner: number[], ip: string, ttl = 300): Rr => ({ owner, type: 1, ttl, rdata: ip.split('.').map(Number) });
const aaaa = (owner: number[], hex: string, ttl = 300): Rr => ({ owner, type: 28, ttl, rdata: [...Buffer.from(hex, 'hex')] });
const cname = (owner: number[], target: string, ttl = 300): Rr => ({ owner, type: 5, ttl, rdata: name(target) });

describe('parseDnsAnswer', () => {
  it('reads A and AAAA answers with compressed owner names, and the smallest TTL', () => {
    const m = message('www.Example.com', [a(PTR_Q, '192.0.2.1', 600), a(PTR_Q, '192.0.2.2', 120), aaaa(PTR_Q, '20010db8000000000000000000000001', 900)]);
    expect(parseDnsAnswer(m)).toEqual({ name: 'www.example.com', aliases: [], addresses: ['192.0.2.1', '192.0.2.2', '2001:db8::1'], ttlSeconds: 120 });
  });

  it('follows the CNAME chain from the question, and ignores records of other names', () => {
    const m = message('www.netflix.com', [
      cname(PTR_Q, 'www.geo.netflix.com', 60),
      cname(name('www.geo.netflix.com'), 'edge.cdn.example', 3600),
      a(name('edge.cdn.example'), '198.51.100.9', 30),
      a(name('unrelated.example'), '203.0.113.66', 5),
    ]);
    expect(parseDnsAnswer(m)).toEqual({ name: 'www.netflix.com', aliases: ['www.geo.netflix.com', 'edge.cdn.example'], addresses: ['198.51.100.9'], ttlSeconds: 30 });
  });

  it('gives undefined for queries, errors, empty answers and several questions', () => {
    expect(parseDnsAnswer(message('x.example', [a(PTR_Q, '192.0.2.1')], { flags: 0x0100 }))).toBeUndefined(); // a query
    expect(parseDnsAnswer(message('x.example', [a(PTR_Q, '192.0.2.1')], { flags: 0x8183 }))).toBeUndefined(); // NXDOMAIN
    expect(parseDnsAnswer(message('x.example', []))).toBeUndefined();
    expect(parseDnsAnswer(message('x.example', [a(PTR_Q, '192.0.2.1')], { qd: 2 }))).toBeUndefined();
    expect(parseDnsAnswer(message('x.example', [cname(PTR_Q, 'y.example')]))).toBeUndefined(); // no address
  });

  it('hostile messages: truncated, pointer loops, over-long names, lying counts, wrong rdata lengths', () => {
    const good = message('x.example', [a(PTR_Q, '192.0.2.1')]);
    for (let cut = 0; cut < good.length; cut++) expect(parseDnsAnswer(good.subarray(0, cut))).toBeUndefined();
    // A pointer to itself (the owner name is at offset 27), and two pointing at each other.
    expect(parseDnsAnswer(message('x.example', [a([0xc0, 27], '192.0.2.1')]))).toBeUndefined();
    const loop = message('x.example', [a([0xc0, 12], '192.0.2.1')]);
    loop[12] = 0xc0;
    loop[13] = 12;
    expect(parseDnsAnswer(loop)).toBeUndefined();
    // A name longer than 255 bytes.
    expect(parseDnsAnswer(message(Array.from({ length: 5 }, () => 'a'.repeat(63)).join('.'), [a(PTR_Q, '192.0.2.1')]))).toBeUndefined();
    // More answers claimed than present.
    expect(parseDnsAnswer(message('x.example', [a(PTR_Q, '192.0.2.1')], { an: 65535 }))).toBeUndefined();
    // An A record with 5 bytes of rdata is skipped, not misread.
    expect(parseDnsAnswer(message('x.example', [{ owner: PTR_Q, type: 1, ttl: 5, rdata: [1, 2, 3, 4, 5] }]))).toBeUndefined();
    // Not class IN.
    expect(parseDnsAnswer(message('x.example', [{ ...a(PTR_Q, '192.0.2.1'), cls: 3 }]))).toBeUndefined();
    // A CNAME loop ends.
    expect(parseDnsAnswer(message('x.example', [cname(PTR_Q, 'y.example'), cname(name('y.example'), 'x.example'), a(name('y.example'), '192.0.2.7')]))?.addresses).toEqual(['192.0.2.7']);
  });

  it('compression pointers: a true two-name cycle, a chain too deep, and forward pointers never hang or misread', () => {
    // Header 12 bytes, question name at 12. The answer's owner is at `at`; build the
    // owner as a pointer to a second pointer stored in rdata-free space after the answer.
    const base = message('x.example', [a(PTR_Q, '192.0.2.1')]);
    const at = base.length - 16; // owner (2) + type/class/ttl/rdlen (10) + rdata (4)
    // A two-name cycle: the owner points at a pointer appended at the end, which points back at the owner.
    const cyc = Uint8Array.from([...base, 0xc0, at]);
    cyc[at] = 0xc0;
    cyc[at + 1] = base.length;
    expect(parseDnsAnswer(cyc)).toBeUndefined();
    // A legitimate chain of pointers, each to the next, ending at the question's name: read up to
    // the bound, refused beyond it (a hostile chain cannot make the reader walk far).
    const chain = (hops: number): Uint8Array => {
      const tail: number[] = [];
      const start = base.length;
      for (let i = 0; i < hops - 1; i++) tail.push(0xc0, start + 2 * (i + 1));
      tail.push(0xc0, 12);
      const m = Uint8Array.from([...base, ...tail]);
      m[at] = 0xc0;
      m[at + 1] = start;
      return m;
    };
    expect(parseDnsAnswer(chain(8))?.addresses).toEqual(['192.0.2.1']);
    expect(parseDnsAnswer(chain(40))).toBeUndefined();
    // A pointer past the end of the message.
    const past = Uint8Array.from(base);
    past[at] = 0xc0 | 0x3f;
    past[at + 1] = 0xff;
    expect(parseDnsAnswer(past)).toBeUndefined();
  });

  it('any bytes at all, and any corruption of a real answer: no throw, and only real addresses come out (property)', () => {
    const good = message('www.example.com', [cname(PTR_Q, 'edge.example', 60), a(name('edge.example'), '198.51.100.9', 30), aaaa(PTR_Q, '20010db8000000000000000000000001')]);
    const check = (m: Uint8Array): void => {
      const r = parseDnsAnswer(m);
      if (!r) return;
      for (const addr of r.addresses) expect(isIP(addr)).not.toBe(0);
      expect(r.name.length).toBeLessThanOrEqual(255);
      expect(r.aliases.length).toBeLessThanOrEqual(8);
      expect(Number.isInteger(r.ttlSeconds) && r.ttlSeconds >= 0).toBe(true);
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (m) => check(m)), { numRuns: 500 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
        const m = Uint8Array.from(good);
        for (const [i, v] of edits) m[i] = v;
        check(m);
      }),
      { numRuns: 2000 },
    );
  });

  it('looks at no more than 64 answers, however many there are', () => {
    const many = Array.from({ length: 200 }, (_, i) => a(PTR_Q, `10.0.${i >> 8}.${i & 0xff}`));
    expect(parseDnsAnswer(message('x.example', many))?.addresses).toHaveLength(64);
  });
});

// ---------------------------------------------------------------- the bypass module

function recorder(): { run: CommandRunner; calls: string[][]; release: (ok?: boolean) => void; pending: () => number } {
  const calls: string[][] = [];
  const waiting: ((ok: boolean) => void)[] = [];
  const run: CommandRunner = (file, args) => {
    calls.push([file, ...args]);
    return new Promise<void>((resolve, reject) => waiting.push((ok) => (ok ? resolve() : reject(new Error('Error: No such file or directory')))));
  };
  return { run, calls, pending: () => waiting.length, release: (ok = true) => waiting.shift()?.(ok) };
}

const answer = (name: string, addresses: string[], ttlSeconds = 600, aliases: string[] = []): DnsLearned => ({ name, aliases, addresses, ttlSeconds });

describe('BypassDomains', () => {
  it('adds the addresses of a bypassed domain and its subdomains to the nftables set, with the TTL as timeout', async () => {
    const r = recorder();
    const b = new BypassDomains({ domains: ['netflix.com'], run: r.run, clock: new VirtualClock() });
    b.learn(answer('www.NETFLIX.com.', ['198.51.100.1', '198.51.100.2'], 900));
    expect(r.calls).toEqual([['nft', 'add', 'element', 'inet', 'plait', 'bypass_dns4', '{ 198.51.100.1 timeout 900s, 198.51.100.2 timeout 900s }']]);
    r.release();
    await flushMicrotasks();
    expect(b.counters).toEqual({ bypassAddressesAdded: 2, bypassAddressesDropped: 0, bypassCommandFailures: 0 });
  });

  it('ignores other names, including look-alikes, and learns through a CNAME alias', () => {
    const r = recorder();
    const b = new BypassDomains({ domains: ['netflix.com'], run: r.run, clock: new VirtualClock() });
    b.learn(answer('notnetflix.com', ['192.0.2.1']));
    b.learn(answer('netflix.com.evil.example', ['192.0.2.2']));
    expect(r.calls).toEqual([]);
    b.learn(answer('movies.example', ['2001:db8::9'], 600, ['edge.nflxvideo.net', 'x.netflix.com']));
    expect(r.calls).toEqual([['nft', 'add', 'element', 'inet', 'plait', 'bypass_dns6', '{ 2001:db8::9 timeout 600s }']]);
  });

  it('clamps the timeout, and skips answers while the element is fresh, refreshing past half its life', async () => {
    const clock = new VirtualClock();
    const r = recorder();
    const b = new BypassDomains({ domains: ['example.com'], run: r.run, clock, minTtlSeconds: 300, maxTtlSeconds: 3600 });
    b.learn(answer('a.example.com', ['192.0.2.1'], 5));
    expect(r.calls.at(-1)?.at(-1)).toBe('{ 192.0.2.1 timeout 300s }');
    r.release();
    await flushMicrotasks();
    b.learn(answer('a.example.com', ['192.0.2.1'], 5)); // fresh: nothing to do
    expect(r.calls).toHaveLength(1);
    await clock.advance(151_000); // past half of 300 s
    b.learn(answer('a.example.com', ['192.0.2.1'], 99_999));
    expect(r.calls).toHaveLength(2);
    expect(r.calls.at(-1)?.at(-1)).toBe('{ 192.0.2.1 timeout 3600s }');
  });

  it('runs one command at a time and batches what arrives meanwhile, one family per command', async () => {
    const r = recorder();
    const b = new BypassDomains({ domains: ['example.com'], run: r.run, clock: new VirtualClock() });
    b.learn(answer('a.example.com', ['192.0.2.1']));
    b.learn(answer('b.example.com', ['192.0.2.2', '2001:db8::2']));
    b.learn(answer('c.example.com', ['192.0.2.3']));
    expect(r.calls).toHaveLength(1);
    r.release();
    await flushMicrotasks();
    expect(r.calls).toHaveLength(2);
    expect(r.calls[1]?.slice(5)).toEqual(['bypass_dns4', '{ 192.0.2.2 timeout 600s, 192.0.2.3 timeout 600s }']);
    r.release();
    await flushMicrotasks();
    expect(r.calls[2]?.slice(5)).toEqual(['bypass_dns6', '{ 2001:db8::2 timeout 600s }']);
    r.release();
    await flushMicrotasks();
    expect(r.pending()).toBe(0);
    expect(b.counters.bypassAddressesAdded).toBe(4);
  });

  it('a flood of answers while nft is slow is bounded: the queue holds maxPending, the rest is counted', async () => {
    const r = recorder();
    const b = new BypassDomains({ domains: ['example.com'], run: r.run, clock: new VirtualClock(), maxPending: 100 });
    for (let i = 0; i < 1000; i++) b.learn(answer('x.example.com', [`10.${i >> 8}.${i & 0xff}.1`]));
    expect(r.calls).toHaveLength(1); // the first went at once; 100 wait
    expect(b.counters.bypassAddressesDropped).toBe(899);
    r.release();
    await flushMicrotasks();
    expect(r.calls).toHaveLength(2);
    expect(r.calls[1]?.at(-1)?.split(',').length).toBe(100);
  });

  it('remembers at most maxTracked addresses, oldest forgotten first', async () => {
    const r = recorder();
    const b = new BypassDomains({ domains: ['example.com'], run: r.run, clock: new VirtualClock(), maxTracked: 3 });
    for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']) {
      b.learn(answer('x.example.com', [ip]));
      r.release();
      await flushMicrotasks();
    }
    expect(r.calls).toHaveLength(4);
    b.learn(answer('x.example.com', ['192.0.2.4'])); // remembered: skipped
    expect(r.calls).toHaveLength(4);
    b.learn(answer('x.example.com', ['192.0.2.1'])); // forgotten: sent again
    expect(r.calls).toHaveLength(5);
  });

  it('learn() resolves once the addresses are in the set (so the DNS answer can wait for it), at once when nothing is to add', async () => {
    const r = recorder();
    const b = new BypassDomains({ domains: ['example.com'], run: r.run, clock: new VirtualClock() });
    let done = false;
    void b.learn(answer('x.example.com', ['192.0.2.1'])).then(() => (done = true));
    // Arrives while the first command runs: waits for the second one.
    let second = false;
    void b.learn(answer('y.example.com', ['192.0.2.2'])).then(() => (second = true));
    await flushMicrotasks();
    expect(done).toBe(false);
    r.release();
    await flushMicrotasks();
    expect(done).toBe(true);
    expect(second).toBe(false);
    r.release(false); // a failure releases the waiter too
    await flushMicrotasks();
    expect(second).toBe(true);
    let other = false;
    void b.learn(answer('unrelated.org', ['192.0.2.3'])).then(() => (other = true));
    await flushMicrotasks();
    expect(other).toBe(true);
    expect(r.calls).toHaveLength(2);
  });

  it('observe(): holds a bypassed answer until nft is done, at most maxHoldMs; others are not held', async () => {
    const clock = new VirtualClock();
    const r = recorder();
    const b = new BypassDomains({ domains: ['netflix.com'], run: r.run, clock, maxHoldMs: 1000 });
    expect(b.observe(message('www.example.org', [a(PTR_Q, '192.0.2.1')]))).toBeUndefined();
    expect(b.observe(Uint8Array.from([1, 2, 3]))).toBeUndefined();
    let released = false;
    void b.observe(message('www.netflix.com', [a(PTR_Q, '198.51.100.1')]))?.then(() => (released = true));
    expect(r.calls.at(-1)?.at(-1)).toBe('{ 198.51.100.1 timeout 300s }');
    await flushMicrotasks();
    expect(released).toBe(false);
    r.release();
    await flushMicrotasks();
    expect(released).toBe(true);
    // nft hangs: the answer goes out after maxHoldMs anyway.
    let late = false;
    void b.observe(message('api.netflix.com', [a(PTR_Q, '198.51.100.2')]))?.then(() => (late = true));
    await clock.advance(999);
    expect(late).toBe(false);
    await clock.advance(1);
    expect(late).toBe(true);
  });

  it('a failing nft is counted and warned about once, and the addresses are tried again on the next answer', async () => {
    const r = recorder();
    const warns: string[] = [];
    const debugs: string[] = [];
    const log = { warn: (_: object, m: string) => void warns.push(m), info: () => undefined, debug: (_: object, m: string) => void debugs.push(m) };
    const b = new BypassDomains({ domains: ['example.com'], run: r.run, clock: new VirtualClock(), log });
    b.learn(answer('x.example.com', ['192.0.2.1']));
    r.release(false);
    await flushMicrotasks();
    b.learn(answer('x.example.com', ['192.0.2.1']));
    expect(r.calls).toHaveLength(2);
    r.release(false);
    await flushMicrotasks();
    expect(b.counters.bypassCommandFailures).toBe(2);
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatch(/nft could not add .*No such file.*router-setup/);
  });
});
