/**
 * Several households on one server, through the real CLI: two named users
 * served at once, each counted apart in /stats and /metrics; a wrong
 * secret, an unknown name and a revoked user refused alike on the wire but
 * counted apart; and revocation by editing the users file and sending
 * SIGHUP, which ends that user's session ("access revoked") and leaves the
 * other's alone.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import { curl, httpGet, killAll, MiB, parseLogLines, runPlait, spawnPlait, startClient, startServer, waitUntil, type ClientHandle, type ServerHandle } from './cli-helpers.js';

const FILE_SIZE = 4 * MiB;
const dir = mkdtempSync(join(tmpdir(), 'plait-users-'));
const usersFile = join(dir, 'users.yaml');
const secrets = { alice: randomBytes(32).toString('base64url'), bob: randomBytes(32).toString('base64url'), carol: randomBytes(32).toString('base64url') };
let identityKey: string;
let serverKey: string;
let fileServer: FileServer;
let server: ServerHandle;
let alice: ClientHandle;
let bob: ClientHandle;

function writeUsers(names: ('alice' | 'bob')[]): void {
  const lines = [`identity-key: ${identityKey}`, 'users:'];
  for (const n of names) lines.push(`  - name: ${n}`, `    secret: ${secrets[n]}`, '    max-sessions: 2');
  lines.push('  - name: carol', `    secret: ${secrets.carol}`, '    revoked: true');
  writeFileSync(usersFile, lines.join('\n') + '\n', { mode: 0o600 });
}

interface UserJson {
  user: string;
  sessions: number;
  bytesUp: number;
  bytesDown: number;
  refusals: Record<string, number>;
}
const usersOf = async (): Promise<UserJson[]> => ((await server.stats()) as unknown as { users: UserJson[] }).users;
const userArgs = (name: string): string[] => ['--user', name, '--server-key', serverKey];

beforeAll(async () => {
  const kg = await runPlait(['keygen', '--identity']);
  expect(kg.code).toBe(0);
  identityKey = /identity-key: (\S+)/.exec(kg.stdout)![1]!;
  serverKey = /server-key: (\S+)/.exec(kg.stdout)![1]!;
  writeUsers(['alice', 'bob']);
  fileServer = await startFileServer({ size: FILE_SIZE });
  // An anonymous --secret too: the helpers give one, and old clients keep working next to users.
  server = await startServer({ secret: randomBytes(32).toString('base64url'), allowPrivate: true, extraArgs: ['--users', usersFile] });
}, 60_000);

afterAll(async () => {
  await killAll();
  await fileServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('named users', () => {
  it('serves two users at once, each with its own secret, counted apart', async () => {
    alice = await startClient({ secret: secrets.alice, servers: [server.addr], extraArgs: userArgs('alice') });
    bob = await startClient({ secret: secrets.bob, servers: [server.addr], extraArgs: userArgs('bob') });
    const a = await curl(['-sS', '--fail', '--max-time', '30', '--socks5-hostname', `127.0.0.1:${alice.socksPort}`, fileServer.url], 35_000);
    expect(a.code, a.stderr).toBe(0);
    expect(a.sha256).toBe(fileServer.sha256);
    const users = await waitUntil('per-user figures', async () => {
      const u = await usersOf();
      return u.find((x) => x.user === 'alice' && x.bytesDown >= FILE_SIZE) ? u : undefined;
    });
    const ua = users.find((x) => x.user === 'alice')!;
    const ub = users.find((x) => x.user === 'bob')!;
    expect(ua.sessions).toBe(1);
    expect(ub.sessions).toBe(1);
    expect(ub.bytesDown).toBe(0);
    const metrics = await httpGet(`http://127.0.0.1:${server.statsPort}/metrics`);
    expect(metrics.body).toContain('plait_user_sessions{user="alice"} 1');
    expect(metrics.body).toMatch(/plait_user_bytes_total\{user="alice",direction="down"\} \d{7,}/);
    // The log names the user on the server only.
    expect(server.logLines().some((l) => l.msg === 'session established' && l.user === 'bob')).toBe(true);
  }, 60_000);

  it('wrong secret for a real name, unknown name, revoked user: the same AUTH_FAILED, counted apart', async () => {
    const before = (await server.stats()).counters;
    const tries: [string, string][] = [
      ['alice', randomBytes(32).toString('base64url')],
      ['mallory', randomBytes(32).toString('base64url')],
      ['carol', secrets.carol],
    ];
    const procs = tries.map(([name, secret]) =>
      spawnPlait(['client', '--secret', secret, '--server', server.addr, '--socks', '127.0.0.1:0', ...userArgs(name)], { name: `client ${name}` }),
    );
    const after = await waitUntil('three kinds of refusal counted', async () => {
      const c = (await server.stats()).counters;
      const grew = (k: string): boolean => (c[k] ?? 0) > (before[k] ?? 0);
      return grew('userBadSecret') && grew('userUnknown') && grew('userRevoked') ? c : undefined;
    });
    // The server counts before the client has read its REJECT: wait for each client to log it.
    await waitUntil('each client logged its refusal', () => procs.every((p) => p.stderr().includes('wrong user or secret')) || undefined, 15_000);
    for (const p of procs) await p.kill();
    expect(after.userBadHint ?? 0).toBe(before.userBadHint ?? 0);
    // Each client heard the same reason.
    for (const p of procs) {
      const refusals = parseLogLines(p.stderr()).map((l) => JSON.stringify(l)).filter((t) => t.includes('AUTH_FAILED'));
      expect(refusals.length, p.dump()).toBeGreaterThan(0);
      expect(refusals.join('\n')).toContain('wrong user or secret, access revoked, or tampered HELLO');
    }
    const users = await usersOf();
    expect(users.find((u) => u.user === 'alice')!.refusals.userBadSecret).toBeGreaterThan(0);
    expect(users.find((u) => u.user === 'carol')!.refusals.userRevoked).toBeGreaterThan(0);
    // A name not in the file gets no row: strangers cannot grow the table.
    expect(users.find((u) => u.user === 'mallory')).toBeUndefined();
  }, 60_000);

  it('SIGHUP after removing a user ends its session with "access revoked"; the other user is untouched', async () => {
    const aliceToken = (await alice.stats()).sessions[0]!.token;
    writeUsers(['alice']);
    server.proc.child.kill('SIGHUP');
    await waitUntil('bob revoked', () => bob.proc.stderr().includes('access revoked') || undefined, 10_000);
    await waitUntil('bob gone on the server', async () => ((await usersOf()).find((u) => u.user === 'bob')?.sessions ?? 0) === 0 || undefined);
    expect(server.logLines().some((l) => l.msg === 'users file reloaded')).toBe(true);
    // Alice keeps her session and still gets through.
    expect((await alice.stats()).sessions[0]?.token).toBe(aliceToken);
    const a = await curl(['-sS', '--fail', '--max-time', '30', '--socks5-hostname', `127.0.0.1:${alice.socksPort}`, fileServer.url], 35_000);
    expect(a.code, a.stderr).toBe(0);
    // Bob cannot come back: his new HELLOs are refused as an unknown user.
    const before = (await server.stats()).counters.userUnknown ?? 0;
    await waitUntil('bob refused', async () => ((await server.stats()).counters.userUnknown ?? 0) > before || undefined, 20_000);
    expect((await bob.stats()).sessions.length).toBe(0);
  }, 60_000);
});

describe('a user data cap', () => {
  it('is reached, ends the session, and is still there after a restart (--state-dir)', async () => {
    const stateDir = join(dir, 'state');
    const capFile = join(dir, 'cap-users.yaml');
    writeFileSync(capFile, `identity-key: ${identityKey}\nusers:\n  - {name: dave, secret: ${secrets.alice}, cap: 1MB/day}\n`, { mode: 0o600 });
    const args = ['--users', capFile, '--state-dir', stateDir];
    let capServer = await startServer({ secret: randomBytes(32).toString('base64url'), allowPrivate: true, extraArgs: args });
    const dave = await startClient({ secret: secrets.alice, servers: [capServer.addr], extraArgs: userArgs('dave') });
    await curl(['-sS', '--max-time', '20', '--socks5-hostname', `127.0.0.1:${dave.socksPort}`, fileServer.url], 25_000);
    const capOf = async (s: ServerHandle): Promise<{ used: number; bytes: number } | undefined> =>
      ((await s.stats()) as unknown as { users: (UserJson & { cap?: { used: number; bytes: number } })[] }).users.find((u) => u.user === 'dave')?.cap;
    const used = await waitUntil('cap usage counted', async () => {
      const c = await capOf(capServer);
      return c && c.used >= 1_000_000 ? c.used : undefined;
    });
    await waitUntil('dave told why', () => dave.proc.stderr().includes('data cap reached') || undefined, 10_000);
    await capServer.proc.kill();
    capServer = await startServer({ secret: randomBytes(32).toString('base64url'), allowPrivate: true, extraArgs: args });
    const after = await capOf(capServer);
    expect(after?.used).toBeGreaterThanOrEqual(used);
    // A new session is refused with the reason, proven with dave's secret (so the client shows it).
    const again = spawnPlait(['client', '--secret', secrets.alice, '--server', capServer.addr, '--socks', '127.0.0.1:0', ...userArgs('dave')], { name: 'client dave' });
    await waitUntil('refused for the cap', () => again.stderr().includes('data cap reached') || undefined, 15_000);
    await again.kill();
    await capServer.proc.kill();
  }, 90_000);
});
