import { describe, expect, it } from 'vitest';
import { ErrorCode, PlaitError, RemoteError } from '@plait/core';
import { classifyPathError } from '../src/path-problem.js';
import type { PathSpec } from '../src/path-manager.js';

const spec = (local?: string, device?: string): PathSpec => ({
  key: 'k',
  local: { address: local, role: 'regular', origin: 'test', ...(device ? { device } : {}) },
  remote: { host: 'vps.example', port: 7000, id: 0 },
});
const sys = (code: string): Error => Object.assign(new Error(`x ${code}`), { code });

describe('classifyPathError: why a path is down, in words a user can act on', () => {
  it('names each system failure', () => {
    const cases: [Error, string, RegExp][] = [
      [sys('ECONNREFUSED'), 'refused', /vps\.example:7000 refused the connection/],
      [sys('ENOTFOUND'), 'unresolvable', /cannot resolve vps\.example/],
      [sys('EAI_AGAIN'), 'unresolvable', /cannot resolve/],
      [sys('EADDRNOTAVAIL'), 'address-not-local', /10\.9\.9\.9 is not an address of this machine \(check --bind\)/],
      [sys('ENODEV'), 'interface-missing', /interface wwan0 does not exist/],
      [sys('EPERM'), 'permission', /CAP_NET_RAW/],
      [sys('ENETUNREACH'), 'unreachable', /unreachable from 10\.9\.9\.9/],
      [sys('ETIMEDOUT'), 'timeout', /timed out/],
    ];
    for (const [e, kind, msg] of cases) {
      const p = classifyPathError(e, spec('10.9.9.9', 'wwan0'));
      expect(p.kind, (e as { code?: string }).code).toBe(kind);
      expect(p.message).toMatch(msg);
    }
  });

  it('tells proven refusals from unproven ones', () => {
    const skew = classifyPathError(new RemoteError(ErrorCode.STALE_TIMESTAMP, 'stale', { verified: true, serverTime: 1 }), spec(), 45_300);
    expect(skew).toEqual({ kind: 'clock-skew', message: expect.stringMatching(/45\.3 s behind the server's/) as unknown as string });
    const ahead = classifyPathError(new RemoteError(ErrorCode.STALE_TIMESTAMP, 'stale', { verified: true, serverTime: 1 }), spec(), -3_000);
    expect(ahead.message).toMatch(/3\.0 s ahead of the server's/);
    expect(classifyPathError(new RemoteError(ErrorCode.STALE_TIMESTAMP, 'stale'), spec()).kind).toBe('unverified-refusal');
    expect(classifyPathError(new RemoteError(ErrorCode.UNKNOWN_TOKEN, 'gone'), spec()).kind).toBe('unverified-refusal');
    expect(classifyPathError(new RemoteError(ErrorCode.AUTH_FAILED, 'no'), spec()).kind).toBe('auth-failed');
    expect(classifyPathError(new PlaitError(ErrorCode.AUTH_FAILED, 'server failed to prove'), spec()).message).toMatch(/same secret/);
    expect(classifyPathError(new PlaitError(ErrorCode.TIMEOUT, 'handshake timed out'), spec()).kind).toBe('timeout');
    expect(classifyPathError(new RemoteError(ErrorCode.BUSY, 'busy'), spec()).kind).toBe('server-busy');
  });
});
