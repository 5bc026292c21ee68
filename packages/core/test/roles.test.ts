import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeControl, encodeControl } from '../src/control.js';
import { dataTiers, type RoleView, type SubflowRole } from '../src/roles.js';
import type { Session } from '../src/session.js';
import type { Stream } from '../src/stream.js';
import { Subflow } from '../src/subflow.js';
import { collect, echoServer, makePair, settle, writeAll, type Pair } from './harness.js';

const view = (id: number, role: SubflowRole, usable = true, writable = true): RoleView & { id: number } => ({ id, role, usable, writable });
const ids = (tiers: { id: number }[][]): number[][] => tiers.map((t) => t.map((s) => s.id));

describe('role tiers (which subflows may carry data, in order)', () => {
  it('regular first, overflow when the regular ones have no room, backup only when neither works', () => {
    const all = [view(1, 'regular'), view(2, 'overflow'), view(3, 'backup')];
    expect(ids(dataTiers(all))).toEqual([[1], [2]]);
    // A regular subflow whose socket is full still works: overflow takes what waits, backup stays out.
    expect(ids(dataTiers([view(1, 'regular', true, false), view(2, 'overflow'), view(3, 'backup')]))).toEqual([[], [2]]);
    expect(ids(dataTiers([view(1, 'regular', true, false), view(3, 'backup')]))).toEqual([[]]);
    // No regular works (suspect): overflow is the first choice, still not backup.
    expect(ids(dataTiers([view(1, 'regular', false), view(2, 'overflow'), view(3, 'backup')]))).toEqual([[2]]);
    // Neither works: backup.
    expect(ids(dataTiers([view(1, 'regular', false), view(2, 'overflow', false), view(3, 'backup')]))).toEqual([[3]]);
    expect(ids(dataTiers([view(3, 'backup'), view(4, 'backup', true, false)]))).toEqual([[3]]);
    expect(ids(dataTiers([]))).toEqual([[]]);
  });
});

describe('prio ordering on a subflow', () => {
  const none = { setHandlers: () => undefined } as never;
  it('applies newer changes, ignores a stale one that overtook, and always applies an unnumbered one (older peers)', () => {
    const sf = new Subflow(none, none, none, { id: 1, backup: false, addrId: 0, awaitOk: false, now: 0 });
    expect(sf.role).toBe('regular');
    expect(sf.onPeerRole('overflow', 2)).toBe(true);
    expect(sf.onPeerRole('backup', 1)).toBe(false);
    expect(sf.role).toBe('overflow');
    expect(sf.onPeerRole('backup', 2)).toBe(false);
    expect(sf.onPeerRole('backup', undefined)).toBe(true);
    expect(sf.role).toBe('backup');
    expect(sf.backup).toBe(true);
  });

  it('announces a local change once, with increasing seq; nothing while the peer already knows the role', () => {
    const sf = new Subflow(none, none, none, { id: 1, backup: true, addrId: 0, awaitOk: false, now: 0 });
    expect(sf.takeRoleAnnouncement()).toBeUndefined();
    sf.setRole('overflow');
    expect(sf.takeRoleAnnouncement()).toEqual({ role: 'overflow', seq: 1 });
    expect(sf.takeRoleAnnouncement()).toBeUndefined();
    sf.setRole('regular');
    expect(sf.takeRoleAnnouncement()).toEqual({ role: 'regular', seq: 2 });
  });

  it('an overflow subflow waiting for ok announces its role only after ok', () => {
    const sf = new Subflow(none, none, none, { id: 0, backup: true, role: 'overflow', addrId: 0, awaitOk: true, now: 0 });
    expect(sf.takeRoleAnnouncement()).toBeUndefined();
    sf.onOk(7);
    expect(sf.takeRoleAnnouncement()).toEqual({ role: 'overflow', seq: 1 });
  });

  it('prio keeps backup for older receivers: role and backup must agree when sent', () => {
    const m = decodeControl(encodeControl({ t: 'prio', subflow: 4, backup: true, role: 'overflow', seq: 9 }));
    expect(m).toEqual({ t: 'prio', subflow: 4, backup: true, role: 'overflow', seq: 9 });
    expect(() => encodeControl({ t: 'prio', subflow: 4, backup: false, role: 'overflow' })).toThrow(/invalid role/);
  });
});

/** Bytes this side sent on subflow `id` (records: data, acks, pings). */
const sentOn = (s: Session, id: number): number => s.stats().subflows.find((x) => x.id === id)?.bytesSent ?? 0;
const roleOn = (s: Session, id: number): string | undefined => s.stats().subflows.find((x) => x.id === id)?.role;
const closed = (s: Stream): Promise<void> => new Promise<void>((r) => s.setHandlers({ close: () => r() }));

/** A server that answers every stream with `bytes` random bytes (a download), then ends. */
function downloadServer(bytes: () => Uint8Array): (s: Stream) => void {
  return (s) => {
    s.accept();
    s.setHandlers({ data: (c) => s.release(c.length) });
    writeAll(s, bytes());
  };
}

describe('roles in a running session (in-memory links, virtual clock)', () => {
  it('a backup subflow carries no download while the regular one works; the server falls back to it when the regular one dies', async () => {
    const data = randomBytes(1_500_000);
    const pair = await makePair({
      links: [{ delayMs: 20, bytesPerMs: 1000 }, { delayMs: 2, bytesPerMs: 5000, backup: true }],
      onServerStream: downloadServer(() => data),
    });
    const [reg, bak] = pair.client.liveSubflows.map((s) => s.id) as [number, number];
    expect(roleOn(pair.server(), bak)).toBe('backup');
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    s.end();
    await pair.clock.advance(600);
    expect(got.total().length).toBeGreaterThan(100_000);
    // Keepalive pings and acks only: far below one data frame.
    expect(sentOn(pair.server(), bak)).toBeLessThan(2000);
    expect(sentOn(pair.server(), reg)).toBeGreaterThan(100_000);
    pair.links[0]!.blackhole();
    await settle(pair.clock, closed(s));
    expect(Buffer.compare(got.total(), data)).toBe(0);
    expect(sentOn(pair.server(), bak)).toBeGreaterThan(300_000);
  });

  async function overflowPair(onServerStream: (s: Stream) => void): Promise<{ pair: Pair; reg: number; ovf: number }> {
    const pair = await makePair({
      links: [{ delayMs: 10, bytesPerMs: 1000 }, { delayMs: 5, bytesPerMs: 1000, role: 'overflow' }],
      onServerStream,
    });
    await pair.clock.advance(50); // the prio announcing the role reaches the server
    const [reg, ovf] = pair.client.liveSubflows.map((s) => s.id) as [number, number];
    return { pair, reg, ovf };
  }

  it('overflow carries nothing for light traffic (the regular subflow has room), both ways', async () => {
    const { pair, ovf } = await overflowPair(echoServer);
    expect(roleOn(pair.client, ovf)).toBe('overflow');
    expect(roleOn(pair.server(), ovf)).toBe('overflow');
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const c0 = sentOn(pair.client, ovf);
    const s0 = sentOn(pair.server(), ovf);
    // 1 KiB every 50 ms for 3 s: a call, not a download. The overflow link is the faster one,
    // so the earliest-arrival scheduler alone would put everything there.
    for (let i = 0; i < 60; i++) {
      s.write(randomBytes(1024));
      await pair.clock.advance(50);
    }
    await pair.clock.advance(200);
    expect(got.total().length).toBe(60 * 1024);
    expect(sentOn(pair.client, ovf) - c0).toBeLessThan(1000);
    expect(sentOn(pair.server(), ovf) - s0).toBeLessThan(1000);
  });

  it('overflow carries bytes when the regular subflow is saturated and data waits: uploads', async () => {
    const { pair, reg, ovf } = await overflowPair(echoServer);
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const data = randomBytes(3_000_000);
    writeAll(s, data);
    await settle(pair.clock, closed(s));
    expect(Buffer.compare(got.total(), data)).toBe(0);
    expect(sentOn(pair.client, ovf)).toBeGreaterThan(300_000);
    expect(sentOn(pair.client, reg)).toBeGreaterThan(300_000);
  });

  it('overflow carries bytes when the regular subflow is saturated and data waits: downloads (the server obeys the role)', async () => {
    const data = randomBytes(3_000_000);
    const { pair, reg, ovf } = await overflowPair(downloadServer(() => data));
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    s.end();
    await settle(pair.clock, closed(s));
    expect(Buffer.compare(got.total(), data)).toBe(0);
    expect(sentOn(pair.server(), ovf)).toBeGreaterThan(300_000);
    expect(sentOn(pair.server(), reg)).toBeGreaterThan(300_000);
  });

  it("a role change by one side moves the other side's sending: the client demotes a link, the server stops sending on it", async () => {
    const data = randomBytes(4_000_000);
    const pair = await makePair({
      links: [{ delayMs: 5, bytesPerMs: 1000 }, { delayMs: 5, bytesPerMs: 1000 }],
      onServerStream: downloadServer(() => data),
    });
    const [sfA, sfB] = pair.client.liveSubflows as [Subflow, Subflow];
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    s.end();
    await pair.clock.advance(300);
    // Both links carry the download before the change.
    expect(sentOn(pair.server(), sfA.id)).toBeGreaterThan(50_000);
    expect(sentOn(pair.server(), sfB.id)).toBeGreaterThan(50_000);
    expect(pair.client.setSubflowRole(sfA, 'backup')).toBe(true);
    await pair.clock.advance(100); // the prio crosses; what was in flight drains
    expect(roleOn(pair.server(), sfA.id)).toBe('backup');
    const a0 = sentOn(pair.server(), sfA.id);
    const b0 = sentOn(pair.server(), sfB.id);
    await pair.clock.advance(1000);
    expect(sentOn(pair.server(), sfA.id) - a0).toBeLessThan(2000);
    expect(sentOn(pair.server(), sfB.id) - b0).toBeGreaterThan(500_000);
    // And back: regular again, the server uses it again.
    pair.client.setSubflowRole(sfA, 'regular');
    await pair.clock.advance(100);
    const a1 = sentOn(pair.server(), sfA.id);
    await pair.clock.advance(500);
    expect(sentOn(pair.server(), sfA.id) - a1).toBeGreaterThan(100_000);
    await settle(pair.clock, closed(s));
    expect(Buffer.compare(got.total(), data)).toBe(0);
    expect(pair.client.counters.rolesChangedLocally).toBe(2);
    expect(pair.server().counters.rolesChangedByPeer).toBe(2);
  });

  it('...and the other way: the server demotes a link, the client stops uploading on it', async () => {
    const pair = await makePair({ links: [{ delayMs: 5, bytesPerMs: 1000 }, { delayMs: 5, bytesPerMs: 1000 }], onServerStream: echoServer });
    const ids = pair.client.liveSubflows.map((x) => x.id) as [number, number];
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const data = randomBytes(3_000_000);
    writeAll(s, data);
    await pair.clock.advance(300);
    const serverSf = pair.server().liveSubflows.find((x) => x.id === ids[0])!;
    expect(pair.server().setSubflowRole(serverSf, 'overflow')).toBe(true);
    await pair.clock.advance(100);
    expect(roleOn(pair.client, ids[0])).toBe('overflow');
    // The bulk upload saturates the regular link: the client may still use the overflow one,
    // but only for what waits. Now make it a backup: nothing at all.
    pair.server().setSubflowRole(serverSf, 'backup');
    await pair.clock.advance(100);
    expect(roleOn(pair.client, ids[0])).toBe('backup');
    const a0 = sentOn(pair.client, ids[0]);
    await pair.clock.advance(800);
    expect(sentOn(pair.client, ids[0]) - a0).toBeLessThan(2000);
    await settle(pair.clock, closed(s));
    expect(Buffer.compare(got.total(), data)).toBe(0);
  });

  it('a prio for a subflow the receiver does not have is ignored; a subflow of another session is refused locally', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }] });
    const other = await makePair({ links: [{ delayMs: 5 }] });
    expect(pair.client.setSubflowRole(other.client.liveSubflows[0]!, 'backup')).toBe(false);
    expect(pair.client.liveSubflows[0]!.role).toBe('regular');
  });
});
