// Helpers the benchmark scripts share: child processes that die with the script, free ports,
// per-process CPU from /proc, and loopback byte sources and sinks.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

/** `--name VALUE` from the command line, or `def`. */
export function option(name, def, argv = process.argv.slice(2)) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** `node argv...` with `env` added; killed when the script exits; an unexpected exit prints its stderr's tail. */
export function runNode(argv, label, env = {}) {
  const c = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  c.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
  c.on('exit', (code) => {
    children.delete(c);
    if (code && code !== 0 && !c.killedByUs) process.stderr.write(`[${label} exited ${code}] ${err}\n`);
  });
  children.add(c);
  return c;
}

export function stop(c) {
  c.killedByUs = true;
  c.kill('SIGKILL');
}

export async function waitPort(port, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`port ${port} not up`);
    await sleep(50);
  }
}

// CPU time of a child process so far (utime + stime, /proc/PID/stat fields
// 14-15, in clock ticks). Linux only; elsewhere the CPU figures are null.
const CLK_TCK = 100; // USER_HZ, 100 on every mainstream Linux build
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count from after its ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}
export const cpuOf = (procs) => procs.reduce((a, c) => a + cpuSeconds(c.pid), 0);

/** A TCP server that, on connect, streams bytes of a counting pattern forever (until the client closes). */
export async function startSource() {
  const block = Buffer.alloc(1 << 16);
  for (let i = 0; i < block.length; i++) block[i] = i & 0xff;
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    const more = () => {
      while (!s.destroyed && s.write(block));
    };
    s.on('drain', more);
    more();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, close: () => server.close() };
}

/**
 * A TCP server that counts what each connection sends; `expect(n)` resolves
 * (with the time) when a connection has delivered n bytes. Any connection
 * may: port probes and their late egress connections deliver nothing.
 */
export async function startCountingSink() {
  let want;
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    let n = 0;
    s.on('data', (d) => {
      n += d.length;
      if (want && n >= want.n) {
        s.destroy();
        want.resolve(performance.now());
        want = undefined;
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    expect: (n) => new Promise((resolve) => (want = { n, resolve })),
    close: () => server.close(),
  };
}

/** Write `n` bytes through `port` until `sink` (startCountingSink) has them all; Mbit/s. */
export async function uploadThrough(sink, port, n) {
  const done = sink.expect(n);
  const block = Buffer.alloc(1 << 16, 0x5a);
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  const t0 = performance.now();
  let sent = 0;
  const more = () => {
    while (sent < n) {
      const piece = sent + block.length <= n ? block : block.subarray(0, n - sent);
      sent += piece.length;
      if (!s.write(piece)) return;
    }
    s.end();
  };
  s.on('connect', more);
  s.on('drain', more);
  const t1 = await done;
  s.destroy();
  return (n * 8) / ((t1 - t0) / 1000) / 1e6;
}
