/** The command line itself: help, usage errors, keygen, and the self-contained demo. */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { curl, killAll, runPlait, spawnPlait, waitUntil } from './cli-helpers.js';

afterAll(killAll);

const validSecret = (): string => randomBytes(32).toString('base64url');

describe('plait CLI basics', () => {
  it('--help exits 0 and lists the commands', async () => {
    const r = await runPlait(['--help']);
    expect(r.code, r.stderr).toBe(0);
    for (const cmd of ['keygen', 'server', 'client', 'demo']) expect(r.stdout).toMatch(new RegExp(`^\\s+${cmd}\\b`, 'm'));
  }, 20_000);

  it('`plait server --listen nonsense --secret <valid>` exits 2 with a one-line error naming --listen', async () => {
    const r = await runPlait(['server', '--listen', 'nonsense', '--secret', validSecret()]);
    expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(2);
    const err = r.stderr.trim();
    expect(err.split('\n'), `stderr: ${r.stderr}`).toHaveLength(1);
    expect(err).toContain('--listen');
  }, 20_000);

  it('`plait client` without --server exits 2 with a one-line error naming --server', async () => {
    for (const args of [['client'], ['client', '--secret', validSecret(), '--socks', '127.0.0.1:0']]) {
      const r = await runPlait(args);
      expect(r.code, `${args.join(' ')}: stderr: ${r.stderr}`).toBe(2);
      const err = r.stderr.trim();
      expect(err.split('\n'), `stderr: ${r.stderr}`).toHaveLength(1);
      expect(err).toContain('--server');
    }
  }, 20_000);

  it('keygen prints a 43-character base64url secret (32 random bytes)', async () => {
    const a = await runPlait(['keygen']);
    const b = await runPlait(['keygen']);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(Buffer.from(a.stdout.trim(), 'base64url')).toHaveLength(32);
    expect(b.stdout).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(a.stdout).not.toBe(b.stdout);
  }, 20_000);
});

describe('plait demo', () => {
  it('`plait demo --duration 6` prints a curl --socks5-hostname line that works while the demo runs', async () => {
    const demo = spawnPlait(['demo', '--duration', '6'], { name: 'plait demo' });
    const lines = await waitUntil(
      'the demo to print its curl lines',
      () => {
        if (demo.exited) throw new Error(`demo exited early\n${demo.dump()}`);
        const ls = demo
          .stdout()
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l.startsWith('curl --socks5-hostname '));
        return ls.length >= 2 ? ls : undefined;
      },
      5_000,
      20,
    );
    const bulk = lines.find((l) => l.includes('/file'));
    expect(bulk, demo.dump()).toBeDefined();
    const hello = lines.find((l) => !l.includes('/file'));
    expect(hello, demo.dump()).toBeDefined();
    // Loopback only, as promised.
    for (const l of lines) for (const m of l.matchAll(/\b(\d+\.\d+\.\d+\.\d+)\b/g)) expect(m[1]).toMatch(/^127\./);

    // Exactly the printed command lines (split on blanks: they contain no quoting).
    const bulkArgs = bulk!.split(/\s+/).slice(1);
    // The printed line writes to /dev/null: ask curl (-w) how much it fetched.
    const res = await curl([...bulkArgs, '-sS', '--fail', '-w', '%{size_download}'], 15_000);
    expect(res.code, `curl: ${res.stderr}\n${demo.dump()}`).toBe(0);
    expect(demo.exited, 'the download finished while the demo was still running').toBe(false);
    const size = Number(/size=(\d+)/.exec(bulk!)?.[1] ?? NaN);
    expect(Number.isFinite(size)).toBe(true);
    expect(Number(res.head)).toBe(size);

    const helloArgs = hello!.split(/\s+/).slice(1);
    const page = await curl([...helloArgs, '-sS', '--fail'], 10_000);
    expect(page.code, page.stderr).toBe(0);
    expect(page.head).toContain('hello through plait');

    const { code } = await demo.waitExit(10_000);
    expect(code, demo.dump()).toBe(0);
  }, 30_000);
});
