// Total outages, measured through the real CLI (issue 13 item 14).
//
//   node scripts/outage-figures.mjs [--root DIR] [--outage-seconds 18]
//
// DIR is a built plait checkout (default: this one), e.g. a worktree of an
// older commit to compare against. A server and a client (two subflows, each
// through its own user-space link relay that can go silent) run on loopback.
//
// A. Every link goes silent; 0.5 s later an application opens a SOCKS5
//    connection; the links come back after --outage-seconds. Reports the
//    SOCKS reply (0 = success) and when it came, and whether bytes then echo.
// B. Every link goes silent for good. Reports when the client drops the
//    session, from the moment the links went silent (its last record from
//    the server came at most one keepalive, 2 s, earlier).
// Prints one JSON object.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
};
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(flag('--root', join(here, '..')));
const outageMs = Number(flag('--outage-seconds', '18')) * 1000;
// The relays come from this checkout: they are the lab, not the thing measured.
const testkit = await import(pathToFileURL(join(here, '..', 'packages/testkit/dist/index.js')).href);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secret = randomBytes(32).toString('base64url');

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function plait(argv) {
  const proc = spawn(process.execPath, [join(root, 'packages/cli/bin/plait.js'), ...argv], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PLAIT_SECRET: secret },
  });
  let log = '';
  proc.stderr.on('data', (d) => (log += d));
  return { proc, log: () => log };
}

async function stats(port) {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/stats`)).json();
  } catch {
    return undefined;
  }
}

async function until(what, cond, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** SOCKS5 CONNECT to 127.0.0.1:port; resolves with the reply code and the socket. */
function socksConnect(socksPort, port) {
  return new Promise((resolve) => {
    const s = net.connect(socksPort, '127.0.0.1');
    let stage = 0;
    let buf = Buffer.alloc(0);
    s.on('error', () => resolve({ rep: -1, sock: s }));
    s.on('connect', () => s.write(Buffer.from([5, 1, 0])));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2) {
        buf = buf.subarray(2);
        stage = 1;
        s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]));
      }
      if (stage === 1 && buf.length >= 10) {
        stage = 2;
        s.removeAllListeners('data');
        resolve({ rep: buf[1], sock: s });
      }
    });
  });
}

async function setup() {
  const echo = await testkit.startEchoServer();
  const srvPort = await freePort();
  const server = plait(['server', '--listen', `127.0.0.1:${srvPort}`, '--allow-private', '--log-level', 'warn']);
  const relays = [];
  for (let i = 0; i < 2; i++) relays.push(await testkit.startLinkRelay({ target: { host: '127.0.0.1', port: srvPort }, blackhole: 'drop' }));
  const socksPort = await freePort();
  const statsPort = await freePort();
  const client = plait([
    'client',
    ...relays.flatMap((r) => ['--server', `127.0.0.1:${r.port}`]),
    '--bind', '127.0.0.1',
    '--socks', `127.0.0.1:${socksPort}`,
    '--stats', `127.0.0.1:${statsPort}`,
    '--log-level', 'info',
  ]);
  await until('two subflows', async () => (await stats(statsPort))?.sessions?.[0]?.subflows?.filter((s) => s.state === 'active').length === 2, 20_000);
  const stop = async () => {
    client.proc.kill('SIGKILL');
    server.proc.kill('SIGKILL');
    for (const r of relays) await r.close();
    await echo.close();
  };
  return { echo, relays, socksPort, statsPort, client, stop };
}

async function scenarioA() {
  const env = await setup();
  try {
    for (const r of env.relays) r.cut('blackhole');
    const t0 = Date.now();
    await sleep(500);
    const opened = Date.now();
    const pending = socksConnect(env.socksPort, env.echo.port).then((r) => ({ ...r, at: Date.now() }));
    const restoreTimer = setTimeout(() => {
      for (const r of env.relays) r.restore();
    }, Math.max(0, outageMs - (Date.now() - t0)));
    const res = await pending;
    clearTimeout(restoreTimer);
    for (const r of env.relays) r.restore();
    let echoed = false;
    if (res.rep === 0) {
      const data = randomBytes(64 * 1024);
      echoed = await new Promise((resolve) => {
        let got = Buffer.alloc(0);
        const t = setTimeout(() => resolve(false), 15_000);
        res.sock.on('data', (d) => {
          got = Buffer.concat([got, d]);
          if (got.length >= data.length) {
            clearTimeout(t);
            resolve(got.equals(data));
          }
        });
        res.sock.write(data);
      });
    }
    res.sock.destroy();
    return { outageMs, socksReply: res.rep, replyAfterOpenMs: res.at - opened, replyAfterOutageStartMs: res.at - t0, echoedIntact: echoed };
  } finally {
    await env.stop();
  }
}

async function scenarioB() {
  const env = await setup();
  try {
    for (const r of env.relays) r.cut('blackhole');
    const t0 = Date.now();
    await until('the session to be dropped', async () => ((await stats(env.statsPort))?.sessions?.length ?? 1) === 0, 90_000);
    const graceLine = env.client.log().split('\n').find((l) => /all (paths|subflows) down/.test(l));
    return { sessionDroppedAfterMs: Date.now() - t0, graceMessage: graceLine ? JSON.parse(graceLine).msg : undefined };
  } finally {
    await env.stop();
  }
}

const a = await scenarioA();
const b = await scenarioB();
console.log(JSON.stringify({ root, newStreamDuringOutage: a, graceExpiry: b }, null, 2));
process.exit(0);
