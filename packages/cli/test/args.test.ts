import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  apparentEntropyBits,
  isLoopbackHost,
  parseBackup,
  parseCount,
  parseHostPort,
  parseInterfaceName,
  parseLatencyPorts,
  parseLogLevel,
  parseScheduler,
  parseSeconds,
  resolveProxyAuth,
  resolveSecret,
  sourceWarnings,
} from '../src/args.js';
import { usage } from './usage.js';

const tmp = mkdtempSync(join(tmpdir(), 'plait-args-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('parseHostPort', () => {
  it('accepts listen addresses with port 0 and connect addresses with ports 1-65535', () => {
    expect(parseHostPort('--socks', '127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseHostPort('--socks', '[::1]:1080')).toEqual({ host: '::1', port: 1080 });
    expect(parseHostPort('--socks', '1080')).toEqual({ host: '127.0.0.1', port: 1080 });
    expect(parseHostPort('--server', 'vps.example.net:7000', { connect: true })).toEqual({ host: 'vps.example.net', port: 7000 });
    expect(usage(() => parseHostPort('--server', 'vps.example.net:0', { connect: true }))).toMatch(/^--server: port must be 1-65535/);
  });
  it.each(['127.0.0.1:65536', '127.0.0.1:-1', '127.0.0.1:', 'nonsense', 'x:y', '::1:80', '[1.2.3.4]:80', 'a b:80'])('refuses %j naming the flag', (v) => {
    expect(usage(() => parseHostPort('--http', v))).toMatch(/^--http: /);
  });
});

describe('parseLogLevel / parseScheduler / parseCount / parseSeconds', () => {
  it('log levels', () => {
    for (const l of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) expect(parseLogLevel(l)).toBe(l);
    expect(usage(() => parseLogLevel('bogus'))).toMatch(/^--log-level: "bogus" is not a level; use fatal, error, warn, info, debug/);
    expect(usage(() => parseLogLevel('INFO'))).toMatch(/^--log-level: /);
  });
  it('schedulers', () => {
    expect(parseScheduler('redundant')).toBe('redundant');
    expect(usage(() => parseScheduler('fastest'))).toMatch(/^--scheduler: "fastest" is not a scheduler; use earliest-arrival, round-robin or redundant$/);
  });
  it('latency ports: a comma list of ports, or none', () => {
    expect(parseLatencyPorts('22,3389,5060')).toEqual([22, 3389, 5060]);
    expect(parseLatencyPorts(' 22, 22 ,443 ')).toEqual([22, 443]);
    expect(parseLatencyPorts('none')).toEqual([]);
    for (const v of ['0', '65536', 'ssh', '22;80', '1e3', '-22', '22,,80']) expect(usage(() => parseLatencyPorts(v)), v).toMatch(/^--latency-ports: ".*" is not a port/);
    expect(usage(() => parseLatencyPorts(Array.from({ length: 65 }, (_, i) => i + 1).join(',')))).toMatch(/^--latency-ports: at most 64 ports, got 65$/);
  });
  it('counts: positive integers up to a bound', () => {
    expect(parseCount('--max-sessions', '256', 100_000)).toBe(256);
    for (const v of ['0', '-1', '1.5', '1e3', '', ' 3', '0x10', '100001']) expect(usage(() => parseCount('--max-sessions', v, 100_000)), v).toMatch(/^--max-sessions: /);
  });
  it('seconds: a setTimeout can hold them', () => {
    expect(parseSeconds('--duration', '5')).toBe(5);
    expect(parseSeconds('--duration', '2147483')).toBe(2147483);
    // 2^31 ms and more would fire at once (Node clamps an overflowing timeout to 1 ms).
    expect(usage(() => parseSeconds('--duration', '2147484'))).toMatch(/^--duration: /);
    expect(usage(() => parseSeconds('--interval', '0'))).toMatch(/^--interval: /);
  });
});

describe('interfaces and backups', () => {
  it('interface names follow the kernel rules', () => {
    for (const n of ['eth0', 'wlan0', 'wwan0', 'enp0s31f6', 'br-lan', 'veth1.100', 'a'.repeat(15)]) expect(parseInterfaceName('--via', n)).toBe(n);
    for (const n of ['', 'eth0/x', 'has space', 'a:b', '.', '..', 'a'.repeat(16)]) expect(usage(() => parseInterfaceName('--via', n)), n).toMatch(/^--via: /);
  });
  it('--backup takes an IP address or an interface name', () => {
    expect(parseBackup('10.0.0.7')).toBe('10.0.0.7');
    expect(parseBackup('fe80::1')).toBe('fe80::1');
    expect(parseBackup('wwan0')).toBe('wwan0');
    expect(usage(() => parseBackup('has space'))).toMatch(/^--backup: /);
  });
});

describe('sourceWarnings', () => {
  const ifaces = { lo: [{ address: '127.0.0.1' }, { address: '::1' }], eth0: [{ address: '192.168.1.20' }, { address: 'fe80::1' }] };
  it('is quiet for present addresses and interfaces', () => {
    expect(sourceWarnings({ binds: ['127.0.0.1', '127.0.0.2', '192.168.1.20'], vias: ['eth0'], backups: ['lo', 'FE80::1'] }, ifaces)).toEqual([]);
  });
  it('names the flag of each absent source', () => {
    const w = sourceWarnings({ binds: ['10.9.9.9'], vias: ['wlan0'], backups: ['wwan0', '10.8.8.8'] }, ifaces);
    expect(w).toHaveLength(4);
    expect(w[0]).toMatch(/^--bind: 10\.9\.9\.9 is not an address of this machine/);
    expect(w[1]).toMatch(/^--via: there is no interface wlan0/);
    expect(w[2]).toMatch(/^--backup: there is no interface wwan0/);
    expect(w[3]).toMatch(/^--backup: 10\.8\.8\.8 is not an address/);
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['::1', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.1', false],
    ['192.168.1.2', false],
    ['example.com', false],
    ['localhost.example.com', false],
  ])('%s -> %s', (h, want) => expect(isLoopbackHost(h)).toBe(want));
});

describe('resolveSecret', () => {
  const strong = randomBytes(32).toString('base64url');

  it('--secret in argv works and warns that ps shows it', () => {
    const r = resolveSecret({ secret: strong }, {});
    expect(r.secret).toBe(strong);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/--secret is visible to every local user \(ps/);
    expect(r.warnings[0]).not.toContain(strong);
  });

  it('PLAIT_SECRET with a keygen secret gives no warning', () => {
    expect(resolveSecret({}, { PLAIT_SECRET: strong })).toEqual({ secret: strong, warnings: [] });
  });

  it('--secret-file: surrounding whitespace (the trailing newline) is trimmed, inner text kept', () => {
    const f = join(tmp, 'a.secret');
    writeFileSync(f, `  ${strong} x\r\n\n`, { mode: 0o600 });
    chmodSync(f, 0o600);
    expect(resolveSecret({ secretFile: f }, {})).toEqual({ secret: `${strong} x`, warnings: [] });
  });

  it('--secret-file readable by group or others warns with the chmod to run', () => {
    for (const mode of [0o640, 0o604, 0o644]) {
      const f = join(tmp, `m${mode.toString(8)}.secret`);
      writeFileSync(f, strong);
      chmodSync(f, mode);
      const r = resolveSecret({ secretFile: f }, {});
      expect(r.warnings, mode.toString(8)).toHaveLength(1);
      expect(r.warnings[0]).toContain(`chmod 600 ${f}`);
    }
  });

  it('refuses a missing, empty, or too-short secret naming where it came from', () => {
    expect(usage(() => resolveSecret({}, {}))).toMatch(/^--secret: a secret is required/);
    expect(usage(() => resolveSecret({ secret: 'short' }, {}))).toMatch(/^--secret: the secret must be at least 16 bytes/);
    expect(usage(() => resolveSecret({}, { PLAIT_SECRET: 'short' }))).toMatch(/^PLAIT_SECRET: /);
    expect(usage(() => resolveSecret({ secretFile: join(tmp, 'missing') }, {}))).toMatch(/^--secret-file: cannot read .*ENOENT/);
    expect(usage(() => resolveSecret({ secret: strong, secretFile: 'x' }, {}))).toMatch(/^--secret-file: /);
    const big = join(tmp, 'big.secret');
    writeFileSync(big, 'x'.repeat(70_000), { mode: 0o600 });
    expect(usage(() => resolveSecret({ secretFile: big }, {}))).toMatch(/^--secret-file: .*too large/);
  });

  it('warns on a short or repetitive secret, pointing at plait keygen', () => {
    for (const weak of ['0123456789abcdef', 'correct horse battery', 'a'.repeat(40), 'ab'.repeat(20)]) {
      const r = resolveSecret({}, { PLAIT_SECRET: weak });
      expect(r.warnings, weak).toHaveLength(1);
      expect(r.warnings[0]).toContain('plait keygen');
      expect(r.warnings[0]).not.toContain(weak);
    }
  });

  it('does not warn on random secrets of 128 bits and more (hex, base64)', () => {
    // Fixed pseudo-random bytes, so the test cannot flake on an unlucky draw.
    const bytes = (i: number, n: number): Buffer => createHash('sha512').update(`plait-${i}`).digest().subarray(0, n);
    for (let i = 0; i < 500; i++) {
      for (const s of [bytes(i, 16).toString('hex'), bytes(i, 24).toString('base64'), bytes(i, 32).toString('base64url')]) {
        expect(resolveSecret({}, { PLAIT_SECRET: s }).warnings, s).toEqual([]);
      }
    }
  });

  it('apparentEntropyBits: repeats count for little', () => {
    expect(apparentEntropyBits('a'.repeat(64))).toBe(0);
    expect(apparentEntropyBits('ab'.repeat(32))).toBeLessThan(80);
    expect(apparentEntropyBits(randomBytes(32).toString('base64url'))).toBeGreaterThan(180);
  });
});

describe('resolveProxyAuth', () => {
  it('takes --proxy-auth, --socks-auth, --proxy-auth-file or PLAIT_PROXY_AUTH', () => {
    expect(resolveProxyAuth({ proxyAuth: 'alice:pw:with:colons' }, {}).auth).toEqual({ username: 'alice', password: 'pw:with:colons' });
    expect(resolveProxyAuth({ socksAuth: 'bob:pw' }, {}).auth).toEqual({ username: 'bob', password: 'pw' });
    expect(resolveProxyAuth({}, { PLAIT_PROXY_AUTH: 'carol:pw' })).toEqual({ auth: { username: 'carol', password: 'pw' }, warnings: [] });
    expect(resolveProxyAuth({}, {})).toEqual({ auth: undefined, warnings: [] });
    const f = join(tmp, 'proxy.auth');
    writeFileSync(f, 'dave:pw\n', { mode: 0o600 });
    chmodSync(f, 0o600);
    expect(resolveProxyAuth({ proxyAuthFile: f }, {})).toEqual({ auth: { username: 'dave', password: 'pw' }, warnings: [] });
    chmodSync(f, 0o644);
    expect(resolveProxyAuth({ proxyAuthFile: f }, {}).warnings[0]).toContain(`chmod 600 ${f}`);
  });

  it('warns when the credentials are in argv, naming the flag used', () => {
    expect(resolveProxyAuth({ proxyAuth: 'a:b' }, {}).warnings[0]).toMatch(/--proxy-auth/);
    expect(resolveProxyAuth({ socksAuth: 'a:b' }, {}).warnings[0]).toMatch(/--socks-auth/);
  });

  it('refuses malformed credentials naming the flag', () => {
    expect(usage(() => resolveProxyAuth({ proxyAuth: 'nocolon' }, {}))).toMatch(/^--proxy-auth: expected USER:PASS/);
    expect(usage(() => resolveProxyAuth({ proxyAuth: ':pw' }, {}))).toMatch(/^--proxy-auth: /);
    expect(usage(() => resolveProxyAuth({ socksAuth: 'user:' }, {}))).toMatch(/^--socks-auth: /);
    expect(usage(() => resolveProxyAuth({ proxyAuth: `${'u'.repeat(256)}:p` }, {}))).toMatch(/^--proxy-auth: .*255/);
    expect(usage(() => resolveProxyAuth({}, { PLAIT_PROXY_AUTH: 'x' }))).toMatch(/^PLAIT_PROXY_AUTH: /);
    expect(usage(() => resolveProxyAuth({ proxyAuth: 'a:b', socksAuth: 'c:d' }, {}))).toMatch(/^--proxy-auth: /);
    expect(usage(() => resolveProxyAuth({ proxyAuth: 'a:b', proxyAuthFile: 'f' }, {}))).toMatch(/^--proxy-auth: /);
  });
});
