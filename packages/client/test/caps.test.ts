/**
 * Data caps on a virtual clock: the ledger counts, decides once per period,
 * lifts at the local period boundary and keeps usage across restarts in its
 * state file. The zone is fixed (Europe/Berlin has DST) so calendar
 * boundaries are known; this file runs in its own worker process.
 */
process.env.TZ = 'Europe/Berlin';

import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VirtualClock } from '@plait/core';
import { CapLedger, type CapSpec } from '../src/cap-ledger.js';
import { nextPeriodStart, periodStart } from '../src/cap-period.js';
import { CapStateFile, parseState, type CapStore, type StoredUsage } from '../src/cap-store.js';

const MiB = 1024 * 1024;
const HOUR = 3_600_000;
const root = mkdtempSync(join(tmpdir(), 'plait-caps-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => join(root, `state-${dirs++}`);

/** Unix ms of a Berlin local time. */
const berlin = (y: number, mo: number, d: number, h = 0, mi = 0): number => new Date(y, mo - 1, d, h, mi).getTime();

interface Line {
  level: 'info' | 'warn';
  msg: string;
}
function recorder() {
  const lines: Line[] = [];
  return { lines, log: { info: (_o: object, msg: string) => lines.push({ level: 'info', msg }), warn: (_o: object, msg: string) => lines.push({ level: 'warn', msg }) } };
}

function ledger(specs: CapSpec[], clock: VirtualClock, store?: CapStore) {
  const rec = recorder();
  const changed: string[] = [];
  const l = new CapLedger(specs, { clock, log: rec.log, ...(store ? { store } : {}) });
  l.onChange((p) => changed.push(p));
  return { l, changed, lines: rec.lines };
}

const daily = (bytes = 4 * MiB, action: CapSpec['action'] = 'backup'): CapSpec => ({ path: 'wwan0', bytes, period: 'day', action });

describe('cap periods on the local calendar', () => {
  it('a day starts at local midnight, also across DST (23 and 25 hour days)', () => {
    expect(periodStart('day', berlin(2026, 11, 29, 15, 30))).toBe(berlin(2026, 11, 29));
    expect(nextPeriodStart('day', berlin(2026, 11, 29, 23, 59))).toBe(berlin(2026, 11, 30));
    // 29 March 2026: clocks go forward at 02:00, the day lasts 23 hours.
    expect(nextPeriodStart('day', berlin(2026, 3, 29, 12)) - periodStart('day', berlin(2026, 3, 29, 12))).toBe(23 * HOUR);
    // 25 October 2026: clocks go back at 03:00, the day lasts 25 hours.
    expect(nextPeriodStart('day', berlin(2026, 10, 25, 12)) - periodStart('day', berlin(2026, 10, 25, 12))).toBe(25 * HOUR);
    expect(new Date(nextPeriodStart('day', berlin(2026, 10, 25, 12))).getHours()).toBe(0);
  });

  it('a month starts at local midnight of its 1st; December rolls into January', () => {
    expect(periodStart('month', berlin(2026, 2, 28, 23))).toBe(berlin(2026, 2, 1));
    expect(nextPeriodStart('month', berlin(2026, 2, 28, 23))).toBe(berlin(2026, 3, 1));
    expect(nextPeriodStart('month', berlin(2026, 12, 31, 23, 59))).toBe(berlin(2027, 1, 1));
  });
});

describe('CapLedger', () => {
  it('crossing the cap holds the path once: one warning and one change however much more comes', async () => {
    const clock = new VirtualClock(berlin(2026, 11, 29, 10));
    const { l, changed, lines } = ledger([daily()], clock);
    l.add('wwan0', 4 * MiB - 1);
    await clock.advance(1);
    expect(l.isReached('wwan0')).toBe(false);
    expect(changed).toEqual([]);
    l.add('wwan0', 1);
    expect(l.isReached('wwan0')).toBe(true);
    expect(l.actionFor('wwan0')).toBe('backup');
    // The client hears of it from a timer, not inside the channel's write.
    expect(changed).toEqual([]);
    await clock.advance(1);
    expect(changed).toEqual(['wwan0']);
    for (let i = 0; i < 100; i++) l.add('wwan0', 64 * 1024);
    await clock.advance(60_000);
    expect(changed).toEqual(['wwan0']);
    const warns = lines.filter((x) => x.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]!.msg).toBe('data cap reached on wwan0: 4.0 MiB of 4.0 MiB this day; the path is a backup until 2026-11-30 00:00');
    expect(l.stats()[0]).toMatchObject({ path: 'wwan0', usedBytes: 4 * MiB + 100 * 64 * 1024, capBytes: 4 * MiB, state: 'reached', period: 'day', periodStart: berlin(2026, 11, 29), periodEnd: berlin(2026, 11, 30) });
    // Bytes on a path with no cap are not counted anywhere.
    l.add('eth0', 10 * MiB);
    expect(l.stats()).toHaveLength(1);
    l.close();
  });

  it('the next local day lifts the cap at midnight and not before; usage restarts at 0', async () => {
    const clock = new VirtualClock(berlin(2026, 11, 29, 23, 0));
    const { l, changed, lines } = ledger([daily(1 * MiB, 'off')], clock);
    l.add('wwan0', 2 * MiB);
    await clock.advance(1);
    expect(l.actionFor('wwan0')).toBe('off');
    expect(changed).toEqual(['wwan0']);
    await clock.advance(berlin(2026, 11, 30) - clock.wallNow() - 1_000); // 23:59:59
    expect(l.isReached('wwan0')).toBe(true);
    await clock.advance(2_000);
    expect(l.isReached('wwan0')).toBe(false);
    expect(changed).toEqual(['wwan0', 'wwan0']);
    expect(l.stats()[0]).toMatchObject({ usedBytes: 0, state: 'ok', periodStart: berlin(2026, 11, 30), periodEnd: berlin(2026, 12, 1) });
    expect(lines.at(-1)!.msg).toBe('data cap on wwan0: a new day started (2026-11-30 00:00); 2.0 MiB were used in the last one; the path returns to its role');
    // It can be reached again in the new period (and is said again, once).
    l.add('wwan0', 1 * MiB);
    await clock.advance(1);
    expect(changed).toEqual(['wwan0', 'wwan0', 'wwan0']);
    expect(lines.filter((x) => x.level === 'warn')).toHaveLength(2);
    l.close();
  });

  it('a monthly cap lifts on the 1st, across a DST change in the month', async () => {
    const clock = new VirtualClock(berlin(2026, 10, 20, 12));
    const { l, changed } = ledger([{ path: '10.0.0.2', bytes: 100, period: 'month', action: 'backup' }], clock);
    l.add('10.0.0.2', 100);
    await clock.advance(1);
    expect(changed).toHaveLength(1);
    await clock.advance(berlin(2026, 11, 1) - clock.wallNow() - 60_000);
    expect(l.isReached('10.0.0.2')).toBe(true);
    await clock.advance(120_000);
    expect(l.isReached('10.0.0.2')).toBe(false);
    expect(l.stats()[0]!.periodStart).toBe(berlin(2026, 11, 1));
    l.close();
  });

  it('usage survives a restart through the state file, within the period; a later start begins a new period', async () => {
    const dir = freshDir();
    const warnings: string[] = [];
    const clock = new VirtualClock(berlin(2026, 11, 29, 10));
    const a = ledger([daily(4 * MiB)], clock, new CapStateFile(dir, (m) => warnings.push(m)));
    a.l.add('wwan0', 3 * MiB);
    // Saved within the save interval, not on every byte.
    expect(existsSync(join(dir, 'caps.json'))).toBe(false);
    await clock.advance(5_000);
    const saved = JSON.parse(readFileSync(join(dir, 'caps.json'), 'utf8')) as { caps: Record<string, StoredUsage> };
    expect(saved.caps.wwan0).toEqual({ period: 'day', periodStart: berlin(2026, 11, 29), used: 3 * MiB });
    a.l.add('wwan0', 1 * MiB + 5);
    a.l.close(); // shutdown saves at once
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'caps.json')).mode & 0o777).toBe(0o600);

    // Restarted an hour later: the count goes on, and the path starts held (said once).
    const clock2 = new VirtualClock(berlin(2026, 11, 29, 11));
    const b = ledger([daily(4 * MiB)], clock2, new CapStateFile(dir, (m) => warnings.push(m)));
    expect(b.l.stats()[0]).toMatchObject({ usedBytes: 4 * MiB + 5, state: 'reached' });
    expect(b.lines.filter((x) => x.level === 'warn').map((x) => x.msg)).toEqual([
      'data cap on wwan0 already reached this day (4.0 MiB of 4.0 MiB); the path is a backup until 2026-11-30 00:00',
    ]);
    await clock2.advance(1);
    expect(b.changed).toEqual(['wwan0']);
    b.l.close();

    // Restarted the next day: a new period.
    const clock3 = new VirtualClock(berlin(2026, 11, 30, 8));
    const c = ledger([daily(4 * MiB)], clock3, new CapStateFile(dir, (m) => warnings.push(m)));
    expect(c.l.stats()[0]).toMatchObject({ usedBytes: 0, state: 'ok', periodStart: berlin(2026, 11, 30) });
    c.l.close();

    // A clock set back into the saved period's past keeps counting that period (no free allowance).
    const d0 = ledger([daily(4 * MiB)], new VirtualClock(berlin(2026, 11, 30, 9)), new CapStateFile(dir, () => undefined));
    d0.l.add('wwan0', 7);
    d0.l.close();
    const d = ledger([daily(4 * MiB)], new VirtualClock(berlin(2026, 11, 29, 22)), new CapStateFile(dir, () => undefined));
    expect(d.l.stats()[0]).toMatchObject({ usedBytes: 7, periodStart: berlin(2026, 11, 30) });
    d.l.close();
    expect(warnings).toEqual([]);
  });

  it('changing the period of a cap starts it afresh; stored usage of caps not configured now is kept', async () => {
    const dir = freshDir();
    const clock = new VirtualClock(berlin(2026, 11, 29, 10));
    const a = ledger([daily(), { path: 'eth1', bytes: MiB, period: 'month', action: 'backup' }], clock, new CapStateFile(dir, () => undefined));
    a.l.add('wwan0', 1000);
    a.l.add('eth1', 2000);
    a.l.close();
    const b = ledger([{ ...daily(), period: 'month' }], clock, new CapStateFile(dir, () => undefined));
    expect(b.l.stats()[0]).toMatchObject({ usedBytes: 0, period: 'month' });
    b.l.close();
    const c = ledger([{ path: 'eth1', bytes: MiB, period: 'month', action: 'backup' }], clock, new CapStateFile(dir, () => undefined));
    expect(c.l.stats()[0]).toMatchObject({ usedBytes: 2000 });
    c.l.close();
  });

  it('a corrupt or foreign state file is reported once and ignored (moved aside), never a crash', async () => {
    const cases: [string, string | Buffer, RegExp][] = [
      ['garbage', 'not json {{{', /is not plait cap state \(not JSON: /],
      ['foreign', JSON.stringify({ hello: 'world' }), /is not plait cap state \(no "format": "plait-cap-usage"\)/],
      ['negative', JSON.stringify({ format: 'plait-cap-usage', version: 1, caps: { wwan0: { period: 'day', periodStart: 1, used: -5 } } }), /caps\.wwan0\.used is not a byte count/],
      ['future', JSON.stringify({ format: 'plait-cap-usage', version: 9, caps: {} }), /version 9, this plait reads version 1/],
      ['binary', Buffer.from([0xff, 0x00, 0x13, 0x37]), /not JSON/],
    ];
    for (const [name, body, reason] of cases) {
      const dir = freshDir();
      mkdirSync(dir, { mode: 0o700 });
      writeFileSync(join(dir, 'caps.json'), body);
      const warnings: string[] = [];
      const clock = new VirtualClock(berlin(2026, 11, 29, 10));
      const { l } = ledger([daily()], clock, new CapStateFile(dir, (m) => warnings.push(m)));
      expect(warnings, name).toHaveLength(1);
      expect(warnings[0], name).toMatch(reason);
      expect(warnings[0], name).toMatch(/ignoring it, cap usage starts at 0; moved it to .*caps\.json\.bad$/);
      expect(l.stats()[0]!.usedBytes, name).toBe(0);
      expect(readFileSync(join(dir, 'caps.json.bad')).equals(Buffer.from(body)), name).toBe(true);
      l.add('wwan0', 10);
      l.close();
      // The next save is good state again.
      expect(parseState(readFileSync(join(dir, 'caps.json'), 'utf8')), name).toEqual(new Map([['wwan0', { period: 'day', periodStart: berlin(2026, 11, 29), used: 10 }]]));
    }
    // A directory where the file should be, and an oversized file: reported, ignored.
    const dir = freshDir();
    mkdirSync(join(dir, 'caps.json'), { recursive: true });
    const warnings: string[] = [];
    const { l } = ledger([daily()], new VirtualClock(berlin(2026, 11, 29, 10)), new CapStateFile(dir, (m) => warnings.push(m)));
    l.add('wwan0', 1);
    l.close();
    expect(warnings[0]).toMatch(/cannot read .*caps\.json/);
    expect(warnings[1]).toMatch(/cannot save cap usage to .*caps\.json/);
    expect(parseState('x'.repeat(10))).toMatch(/not JSON/);
    const big = freshDir();
    mkdirSync(big);
    writeFileSync(join(big, 'caps.json'), ' '.repeat(2 * MiB));
    const w2: string[] = [];
    expect(new CapStateFile(big, (m) => w2.push(m)).load().size).toBe(0);
    expect(w2[0]).toMatch(/larger than 1048576 bytes/);
  });

  it('a save that keeps failing is reported once, not every few seconds', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'caps.json'), { recursive: true }); // rename onto a directory fails
    const warnings: string[] = [];
    const clock = new VirtualClock(berlin(2026, 11, 29, 10));
    const { l } = ledger([daily()], clock, new CapStateFile(dir, (m) => warnings.push(m)));
    for (let i = 0; i < 5; i++) {
      l.add('wwan0', 1);
      await clock.advance(5_000);
    }
    l.close();
    expect(warnings.filter((w) => w.includes('cannot save'))).toHaveLength(1);
  });
});
