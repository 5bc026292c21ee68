import { describe, expect, it } from 'vitest';
import { parseFallbacks } from '../src/run-client.js';
import { parseDrainGrace, parseInstanceId } from '../src/run-server.js';
import { usage } from './usage.js';

describe('scale-out flags', () => {
  it('--instance-id takes 0-65535 (the u16 a JOIN carries) and names the flag otherwise', () => {
    expect(parseInstanceId('0')).toBe(0);
    expect(parseInstanceId('65535')).toBe(65535);
    for (const bad of ['65536', '-1', '1.5', 'x', '', '0x10']) expect(usage(() => parseInstanceId(bad))).toMatch(/^--instance-id: /);
  });

  it('--drain-grace takes seconds (0 stops at once), in ms', () => {
    expect(parseDrainGrace('0')).toBe(0);
    expect(parseDrainGrace('8')).toBe(8_000);
    expect(parseDrainGrace('2.5')).toBe(2_500);
    for (const bad of ['-1', 'soon', '86401', '']) expect(usage(() => parseDrainGrace(bad))).toMatch(/^--drain-grace: /);
  });

  it('--fallback-server: one site per flag, its addresses comma-separated; a primary address twice is refused', () => {
    const primary = [{ host: '192.0.2.1', port: 7000 }];
    expect(parseFallbacks(['198.51.100.1:7000,198.51.100.2:7000', '203.0.113.9:7000'], primary)).toEqual([
      [{ host: '198.51.100.1', port: 7000 }, { host: '198.51.100.2', port: 7000 }],
      [{ host: '203.0.113.9', port: 7000 }],
    ]);
    expect(usage(() => parseFallbacks(['192.0.2.1:7000'], primary))).toMatch(/^--fallback-server: 192.0.2.1:7000 is already a server/);
    expect(usage(() => parseFallbacks(['nope'], primary))).toMatch(/^--fallback-server/);
  });
});
