/**
 * Helpers for end-to-end tests that run the real `plait` CLI as child
 * processes (node packages/cli/bin/plait.js ...), on loopback only
 * (127.0.0.1 and 127.0.0.2).
 *
 * Every process spawned here is tracked; call `killAll()` from
 * afterEach/afterAll. As a last resort, leftovers are SIGKILLed when the
 * test worker exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PLAIT_BIN = resolve(REPO_ROOT, 'packages/cli/bin/plait.js');
const PLAIT_DIST = resolve(REPO_ROOT, 'packages/cli/dist/main.js');
export const CURL = '/usr/bin/curl';

export const KiB = 1024;
export const MiB = 1024 * KiB;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function waitUntil<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${String(lastErr)})` : ''}`);
    }
    await sleep(everyMs);
  }
}

/** A port that was free a moment ago on `host`. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Hold a port busy on `host` (for "already in use" tests); close() frees it. */
export function occupyPort(host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer((s) => s.destroy());
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      resolvePort({ port, close: () => new Promise<void>((r) => srv.close(() => r())) });
    });
  });
}

// ------------------------------------------------------------ processes

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything written to stdout / stderr so far. */
  stdout(): string;
  stderr(): string;
  readonly exited: boolean;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Resolves with the exit code, or null and the signal that ended the process. */
  waitExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  kill(graceMs?: number): Promise<void>;
  /** stdout+stderr for error messages. */
  dump(): string;
}

const live = new Set<Proc>();

process.once('exit', () => {
  for (const p of live) {
    try {
      p.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export interface SpawnOpts {
  name?: string;
  /** Hash stdout instead of keeping it as text (large downloads). */
  hashStdout?: boolean;
  env?: NodeJS.ProcessEnv;
}

function track(child: ChildProcess, name: string, hashStdout: boolean): Proc & { stdoutHash(): { sha256: string; bytes: number; head: string } } {
  let out = '';
  let err = '';
  const hash = createHash('sha256');
  let hashedBytes = 0;
  let digest: string | undefined;
  let exited = false;
  let killedAt: number | undefined;
  const startedAt = Date.now();
  let exitCode: number | null = null;
  let signal: NodeJS.Signals | null = null;
  const exitWaiters: (() => void)[] = [];
  child.stdout?.on('data', (d: Buffer) => {
    if (hashStdout) {
      hash.update(d);
      hashedBytes += d.length;
      if (out.length < 4096) out += d.subarray(0, 4096 - out.length).toString('latin1');
    } else out += d.toString('utf8');
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString('utf8');
  });
  const proc = {
    name,
    child,
    pid: child.pid ?? -1,
    stdout: () => out,
    stderr: () => err,
    get exited() {
      return exited;
    },
    get exitCode() {
      return exitCode;
    },
    get signal() {
      return signal;
    },
    stdoutHash() {
      digest ??= hash.digest('hex');
      return { sha256: digest, bytes: hashedBytes, head: out };
    },
    waitExit(timeoutMs = 30_000) {
      return new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res, rej) => {
        if (exited) return res({ code: exitCode, signal });
        const t = setTimeout(() => rej(new Error(`${name} (pid ${proc.pid}) did not exit within ${timeoutMs} ms\n${proc.dump()}`)), timeoutMs);
        exitWaiters.push(() => {
          clearTimeout(t);
          res({ code: exitCode, signal });
        });
      });
    },
    async kill(graceMs = 2_500) {
      if (exited) return;
      killedAt ??= Date.now();
      try {
        child.kill('SIGTERM');
      } catch {
        /* gone */
      }
      try {
        await proc.waitExit(graceMs);
      } catch {
        try {
          child.kill('SIGKILL');
        } catch {
          /* gone */
        }
        await proc.waitExit(5_000).catch(() => undefined);
      }
    },
    dump() {
      const state = exited
        ? `exited code=${exitCode} signal=${signal}${killedAt === undefined ? ' (NOT killed by the test)' : ` (killed by the test ${killedAt - startedAt} ms after start)`}`
        : 'running';
      return `--- ${name} (pid ${proc.pid}, ${state}) stdout ---\n${out.slice(-4000)}\n--- ${name} stderr ---\n${err.slice(-8000)}`;
    },
  };
  // 'close' (not 'exit'): stdio has been drained too.
  child.once('close', (code, sig) => {
    exited = true;
    exitCode = code;
    signal = sig;
    live.delete(proc);
    for (const w of exitWaiters.splice(0)) w();
  });
  child.once('error', (e) => {
    err += `\n[spawn error] ${e.message}\n`;
  });
  live.add(proc);
  return proc;
}

/** Run `plait ARGS...` (the real CLI, from the built dist). */
export function spawnPlait(args: string[], opts: SpawnOpts = {}): Proc {
  if (!existsSync(PLAIT_DIST)) throw new Error(`${PLAIT_DIST} is missing: run \`npx tsc -b\` first`);
  const child = spawn(process.execPath, [PLAIT_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, PLAIT_SECRET: '', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return track(child, opts.name ?? `plait ${args[0] ?? ''}`, opts.hashStdout ?? false);
}

/** Kill every process still running (call in afterEach / afterAll). */
export async function killAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.kill()));
}

/** Run a plait command to completion (for short-lived commands). */
export async function runPlait(args: string[], timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const p = spawnPlait(args);
  try {
    const { code, signal } = await p.waitExit(timeoutMs);
    return { code, signal, stdout: p.stdout(), stderr: p.stderr() };
  } finally {
    await p.kill();
  }
}

// ----------------------------------------------------------------- curl

export interface CurlResult {
  code: number | null;
  sha256: string;
  bytes: number;
  /** The first 4 KiB of stdout, as latin1 text. */
  head: string;
  stderr: string;
  elapsedMs: number;
}

export interface CurlRun {
  proc: Proc;
  done: Promise<CurlResult>;
}

/** Spawn curl with `args`; its stdout is hashed, not kept. */
export function startCurl(args: string[], timeoutMs = 60_000): CurlRun {
  const t0 = Date.now();
  const child = spawn(CURL, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = track(child, `curl`, true);
  const done = proc.waitExit(timeoutMs).then(
    ({ code }) => {
      const h = proc.stdoutHash();
      return { code, sha256: h.sha256, bytes: h.bytes, head: h.head, stderr: proc.stderr(), elapsedMs: Date.now() - t0 };
    },
    async (e: unknown) => {
      await proc.kill(500);
      throw e;
    },
  );
  return { proc, done };
}

export function curl(args: string[], timeoutMs = 60_000): Promise<CurlResult> {
  return startCurl(args, timeoutMs).done;
}

// ---------------------------------------------------------------- stats

export interface SubflowStats {
  id: number;
  local: string;
  remote: string;
  state: string;
  backup: boolean;
  rttMs: number;
  bytesSent: number;
  bytesReceived: number;
  bytesReinjected: number;
  [k: string]: unknown;
}

export interface SessionStatsJson {
  token: string;
  openStreams: number;
  subflows: SubflowStats[];
  counters: Record<string, number>;
  [k: string]: unknown;
}

export interface StatsJson {
  role: 'client' | 'server';
  sessions: SessionStatsJson[];
  counters: Record<string, number>;
  paths?: { key: string; state: string; lastError?: string }[];
}

export function httpGet(url: string, timeoutMs = 3_000): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, body }));
      r.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', rej);
  });
}

export async function getStats(port: number): Promise<StatsJson> {
  const { status, body } = await httpGet(`http://127.0.0.1:${port}/stats`);
  if (status !== 200) throw new Error(`/stats answered ${status}`);
  return JSON.parse(body) as StatsJson;
}

// ------------------------------------------------------- server & client

export interface ServerHandle {
  proc: Proc;
  secret: string;
  host: string;
  port: number;
  statsPort: number;
  addr: string;
  /** With `wsPath`: the WebSocket listener's port (ws://host:wsPort/wsPath). */
  wsPort?: number;
  stats(): Promise<StatsJson>;
  /** Parsed pino lines from stderr. */
  logLines(): Record<string, unknown>[];
}

export interface ClientHandle {
  proc: Proc;
  statsPort: number;
  socksPort?: number;
  httpPort?: number;
  forwardPorts: number[];
  stats(): Promise<StatsJson>;
  logLines(): Record<string, unknown>[];
}

export function parseLogLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* partial line */
    }
  }
  return out;
}

/** A process that dies while we wait for it fails the wait at once, with its output. */
function failIfExited(p: Proc): void {
  if (p.exited) throw new Error(`${p.name} exited early (code ${p.exitCode}, signal ${p.signal})\n${p.dump()}`);
}

export interface ServerOpts {
  secret: string;
  allowPrivate?: boolean;
  extraArgs?: string[];
  host?: string;
  /** Also listen for WebSocket subflows at ws://host:0/wsPath (a second --listen). */
  wsPath?: string;
  /** Extra environment for the process (e.g. PLAIT_PROXY_AUTH). */
  env?: NodeJS.ProcessEnv;
}

/** `plait server --listen 127.0.0.1:0 ...`: the bound port is read from the startup log line. */
export async function startServer(opts: ServerOpts): Promise<ServerHandle> {
  const host = opts.host ?? '127.0.0.1';
  for (let attempt = 0; ; attempt++) {
    const statsPort = await freePort();
    const args = ['server', '--listen', `${host}:0`, '--secret', opts.secret, '--stats', `127.0.0.1:${statsPort}`];
    if (opts.wsPath !== undefined) args.push('--listen', `ws://${host}:0${opts.wsPath}`);
    if (opts.allowPrivate) args.push('--allow-private');
    args.push(...(opts.extraArgs ?? []));
    const proc = spawnPlait(args, { name: 'plait server', ...(opts.env ? { env: opts.env } : {}) });
    try {
      const port = await waitUntil('plait server to listen', () => {
        failIfExited(proc);
        const l = parseLogLines(proc.stderr()).find((x) => x.msg === 'plait server listening');
        if (!l) return undefined;
        return Number(String(l.listen).split(':').pop());
      });
      await waitUntil('server /stats', async () => {
        failIfExited(proc);
        return (await getStats(statsPort)).role === 'server';
      });
      const listening = parseLogLines(proc.stderr()).find((x) => x.msg === 'plait server listening');
      const wsText = ((listening?.listeners as string[] | undefined) ?? []).find((l) => l.startsWith('ws://'));
      return {
        proc,
        secret: opts.secret,
        host,
        port,
        ...(wsText !== undefined ? { wsPort: Number(/:(\d+)\//.exec(wsText)?.[1]) } : {}),
        statsPort,
        addr: `${host}:${port}`,
        stats: () => getStats(statsPort),
        logLines: () => parseLogLines(proc.stderr()),
      };
    } catch (e) {
      await proc.kill();
      if (attempt < 2 && proc.stderr().includes('EADDRINUSE')) continue; // lost a port race
      throw e;
    }
  }
}

export interface ClientOpts {
  secret: string;
  servers: string[];
  binds?: string[];
  socks?: boolean;
  http?: boolean;
  /** HOST:PORT targets; a free local port is picked for each. */
  forwards?: string[];
  extraArgs?: string[];
  /** Wait until the session has this many active subflows (default: one per bind x server). */
  waitSubflows?: number;
  /** Extra environment for the process (e.g. PLAIT_PROXY_AUTH). */
  env?: NodeJS.ProcessEnv;
}

export async function startClient(opts: ClientOpts): Promise<ClientHandle> {
  const binds = opts.binds ?? [];
  for (let attempt = 0; ; attempt++) {
    const statsPort = await freePort();
    const args = ['client', '--secret', opts.secret, '--stats', `127.0.0.1:${statsPort}`];
    for (const s of opts.servers) args.push('--server', s);
    for (const b of binds) args.push('--bind', b);
    let socksPort: number | undefined;
    let httpPort: number | undefined;
    if (opts.socks !== false) {
      socksPort = await freePort();
      args.push('--socks', `127.0.0.1:${socksPort}`);
    }
    if (opts.http) {
      httpPort = await freePort();
      args.push('--http', `127.0.0.1:${httpPort}`);
    }
    const forwardPorts: number[] = [];
    for (const f of opts.forwards ?? []) {
      const lp = await freePort();
      forwardPorts.push(lp);
      args.push('--forward', `${lp}:${f}`);
    }
    args.push(...(opts.extraArgs ?? []));
    const proc = spawnPlait(args, { name: 'plait client', ...(opts.env ? { env: opts.env } : {}) });
    const want = opts.waitSubflows ?? Math.max(1, binds.length) * opts.servers.length;
    try {
      await waitUntil(`client session with ${want} active subflow(s)`, async () => {
        failIfExited(proc);
        const st = await getStats(statsPort);
        const sess = st.sessions[0];
        return sess !== undefined && sess.subflows.filter((s) => s.state === 'active').length >= want;
      });
      return {
        proc,
        statsPort,
        ...(socksPort !== undefined ? { socksPort } : {}),
        ...(httpPort !== undefined ? { httpPort } : {}),
        forwardPorts,
        stats: () => getStats(statsPort),
        logLines: () => parseLogLines(proc.stderr()),
      };
    } catch (e) {
      await proc.kill();
      if (attempt < 2 && proc.stderr().includes('EADDRINUSE')) continue;
      throw e;
    }
  }
}

/** Per-subflow bytesReceived (and sent) keyed by subflow id, for before/after deltas. */
export function subflowBytes(st: StatsJson): Map<number, { received: number; sent: number; local: string }> {
  const m = new Map<number, { received: number; sent: number; local: string }>();
  for (const s of st.sessions[0]?.subflows ?? []) m.set(s.id, { received: s.bytesReceived, sent: s.bytesSent, local: s.local });
  return m;
}

// ------------------------------------------------------------- SOCKS5

export interface SocksResult {
  socket: net.Socket;
  /** Full reply (10 bytes for an IPv4 BND.ADDR). */
  reply: Buffer;
  /** REP byte: 0x00 succeeded, 0x02 not allowed by ruleset, ... */
  code: number;
}

/** Read exactly n bytes (leftover bytes are put back into the socket). */
export function readExact(socket: net.Socket, n: number, timeoutMs = 15_000): Promise<Buffer> {
  return new Promise((res, rej) => {
    let buf = Buffer.alloc(0);
    const cleanup = (): void => {
      clearTimeout(t);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= n) {
        cleanup();
        socket.pause();
        if (buf.length > n) socket.unshift(buf.subarray(n));
        res(buf.subarray(0, n));
      }
    };
    const onEnd = (): void => {
      cleanup();
      rej(new Error(`connection ended after ${buf.length}/${n} bytes (${buf.toString('hex')})`));
    };
    const onError = (e: Error): void => {
      cleanup();
      rej(e);
    };
    const t = setTimeout(() => {
      cleanup();
      rej(new Error(`timed out reading ${n} bytes (got ${buf.length})`));
    }, timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}

export function connectTcp(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((res, rej) => {
    const s = net.connect({ port, host, allowHalfOpen: true });
    const t = setTimeout(() => {
      s.destroy();
      rej(new Error(`connect ${host}:${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.off('error', rej);
      s.setNoDelay(true);
      res(s);
    });
    s.once('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
  });
}

/**
 * A tiny SOCKS5 client (RFC 1928, no auth, CONNECT to an IPv4 address).
 * Resolves with the raw reply; on success the socket is the tunnel.
 */
export async function socks5Connect(socksPort: number, targetHost: string, targetPort: number, timeoutMs = 20_000): Promise<SocksResult> {
  const socket = await connectTcp(socksPort);
  socket.on('error', () => undefined);
  try {
    socket.write(Buffer.from([0x05, 0x01, 0x00]));
    const method = await readExact(socket, 2, timeoutMs);
    if (method[0] !== 0x05 || method[1] !== 0x00) throw new Error(`SOCKS method reply ${method.toString('hex')}`);
    const ip = targetHost.split('.').map(Number);
    if (ip.length !== 4 || ip.some((x) => !(x >= 0 && x <= 255))) throw new Error(`not an IPv4 address: ${targetHost}`);
    const req = Buffer.from([0x05, 0x01, 0x00, 0x01, ...ip, (targetPort >> 8) & 0xff, targetPort & 0xff]);
    socket.write(req);
    const head = await readExact(socket, 4, timeoutMs);
    const atyp = head[3];
    const rest = atyp === 0x01 ? 6 : atyp === 0x04 ? 18 : -1;
    if (rest < 0) throw new Error(`unexpected SOCKS reply ${head.toString('hex')}`);
    const tail = await readExact(socket, rest, timeoutMs);
    const reply = Buffer.concat([head, tail]);
    return { socket, reply, code: reply[1] ?? -1 };
  } catch (e) {
    socket.destroy();
    throw e;
  }
}

/** Write `data` in chunks honouring backpressure, then (optionally) end(). */
export async function writeAll(socket: net.Socket, data: Buffer, chunk = 64 * KiB, end = true): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (socket.destroyed) throw new Error(`socket destroyed after writing ${off}/${data.length} bytes`);
    if (!socket.write(data.subarray(off, off + chunk))) {
      await new Promise<void>((res, rej) => {
        const onDrain = (): void => {
          socket.off('close', onClose);
          res();
        };
        const onClose = (): void => {
          socket.off('drain', onDrain);
          rej(new Error(`socket closed after writing ${off}/${data.length} bytes`));
        };
        socket.once('drain', onDrain);
        socket.once('close', onClose);
      });
    }
  }
  if (end) socket.end();
}

/** Everything the socket delivers until its 'end' (rejects on error/close without end or timeout). */
export function readAll(socket: net.Socket, timeoutMs = 60_000): Promise<Buffer> {
  return new Promise((res, rej) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const t = setTimeout(() => rej(new Error(`readAll timed out after ${n} bytes`)), timeoutMs);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      n += d.length;
    });
    socket.once('end', () => {
      clearTimeout(t);
      res(Buffer.concat(chunks));
    });
    socket.once('error', (e) => {
      clearTimeout(t);
      rej(new Error(`socket error after ${n} bytes: ${e.message}`));
    });
    socket.once('close', () => {
      clearTimeout(t);
      rej(new Error(`socket closed without end after ${n} bytes`));
    });
    socket.resume();
  });
}

/** Send `data` through `socket` to an echo server and collect the echo (written while reading). */
export async function echoRoundTrip(socket: net.Socket, data: Buffer, timeoutMs = 60_000): Promise<Buffer> {
  const reading = readAll(socket, timeoutMs);
  const writing = writeAll(socket, data);
  const [echo] = await Promise.all([reading, writing]);
  return echo;
}

/**
 * Resolves once the peer dropped the connection (FIN, RST or close). `guardMs` is a hang guard
 * (a clear message instead of the test timeout), not a timing under test: keep it generous.
 */
export function untilDropped(socket: net.Socket, guardMs: number): Promise<void> {
  return new Promise((res, rej) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(t);
      res();
    };
    const t = setTimeout(() => {
      if (done) return;
      done = true;
      rej(new Error(`still open after ${guardMs} ms`));
    }, guardMs);
    socket.on('data', () => undefined); // keep reading, so a FIN is seen
    socket.once('end', finish);
    socket.once('close', finish);
    socket.once('error', finish);
    socket.resume();
  });
}
