import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { parseCap, parseCaps, parseSize } from '../src/cap-flag.js';
import { CommandConfig } from '../src/config-file.js';
import { buildProgram } from '../src/main.js';
import { checkClientFlags, type ClientFlags } from '../src/run-client.js';
import { toPrometheus } from '../src/stats.js';

const usage = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('no UsageError');
};

describe('--cap', () => {
  it('sizes: decimal and binary units, plain bytes', () => {
    expect(parseSize('--cap', '4MiB')).toBe(4 * 2 ** 20);
    expect(parseSize('--cap', '10GiB')).toBe(10 * 2 ** 30);
    expect(parseSize('--cap', '500MB')).toBe(500e6);
    expect(parseSize('--cap', '1.5GB')).toBe(1.5e9);
    expect(parseSize('--cap', '2TiB')).toBe(2 * 2 ** 40);
    expect(parseSize('--cap', '1048576')).toBe(2 ** 20);
    expect(parseSize('--cap', '100 KiB')).toBe(100 * 1024);
    for (const bad of ['', '0', '4 Mb', '4mb', '-1GB', '1e9', 'GiB', '4MiBs', '0.0000001B', '99999999999999PiB']) {
      expect(usage(() => parseSize('--cap', bad)), bad).toMatch(/^--cap: ".*" is (not a size|out of range)/);
    }
  });

  it('PATH=SIZE[/day|/month][:backup|:off]: monthly and --cap-action by default', () => {
    expect(parseCap('wwan0=10GiB', 'backup')).toEqual({ path: 'wwan0', bytes: 10 * 2 ** 30, period: 'month', action: 'backup' });
    expect(parseCap('wwan0=1GB/day', 'off')).toEqual({ path: 'wwan0', bytes: 1e9, period: 'day', action: 'off' });
    expect(parseCap('10.0.0.2=4MiB/day:off', 'backup')).toEqual({ path: '10.0.0.2', bytes: 4 * 2 ** 20, period: 'day', action: 'off' });
    expect(parseCap('fd00::2=4MiB:backup', 'off')).toEqual({ path: 'fd00::2', bytes: 4 * 2 ** 20, period: 'month', action: 'backup' });
    expect(usage(() => parseCap('wwan0', 'backup'))).toBe('--cap: expected PATH=SIZE[/day|/month][:backup|:off], like wwan0=10GiB/month, got "wwan0"');
    expect(usage(() => parseCap('wwan0=4MiB/week', 'backup'))).toBe('--cap: "week" is not a period; use /day or /month');
    expect(usage(() => parseCap('wwan0=4MiB/day:drop', 'backup'))).toBe('--cap: "drop" is not a cap action; use backup or off');
    expect(usage(() => parseCap('bad/name=4MiB', 'backup'))).toMatch(/^--cap: "bad\/name" is not an interface name/);
    expect(usage(() => parseCaps(['wwan0=1GB', 'WWAN0=2GB'], 'backup'))).toBe('--cap: WWAN0 has more than one cap; give one per path');
    expect(usage(() => parseCaps([], 'later'))).toBe('--cap-action: "later" is not a cap action; use backup or off');
  });

  it('from a config file: `cap` as a list, `state-dir` relative to the file; a missing --state-dir is warned about', () => {
    const dir = mkdtempSync(join(tmpdir(), 'plait-capcfg-'));
    try {
      const file = join(dir, 'client.yaml');
      writeFileSync(file, ['server: 127.0.0.1:9000', 'secret: cap-config-test-secret-0123456789abcdef', 'socks: 127.0.0.1:1080', 'bind: [127.0.0.1, 127.0.0.2]', 'cap: [127.0.0.2=4MiB/day, "eth9=1GB:off"]', 'cap-action: off', 'state-dir: state'].join('\n'));
      const client = buildProgram().commands.find((c) => c.name() === 'client')!;
      client.parseOptions(['--config', file]);
      const flags = new CommandConfig<ClientFlags>(client).load().flags;
      const checked = checkClientFlags(flags);
      expect(checked.caps).toEqual([
        { path: '127.0.0.2', bytes: 4 * 2 ** 20, period: 'day', action: 'off' },
        { path: 'eth9', bytes: 1e9, period: 'month', action: 'off' },
      ]);
      expect(checked.stateDir).toBe(join(dir, 'state'));
      expect(checked.warnings).toContain('--cap: eth9 is not given to --bind, --via, --backup or --overflow (nor an address of one); the cap counts nothing until it is');
      writeFileSync(file, ['server: 127.0.0.1:9000', 'secret: cap-config-test-secret-0123456789abcdef', 'socks: 127.0.0.1:1080', 'cap: 127.0.0.1=1MiB', 'bind: 127.0.0.1'].join('\n'));
      const again = checkClientFlags(new CommandConfig<ClientFlags>(client).load().flags);
      expect(again.warnings).toContain('--cap: without --state-dir, cap usage is not saved and starts at 0 on every restart');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('/metrics shows each cap and the per-path totals', () => {
    const text = toPrometheus({
      role: 'client',
      uptimeSeconds: 1,
      sessions: [],
      counters: {},
      paths: [{ key: '10.0.0.2>1.2.3.4:443', bytesSent: 10, bytesReceived: 20 }],
      caps: [{ path: 'wwan0', period: 'day', capBytes: 4096, usedBytes: 5000, periodStart: 1_700_000_000_000, periodEnd: 1_700_086_400_000, action: 'backup', state: 'reached' }],
    });
    expect(text).toContain('plait_cap_used_bytes{path="wwan0",period="day",action="backup"} 5000');
    expect(text).toContain('plait_cap_limit_bytes{path="wwan0",period="day",action="backup"} 4096');
    expect(text).toContain('plait_cap_reached{path="wwan0",period="day",action="backup"} 1');
    expect(text).toContain('plait_cap_period_start_seconds{path="wwan0",period="day",action="backup"} 1700000000');
    expect(text).toContain('plait_path_sent_bytes_total{path="10.0.0.2>1.2.3.4:443"} 10');
    expect(text).toContain('plait_path_received_bytes_total{path="10.0.0.2>1.2.3.4:443"} 20');
  });
});
