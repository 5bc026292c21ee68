/**
 * The CLI's local attack surface (issue 13, items 5-9), through the real
 * `plait` command: proxy credentials on every local proxy, secrets in argv
 * or loose files, /stats against DNS rebinding and token leaks, the demo's
 * open-proxy risk, and every bad flag answered with exit 2 naming the flag.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import {
  connectTcp,
  curl,
  httpGet,
  killAll,
  MiB,
  occupyPort,
  parseLogLines,
  spawnPlait,
  startClient,
  startServer,
  waitUntil,
  type ClientHandle,
  type Proc,
  type ServerHandle,
} from './cli-helpers.js';

const keygen = (): string => randomBytes(32).toString('base64url');
const WARN = 40; // pino level

let fileServer: FileServer;
let tmp: string;

beforeAll(async () => {
  fileServer = await startFileServer({ size: 1 * MiB });
  tmp = mkdtempSync(join(tmpdir(), 'plait-surface-'));
});

afterAll(async () => {
  await killAll();
  await fileServer?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Run plait to completion with PLAIT_SECRET in the environment (not in argv). */
async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const p = spawnPlait(args, { env: { PLAIT_SECRET: keygen(), ...env } });
  try {
    const { code } = await p.waitExit(15_000);
    return { code, stderr: p.stderr(), stdout: p.stdout() };
  } finally {
    await p.kill();
  }
}

/** Start a long-running plait and wait for a log line with `msg`. */
async function startUntil(args: string[], msg: string, env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const p = spawnPlait(args, { env: { PLAIT_SECRET: keygen(), ...env } });
  await waitUntil(`"${msg}" in the log`, () => {
    if (p.exited) throw new Error(`exited early\n${p.dump()}`);
    return parseLogLines(p.stderr()).some((l) => l.msg === msg);
  });
  return p;
}

const warnings = (p: Proc): string[] =>
  parseLogLines(p.stderr())
    .filter((l) => typeof l.level === 'number' && l.level >= WARN)
    .map((l) => String(l.msg));

/** curl through the HTTP CONNECT proxy (-p forces CONNECT even for http:// URLs). */
function curlHttpProxy(httpPort: number, extra: string[] = []) {
  return curl(['-sS', '--fail', '--max-time', '15', '-p', '-x', `http://127.0.0.1:${httpPort}`, ...extra, fileServer.url], 20_000);
}

/** The status the HTTP proxy answered CONNECT with, as curl saw it. */
async function connectStatus(httpPort: number, extra: string[] = []): Promise<string> {
  const r = await curl(['-s', '-o', '/dev/null', '-w', '%{http_connect}', '--max-time', '15', '-p', '-x', `http://127.0.0.1:${httpPort}`, ...extra, fileServer.url], 20_000);
  expect(r.code, 'curl fails when CONNECT is refused').not.toBe(0);
  return r.head;
}

describe('5. the proxy credentials apply to every local proxy', () => {
  let server: ServerHandle;
  let client: ClientHandle;
  const secret = keygen();

  beforeAll(async () => {
    server = await startServer({ secret, allowPrivate: true });
    client = await startClient({ secret, servers: [server.addr], http: true, extraArgs: ['--proxy-auth', 'alice:open-sesame'] });
  }, 40_000);

  afterAll(async () => {
    await client?.proc.kill();
    await server?.proc.kill();
  });

  it('HTTP CONNECT without credentials gets 407 with Proxy-Authenticate: Basic realm="plait", and no tunnel', async () => {
    const s = await connectTcp(client.httpPort!);
    s.on('error', () => undefined);
    const url = new URL(fileServer.url);
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.write(`CONNECT ${url.host} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
    await waitUntil('the proxy to close the connection', () => s.destroyed || s.readableEnded, 10_000).finally(() => s.destroy());
    expect(text).toMatch(/^HTTP\/1\.1 407 Proxy Authentication Required\r\n/);
    expect(text).toMatch(/\r\nProxy-Authenticate: Basic realm="plait"\r\n/i);

    expect(await connectStatus(client.httpPort!)).toBe('407');
  }, 30_000);

  it('HTTP CONNECT with a wrong password gets 407; with the right one it tunnels', async () => {
    expect(await connectStatus(client.httpPort!, ['--proxy-user', 'alice:open-barley'])).toBe('407');
    expect(await connectStatus(client.httpPort!, ['--proxy-user', 'mallory:open-sesame'])).toBe('407');

    const ok = await curlHttpProxy(client.httpPort!, ['--proxy-user', 'alice:open-sesame']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.sha256).toBe(fileServer.sha256);
  }, 40_000);

  it('SOCKS5 still requires the same credentials', async () => {
    const anon = await curl(['-sS', '--fail', '--max-time', '15', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 20_000);
    expect(anon.code).not.toBe(0);
    const ok = await curl(['-sS', '--fail', '--max-time', '15', '-x', `socks5h://alice:open-sesame@127.0.0.1:${client.socksPort}`, fileServer.url], 20_000);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.sha256).toBe(fileServer.sha256);
  }, 40_000);

  it('--socks-auth (the old name) and PLAIT_PROXY_AUTH protect the HTTP proxy too', async () => {
    const viaOldFlag = await startClient({ secret, servers: [server.addr], http: true, extraArgs: ['--socks-auth', 'carol:pw-carol'] });
    const viaEnv = await startClient({ secret, servers: [server.addr], http: true, env: { PLAIT_PROXY_AUTH: 'bob:pw-bob' } });
    try {
      for (const [c, creds] of [
        [viaOldFlag, 'carol:pw-carol'],
        [viaEnv, 'bob:pw-bob'],
      ] as const) {
        expect(await connectStatus(c.httpPort!), `${creds}: no credentials`).toBe('407');
        const ok = await curlHttpProxy(c.httpPort!, ['--proxy-user', creds]);
        expect(ok.code, ok.stderr).toBe(0);
        expect(ok.sha256).toBe(fileServer.sha256);
      }
      // Credentials from the environment are not in argv, so no argv warning for them.
      expect(warnings(viaEnv.proc).join('\n')).not.toMatch(/proxy-auth/);
      expect(warnings(viaOldFlag.proc).join('\n')).toMatch(/--socks-auth/);
    } finally {
      await viaOldFlag.proc.kill();
      await viaEnv.proc.kill();
    }
  }, 60_000);

  it('a forward or an unauthenticated proxy on a non-loopback address logs a warning naming the flag', async () => {
    const p = await startUntil(
      ['client', '--server', '127.0.0.1:1', '--forward', '0.0.0.0:0:127.0.0.1:9', '--socks', '0.0.0.0:0', '--http', '127.0.0.1:0'],
      'port forward listening',
    );
    try {
      const w = warnings(p);
      expect(w.find((m) => m.includes('--forward') && m.includes('0.0.0.0')), p.dump()).toBeDefined();
      expect(w.find((m) => m.includes('--socks') && m.includes('0.0.0.0')), p.dump()).toBeDefined();
      // The loopback HTTP proxy is not worth a warning.
      expect(w.find((m) => m.includes('--http')), p.dump()).toBeUndefined();
    } finally {
      await p.kill();
    }
    const authed = await startUntil(['client', '--server', '127.0.0.1:1', '--socks', '0.0.0.0:0'], 'SOCKS5 proxy listening', { PLAIT_PROXY_AUTH: 'u:p' });
    try {
      expect(warnings(authed).find((m) => m.includes('--socks')), authed.dump()).toBeUndefined();
    } finally {
      await authed.kill();
    }
  }, 30_000);
});

describe('6. secrets', () => {
  it('--secret on the command line logs one warning at startup; PLAIT_SECRET does not', async () => {
    const argv = await startUntil(['server', '--listen', '127.0.0.1:0', '--secret', keygen()], 'plait server listening', { PLAIT_SECRET: '' });
    try {
      const w = warnings(argv);
      expect(w, argv.dump()).toHaveLength(1);
      expect(w[0]).toMatch(/--secret/);
      expect(w[0]).toMatch(/ps/);
      expect(w[0]).toMatch(/--secret-file|PLAIT_SECRET/);
    } finally {
      await argv.kill();
    }
    const env = await startUntil(['server', '--listen', '127.0.0.1:0'], 'plait server listening');
    try {
      expect(warnings(env), env.dump()).toEqual([]);
    } finally {
      await env.kill();
    }
  }, 30_000);

  it('a --secret-file readable by group/others warns with the chmod to run; mode 0600 does not; the trailing newline is trimmed', async () => {
    const file = join(tmp, 'loose.secret');
    writeFileSync(file, keygen() + '\n');
    chmodSync(file, 0o644);
    const loose = await startUntil(['server', '--listen', '127.0.0.1:0', '--secret-file', file], 'plait server listening', { PLAIT_SECRET: '' });
    try {
      const w = warnings(loose);
      expect(w, loose.dump()).toHaveLength(1);
      expect(w[0]).toContain(`chmod 600 ${file}`);
    } finally {
      await loose.kill();
    }
    chmodSync(file, 0o600);
    const tight = await startUntil(['server', '--listen', '127.0.0.1:0', '--secret-file', file], 'plait server listening', { PLAIT_SECRET: '' });
    try {
      expect(warnings(tight), tight.dump()).toEqual([]);
    } finally {
      await tight.kill();
    }
  }, 30_000);

  it('a short or low-entropy secret warns, pointing at plait keygen', async () => {
    for (const weak of ['0123456789abcdef', 'a'.repeat(40)]) {
      const p = await startUntil(['server', '--listen', '127.0.0.1:0'], 'plait server listening', { PLAIT_SECRET: weak });
      try {
        const w = warnings(p);
        expect(w, p.dump()).toHaveLength(1);
        expect(w[0]).toContain('plait keygen');
        expect(p.stderr()).not.toContain(weak);
      } finally {
        await p.kill();
      }
    }
  }, 30_000);
});

describe('7. /stats and /metrics', () => {
  let server: ServerHandle;
  let client: ClientHandle;

  beforeAll(async () => {
    const secret = keygen();
    server = await startServer({ secret, allowPrivate: true });
    client = await startClient({ secret, servers: [server.addr] });
  }, 40_000);

  afterAll(async () => {
    await client?.proc.kill();
    await server?.proc.kill();
  });

  const status = async (port: number, path: string, host?: string): Promise<string> => {
    const args = ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5'];
    if (host !== undefined) args.push('-H', `Host: ${host}`);
    const r = await curl([...args, `http://127.0.0.1:${port}${path}`], 10_000);
    return r.head;
  };

  it('refuses a Host header that is not an IP literal or localhost (DNS rebinding)', async () => {
    for (const port of [server.statsPort, client.statsPort]) {
      for (const path of ['/stats', '/metrics']) {
        for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.1.nip.io:${port}`, 'localhost.evil.example']) {
          expect(await status(port, path, host), `${host} ${path}`).toMatch(/^(403|421)$/);
        }
        for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, '[::1]', `10.1.2.3:${port}`]) {
          expect(await status(port, path, host), `${host} ${path}`).toBe('200');
        }
      }
    }
  }, 60_000);

  it('shows only an 8-hex token prefix, in JSON and Prometheus, on both ends', async () => {
    for (const port of [server.statsPort, client.statsPort]) {
      for (const path of ['/stats', '/metrics']) {
        const { status: code, body } = await httpGet(`http://127.0.0.1:${port}${path}`);
        expect(code).toBe(200);
        expect(body, `${path} on ${port} leaks a full token`).not.toMatch(/[0-9a-f]{32}/i);
      }
    }
    const c = (await client.stats()).sessions[0]!;
    expect(c.token).toMatch(/^[0-9a-f]{8}$/);
    const s = (await server.stats()).sessions.find((x) => x.token === c.token);
    expect(s, 'the server shows the same 8-hex prefix').toBeDefined();
    const { body } = await httpGet(`http://127.0.0.1:${client.statsPort}/metrics`);
    expect(body).toContain(`session="${c.token}"`);
  }, 30_000);
});

describe('8. demo', () => {
  it('refuses a non-loopback --socks with exit 2 naming --socks (it allows private targets)', async () => {
    for (const addr of ['0.0.0.0:0', '[::]:0', 'example.com:0']) {
      const r = await run(['demo', '--socks', addr, '--duration', '1']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/^plait: --socks: /);
      expect(r.stdout).toBe('');
    }
  }, 30_000);
});

describe('9. bad input: exit 2 and one line naming the flag', () => {
  const client = ['client', '--server', '127.0.0.1:1', '--socks', '127.0.0.1:0'];
  const server = ['server', '--listen', '127.0.0.1:0'];
  const cases: [string, string[]][] = [
    ['--log-level', [...server, '--log-level', 'bogus']],
    ['--log-level', [...client, '--log-level', 'verbose']],
    ['--listen', ['server', '--listen', '127.0.0.1:70000']],
    ['--max-sessions', [...server, '--max-sessions', '0']],
    ['--max-sessions', [...server, '--max-sessions', '12x']],
    ['--max-pending', [...server, '--max-pending', '0']],
    ['--max-pending-per-source', [...server, '--max-pending', '10', '--max-pending-per-source', '20']],
    ['--allow', [...server, '--allow', '10.0.0.1/8']],
    ['--allow', [...server, '--allow', 'intranet']],
    ['--advertise', [...server, '--advertise', 'nonsense']],
    ['--advertise', [...server, '--advertise', '203.0.113.5:0']],
    ['--stats', [...server, '--stats', '127.0.0.1:99999']],
    ['--server', ['client', '--server', '127.0.0.1:0', '--socks', '127.0.0.1:0']],
    ['--socks', ['client', '--server', '127.0.0.1:1', '--socks', '127.0.0.1:65536']],
    ['--http', ['client', '--server', '127.0.0.1:1', '--http', 'x:y']],
    ['--forward', ['client', '--server', '127.0.0.1:1', '--forward', '70000:example.com:80']],
    ['--bind', [...client, '--bind', 'not-an-ip']],
    ['--via', [...client, '--via', 'eth0/x']],
    ['--backup', [...client, '--backup', 'has space']],
    ['--scheduler', [...client, '--scheduler', 'fastest']],
    ['--proxy-auth', [...client, '--proxy-auth', 'nocolon']],
    ['--proxy-auth', [...client, '--proxy-auth', ':pw']],
    ['--socks-auth', [...client, '--socks-auth', 'user:']],
    ['--proxy-auth', [...client, '--proxy-auth', 'a:b', '--socks-auth', 'c:d']],
    ['--secret-file', [...server, '--secret-file', '/nonexistent/plait.secret']],
    ['--interval', ['demo', '--interval', '0']],
    ['--duration', ['demo', '--duration', 'abc']],
    ['--duration', ['demo', '--duration', '99999999']],
    // Commander's own errors, in the same form.
    ['--sock', ['client', '--server', '127.0.0.1:1', '--sock', '1080']],
    ['--socks', ['client', '--server', '127.0.0.1:1', '--socks']],
    ['--listen', ['server']],
  ];
  it.each(cases)('%s: %j', async (flag, args) => {
    const r = await run(args);
    expect(r.code, `stderr: ${r.stderr}`).toBe(2);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^plait: ${flag}: \\S`));
  });

  it('a listen port already in use names its flag: --socks, --http, --forward, --stats, --listen', async () => {
    const busy = await occupyPort();
    const at = `127.0.0.1:${busy.port}`;
    try {
      const busyCases: [string, string[]][] = [
        ['--socks', ['client', '--server', '127.0.0.1:1', '--socks', at]],
        ['--http', ['client', '--server', '127.0.0.1:1', '--http', at]],
        ['--forward', ['client', '--server', '127.0.0.1:1', '--forward', `${at}:127.0.0.1:9`]],
        ['--stats', [...client, '--stats', at]],
        ['--listen', ['server', '--listen', at]],
        ['--stats', [...server, '--stats', at]],
        ['--socks', ['demo', '--socks', at, '--duration', '1']],
      ];
      for (const [flag, args] of busyCases) {
        const r = await run(args);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr.trim(), args.join(' ')).toBe(`plait: ${flag}: ${at} is already in use`);
      }
    } finally {
      await busy.close();
    }
  }, 60_000);
});
