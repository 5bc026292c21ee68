import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.js';
import { HandshakeProgress, HandshakeSlots, sourceKey } from '../src/handshake-slots.js';

function slots(maxPending: number, maxPerSource: number) {
  const clock = new VirtualClock();
  return { clock, s: new HandshakeSlots({ maxPending, maxPerSource }, clock) };
}

describe('HandshakeSlots', () => {
  it('admits without eviction below both limits and frees on release', () => {
    const { s } = slots(4, 2);
    const a = s.admit('1.1.1.1');
    const b = s.admit('2.2.2.2');
    expect(a.evicted).toEqual([]);
    expect(b.evicted).toEqual([]);
    expect(s.pending).toBe(2);
    s.release(a.id);
    s.release(a.id); // idempotent
    expect(s.pending).toBe(1);
    expect(s.pendingFor('1.1.1.1')).toBe(0);
  });

  it('per-source limit: a newcomer evicts the oldest silent connection of its own source only', async () => {
    const { s, clock } = slots(100, 3);
    const other = s.admit('9.9.9.9'); // older than all, but another source
    await clock.advance(10);
    const ids = [];
    for (let i = 0; i < 3; i++) {
      ids.push(s.admit('1.1.1.1').id);
      await clock.advance(10);
    }
    const n = s.admit('1.1.1.1');
    expect(n.evicted).toEqual([{ id: ids[0], source: '1.1.1.1', reason: 'source' }]);
    expect(s.pendingFor('1.1.1.1')).toBe(3);
    expect(s.pendingFor('9.9.9.9')).toBe(1);
    expect(other.evicted).toEqual([]);
  });

  it('connections that sent bytes outlive silent ones, and one with an answered message outlives both, whatever their age', async () => {
    const { s, clock } = slots(100, 3);
    const joining = s.admit('1.1.1.1').id; // oldest
    s.progress(joining, HandshakeProgress.MESSAGE);
    await clock.advance(5);
    const partial = s.admit('1.1.1.1').id;
    s.progress(partial, HandshakeProgress.BYTES);
    await clock.advance(5);
    const silent = s.admit('1.1.1.1').id; // youngest
    expect(s.admit('1.1.1.1').evicted.map((e) => e.id)).toEqual([silent]);
    // Now the pending are: joining (MESSAGE), partial (BYTES), and the newcomer (NONE).
    const newer = s.admit('1.1.1.1');
    expect(newer.evicted.map((e) => e.id)).not.toContain(joining);
    expect(newer.evicted.map((e) => e.id)).not.toContain(partial);
  });

  it('progress only goes up and ignores evicted or released ids', async () => {
    const { s, clock } = slots(100, 2);
    const a = s.admit('x').id;
    await clock.advance(1);
    const b = s.admit('x').id;
    s.progress(a, HandshakeProgress.MESSAGE);
    s.progress(a, HandshakeProgress.NONE); // no downgrade
    expect(s.admit('x').evicted.map((e) => e.id)).toEqual([b]);
    s.progress(b, HandshakeProgress.MESSAGE); // evicted: ignored, no resurrection
    expect(s.pending).toBe(2);
  });

  it('global limit: the least-progress, oldest connection of any source is evicted', async () => {
    const { s, clock } = slots(4, 4);
    const a1 = s.admit('a').id;
    await clock.advance(1);
    const b1 = s.admit('b').id;
    await clock.advance(1);
    const a2 = s.admit('a').id;
    await clock.advance(1);
    const c1 = s.admit('c').id;
    s.progress(a1, HandshakeProgress.BYTES);
    const d = s.admit('d');
    expect(d.evicted).toEqual([{ id: b1, source: 'b', reason: 'global' }]);
    expect(s.admit('d').evicted.map((e) => e.id)).toEqual([a2]);
    expect(s.admit('d').evicted.map((e) => e.id)).toEqual([c1]);
    expect(s.pending).toBe(4);
    expect(s.pendingFor('b')).toBe(0);
  });

  it('both limits at once: one eviction from the source frees the global slot too', () => {
    const { s } = slots(2, 2);
    s.admit('a');
    s.admit('a');
    const n = s.admit('a');
    expect(n.evicted.map((e) => e.reason)).toEqual(['source']);
    expect(s.pending).toBe(2);
  });

  it('a real client survives an idle flood from its own address that keeps re-opening', async () => {
    const { s, clock } = slots(512, 64);
    for (let i = 0; i < 64; i++) s.admit('203.0.113.7');
    await clock.advance(1);
    const client = s.admit('203.0.113.7').id; // evicts one idle connection
    s.progress(client, HandshakeProgress.BYTES); // its HELLO/JOIN is on the way
    // The attacker re-opens hundreds more before the client's message completes.
    const evicted = new Set<number>();
    for (let i = 0; i < 500; i++) for (const e of s.admit('203.0.113.7').evicted) evicted.add(e.id);
    expect(evicted.has(client)).toBe(false);
    expect(s.pendingFor('203.0.113.7')).toBe(64);
  });

  it('oldestAgeMs follows the injected clock', async () => {
    const { s, clock } = slots(8, 8);
    expect(s.oldestAgeMs()).toBe(0);
    const a = s.admit('a').id;
    await clock.advance(250);
    s.admit('b');
    expect(s.oldestAgeMs()).toBe(250);
    s.release(a);
    expect(s.oldestAgeMs()).toBe(0);
  });

  it('refuses nonsensical limits', () => {
    const clock = new VirtualClock();
    expect(() => new HandshakeSlots({ maxPending: 0, maxPerSource: 1 }, clock)).toThrow(/maxPending/);
    expect(() => new HandshakeSlots({ maxPending: 4, maxPerSource: 5 }, clock)).toThrow(/maxPerSource/);
    expect(() => new HandshakeSlots({ maxPending: 4, maxPerSource: 1.5 }, clock)).toThrow(/maxPerSource/);
  });
});

describe('sourceKey', () => {
  it('IPv4 is the address; IPv4-mapped IPv6 counts as IPv4', () => {
    expect(sourceKey('203.0.113.7')).toBe('203.0.113.7');
    expect(sourceKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(sourceKey('::FFFF:10.0.0.1')).toBe('10.0.0.1');
  });
  it('IPv6 counts by /64, whatever the spelling', () => {
    const k = sourceKey('2001:db8:1:2:aaaa::1');
    expect(k).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe(k);
    expect(sourceKey('[2001:db8:1:2::9]')).toBe(k);
    expect(sourceKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('2001:db8:1:3::1')).not.toBe(k);
  });
  it('anything else is its own key', () => {
    expect(sourceKey('l0')).toBe('l0');
    expect(sourceKey('1:2:3')).toBe('1:2:3');
  });
});
