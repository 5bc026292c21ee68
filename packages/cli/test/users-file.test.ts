import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateIdentity } from '@plait/core';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { parseClientUser } from '../src/run-client.js';
import { loadUsersFile, parseRate, parseUserCap, usersToRevoke } from '../src/users-file.js';

const dir = mkdtempSync(join(tmpdir(), 'plait-users-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string, name = `u${n++}.yaml`, mode = 0o600): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}
const ID = Buffer.from(generateIdentity().privateRaw).toString('base64url');
const S1 = 'alice-secret-Xy7QpL2mZ9vRt4sW1uB6';
const S2 = 'bob-secret-nE3cHjKfGa0dY8Xy7QpL2m';

function usage(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('users file', () => {
  it('reads users with limits from YAML, secrets inline or from a file relative to it', () => {
    file(S2 + '\n', 'bob.key');
    const f = file(`identity-key: ${ID}\nusers:\n  - {name: alice, secret: ${S1}, max-sessions: 3, rate: 50mbit, cap: 100GiB/month, publish: [8080, 2222]}\n  - {name: bob, secret-file: bob.key}\n`);
    const t = loadUsersFile(f);
    expect([...t.users.keys()]).toEqual(['alice', 'bob']);
    const a = t.users.get('alice')!;
    expect(a.maxSessions).toBe(3);
    expect(a.rateBytesPerSec).toBe(50e6 / 8);
    expect(a.cap).toEqual({ bytes: 100 * 2 ** 30, period: 'month' });
    expect(a.publish).toEqual([8080, 2222]);
    expect(t.users.get('bob')!.revoked).toBe(false);
  });

  it('reads JSON too', () => {
    const f = file(JSON.stringify({ 'identity-key': ID, users: [{ name: 'alice', secret: S1 }] }), 'u.json');
    expect(loadUsersFile(f).users.has('alice')).toBe(true);
  });

  it.each([
    [`users: []\n`, /identity-key: give the server identity key/],
    [`identity-key: abc\nusers: []\n`, /identity-key: not a 32-byte base64url key/],
    [`identity-key: ${ID}\nusers: {alice: 1}\n`, /users: expected a list/],
    [`identity-key: ${ID}\nusers:\n  - {secret: ${S1}}\n`, /users\[0\]: name: required/],
    [`identity-key: ${ID}\nusers:\n  - {name: "al ice", secret: ${S1}}\n`, /user "al ice": name: user name/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice}\n`, /user alice: give secret or secret-file/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice, secret: short}\n`, /user alice: secret: at least 16 bytes/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice, secret: ${S1}}\n  - {name: alice, secret: ${S2}}\n`, /user alice: name: listed twice/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice, secret: ${S1}}\n  - {name: bob, secret: ${S1}}\n`, /user bob: secret: the same as user alice's/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice, secret: ${S1}, rate: 50mb}\n`, /user alice: rate: "50mb" is not a rate/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice, secret: ${S1}, cap: 100GiB}\n`, /user alice: cap: "100GiB" is not a cap/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice, secret: ${S1}, max_sessions: 2}\n`, /user alice: max_sessions: unknown key \(did you mean "max-sessions"\?\)/],
    [`identity-key: ${ID}\nusers:\n  - {name: alice, secret: ${S1}, publish: [70000]}\n`, /user alice: publish: 70000 is not a port/],
  ])('refuses %j in one line naming the file, user and key', (text, re) => {
    const f = file(text);
    const msg = usage(() => loadUsersFile(f));
    expect(msg.startsWith(`${f}: `)).toBe(true);
    expect(msg).toMatch(re);
    expect(msg).not.toContain('\n');
  });

  it('a missing file is one line naming --users', () => {
    expect(usage(() => loadUsersFile(join(dir, 'nope.yaml')))).toMatch(/^--users: cannot read .*nope\.yaml: ENOENT/);
  });

  it('a reload revokes removed, revoked and re-keyed users only', () => {
    const before = loadUsersFile(file(`identity-key: ${ID}\nusers:\n  - {name: a, secret: ${S1}}\n  - {name: b, secret: ${S2}}\n  - {name: c, secret: ${S1}x}\n  - {name: d, secret: ${S2}x}\n`));
    const after = loadUsersFile(file(`identity-key: ${ID}\nusers:\n  - {name: a, secret: ${S1}}\n  - {name: b, secret: ${S2}y}\n  - {name: c, secret: ${S1}x, revoked: true}\n`));
    expect([...usersToRevoke(before, after)].sort()).toEqual(['b', 'c', 'd']);
  });

  it('rates and caps', () => {
    expect(parseRate('800kbit')).toBe(100_000);
    expect(parseRate('1.5gbit')).toBe(187_500_000);
    expect(parseRate('50MB')).toBeUndefined();
    expect(parseUserCap('5GB/day')).toEqual({ bytes: 5e9, period: 'day' });
    expect(parseUserCap('5GB/week')).toBeUndefined();
  });

  it('client --user needs --server-key, and both are checked', () => {
    expect(parseClientUser({})).toBeUndefined();
    expect(usage(() => parseClientUser({ user: 'alice' }))).toMatch(/^--user: needs --server-key/);
    expect(usage(() => parseClientUser({ serverKey: 'x' }))).toMatch(/^--server-key: only with --user/);
    expect(usage(() => parseClientUser({ user: 'a b', serverKey: 'x' }))).toMatch(/^--user: user name "a b"/);
    expect(usage(() => parseClientUser({ user: 'alice', serverKey: 'abc' }))).toMatch(/^--server-key: not a 32-byte/);
    const key = Buffer.from(generateIdentity().publicKey).toString('base64url');
    expect(parseClientUser({ user: 'alice', serverKey: key })?.name).toBe('alice');
  });
});
