import { describe, expect, it } from 'vitest';
import { ACCEPTOR_COUNTERS, CLIENT_COUNTERS, counterHelp, makeCounters, SERVER_COUNTERS, SESSION_COUNTERS } from '../src/counters.js';
import { makePair } from './harness.js';

describe('counters are declared once, with what they count', () => {
  it('every counter a live session and acceptor keep has a declaration (help text for /metrics)', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }] });
    const names = [...Object.keys(pair.client.counters), ...Object.keys(pair.server().counters), ...Object.keys(pair.acceptor.counters)];
    expect(names.length).toBeGreaterThan(30);
    for (const n of names) expect(counterHelp(n), n).toMatch(/\.$/);
  });

  it('declarations start at zero, and no name means two things', () => {
    const sets = [SESSION_COUNTERS, ACCEPTOR_COUNTERS, SERVER_COUNTERS, CLIENT_COUNTERS];
    for (const defs of sets) expect(Object.values(makeCounters(defs)).every((v) => v === 0)).toBe(true);
    const seen = new Map<string, string>();
    for (const defs of sets) {
      for (const [k, v] of Object.entries(defs)) {
        expect(seen.get(k) ?? v, `${k} declared twice with different meanings`).toBe(v);
        seen.set(k, v);
      }
    }
    expect(counterHelp('rejectAuthFailed')).toBe('Handshakes refused with AUTH_FAILED.');
    expect(counterHelp('noSuchCounter')).toBeUndefined();
    expect(counterHelp('__proto__')).toBeUndefined();
  });
});
