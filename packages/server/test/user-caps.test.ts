/**
 * The server's per-user cap ledger on a virtual `now`: usage survives a
 * restart through DIR/user-caps.json, periods roll over on UTC boundaries,
 * the file servers wrote before it was versioned is still read, and a bad
 * file or a failing disk is a warning, never a crash. A zone far from UTC
 * (this file runs in its own worker process) shows the periods are UTC's.
 */
process.env.TZ = 'Pacific/Auckland';

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scratchDirs } from '@plait/testkit';
import { periodStart, UserCapLedger } from '../src/user-caps.js';

const scratch = scratchDirs('plait-user-caps-');
afterAll(() => scratch.remove());
const freshDir = (): string => scratch.fresh();

const utc = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): number => Date.UTC(y, mo - 1, d, h, mi, s, ms);

/** A ledger whose clock the test moves. */
function ledger(dir: string | undefined, at: number) {
  const clock = { now: at };
  const warnings: string[] = [];
  const l = new UserCapLedger(dir, () => clock.now, (m) => warnings.push(m));
  return { l, clock, warnings };
}

const stored = (dir: string): unknown => JSON.parse(readFileSync(join(dir, 'user-caps.json'), 'utf8'));

describe('the user cap ledger', () => {
  it('usage survives a restart, in the versioned file', () => {
    const dir = freshDir();
    const a = ledger(dir, utc(2026, 11, 29, 10));
    a.l.add('alice', 'day', 1000);
    a.l.add('alice', 'day', 500);
    a.l.add('bob', 'month', 7);
    a.l.save();
    expect(stored(dir)).toEqual({
      format: 'plait-user-caps',
      version: 1,
      users: {
        alice: { period: 'day', start: utc(2026, 11, 29), used: 1500 },
        bob: { period: 'month', start: utc(2026, 11, 1), used: 7 },
      },
    });
    const b = ledger(dir, utc(2026, 11, 29, 23));
    expect(b.l.used('alice', 'day')).toBe(1500);
    expect(b.l.used('bob', 'month')).toBe(7);
    // The same user under another period's cap counts afresh.
    expect(b.l.used('alice', 'month')).toBe(0);
    expect([...a.warnings, ...b.warnings]).toEqual([]);
  });

  it('days roll over at 00:00 UTC and months on the 1st, whatever the local zone', () => {
    const { l, clock } = ledger(undefined, utc(2026, 11, 30, 23, 59, 59, 999));
    l.add('alice', 'day', 10);
    l.add('bob', 'month', 20);
    expect(l.used('alice', 'day')).toBe(10);
    clock.now = utc(2026, 12, 1);
    expect(l.used('alice', 'day')).toBe(0);
    expect(l.used('bob', 'month')).toBe(0);
    l.add('alice', 'day', 3);
    expect(l.used('alice', 'day')).toBe(3);
    clock.now = utc(2026, 12, 31, 23, 59);
    expect(l.used('alice', 'day')).toBe(0);
    expect(periodStart('month', clock.now)).toBe(utc(2026, 12, 1));
    expect(periodStart('month', utc(2027, 1, 1))).toBe(utc(2027, 1, 1));
  });

  it('reads the unversioned file of earlier servers and writes it back versioned at the next save', () => {
    const dir = freshDir();
    const legacy = { alice: { period: 'day', start: utc(2026, 11, 29), used: 4096 }, carol: { period: 'month', start: utc(2026, 11, 1), used: 9 } };
    writeFileSync(join(dir, 'user-caps.json'), JSON.stringify(legacy), { mode: 0o600 });
    const { l, warnings } = ledger(dir, utc(2026, 11, 29, 12));
    expect(l.used('alice', 'day')).toBe(4096);
    expect(l.used('carol', 'month')).toBe(9);
    l.add('alice', 'day', 4);
    l.save();
    expect(stored(dir)).toEqual({ format: 'plait-user-caps', version: 1, users: { ...legacy, alice: { ...legacy.alice, used: 4100 } } });
    expect(warnings).toEqual([]);
  });

  it('a malformed entry is reported once naming the file and the entry; the file is moved aside, never a crash', () => {
    const cases: [string, unknown, string][] = [
      ['legacy null entry', { bob: { period: 'day', start: utc(2026, 11, 29), used: 1 }, alice: null }, '"alice" is not an object'],
      ['versioned null entry', { format: 'plait-user-caps', version: 1, users: { alice: null } }, 'users."alice" is not an object'],
      ['negative use', { format: 'plait-user-caps', version: 1, users: { alice: { period: 'day', start: 0, used: -1 } } }, 'users."alice".used is not a byte count'],
      ['fractional start', { alice: { period: 'day', start: 0.5, used: 1 } }, '"alice".start is not a time'],
      ['unknown period', { alice: { period: 'week', start: 0, used: 1 } }, '"alice".period is not day or month'],
      ['future version', { format: 'plait-user-caps', version: 2, users: {} }, 'version 2, this plait reads version 1'],
    ];
    for (const [name, content, reason] of cases) {
      const dir = freshDir();
      const file = join(dir, 'user-caps.json');
      writeFileSync(file, JSON.stringify(content));
      const { l, warnings } = ledger(dir, utc(2026, 11, 29, 12));
      expect(warnings, name).toHaveLength(1);
      expect(warnings[0], name).toContain(`--state-dir: ${file} is not plait user cap state (`);
      expect(warnings[0], name).toContain(reason);
      expect(warnings[0], name).toContain(`users' cap usage starts at 0; moved it to ${file}.bad`);
      expect(l.used('bob', 'day'), name).toBe(0);
      expect(JSON.parse(readFileSync(`${file}.bad`, 'utf8')), name).toEqual(content);
      l.add('alice', 'day', 2);
      l.save();
      expect(stored(dir), name).toEqual({ format: 'plait-user-caps', version: 1, users: { alice: { period: 'day', start: utc(2026, 11, 29), used: 2 } } });
    }
  });

  it('a user named __proto__ is a plain entry both ways', () => {
    const dir = freshDir();
    const a = ledger(dir, utc(2026, 11, 29, 12));
    a.l.add('__proto__', 'day', 5);
    a.l.add('constructor', 'day', 6);
    a.l.save();
    expect(readFileSync(join(dir, 'user-caps.json'), 'utf8')).toContain('"__proto__": {');
    const b = ledger(dir, utc(2026, 11, 29, 13));
    expect(b.l.used('__proto__', 'day')).toBe(5);
    expect(b.l.used('constructor', 'day')).toBe(6);
    expect(b.l.used('toString', 'day')).toBe(0);
    expect(b.warnings).toEqual([]);
  });

  it('a save that cannot write never throws, is warned once, and keeps trying', () => {
    const dir = freshDir();
    const file = join(dir, 'user-caps.json');
    mkdirSync(join(file, 'x'), { recursive: true }); // a directory where the file goes
    const { l, warnings } = ledger(dir, utc(2026, 11, 29, 12));
    expect(warnings).toEqual([`--state-dir: cannot read ${file} (not a regular file); users' cap usage starts at 0`]);
    for (let i = 0; i < 5; i++) {
      l.add('alice', 'day', 1);
      expect(() => l.save()).not.toThrow();
    }
    expect(warnings.slice(1)).toHaveLength(1);
    expect(warnings[1]).toContain(`--state-dir: cannot save users' cap usage to ${file}: `);
    // The disk is back: the next save writes all that was counted.
    rmSync(file, { recursive: true });
    l.save();
    expect(stored(dir)).toMatchObject({ users: { alice: { used: 5 } } });
  });

  it('users whose period ended are not written again', () => {
    const dir = freshDir();
    const { l, clock } = ledger(dir, utc(2026, 11, 30, 12));
    l.add('alice', 'day', 1);
    l.add('bob', 'month', 2);
    l.save();
    clock.now = utc(2026, 12, 1, 0, 0, 1);
    l.add('carol', 'day', 3);
    l.save();
    expect(stored(dir)).toEqual({ format: 'plait-user-caps', version: 1, users: { carol: { period: 'day', start: utc(2026, 12, 1), used: 3 } } });
  });
});
