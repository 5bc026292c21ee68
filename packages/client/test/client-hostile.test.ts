import { afterEach, describe, expect, it, vi } from 'vitest';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { deriveSecretKeys, encodeHandshake, ErrorCode, MsgType, PlaitError, realClock, type Clock } from '@plait/core';
import { EgressPolicy, PlaitServer } from '@plait/server';
import { startEchoServer, startLinkRelay, type LinkRelay } from '@plait/testkit';
import { echoRoundTrip, settles, sha, waitFor } from './socket-helpers.js';
import { TestClock, track } from './test-clock.js';
import { PlaitClient, type ClientLogger } from '../src/client.js';

/**
 * Attacks on the client from its own links (issue 13): a hostile path must
 * cost only that path, never the session, and the client says why a path is
 * down. Each test failed on the client before the fix.
 */
const secretKeys = deriveSecretKeys('client-hostile-test-secret-0123456789');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startServer(graceMs = 30_000): Promise<{ server: PlaitServer; port: number; echoPort: number }> {
  const echo = await startEchoServer();
  cleanups.push(() => echo.close());
  const server = new PlaitServer({ listen: { host: '127.0.0.1', port: 0 }, secretKeys, policy: new EgressPolicy({ allowPrivate: true }), graceMs });
  const addr = await server.listen();
  cleanups.push(() => server.close());
  return { server, port: addr.port, echoPort: echo.port };
}

/**
 * A hostile link: passes a HELLO through to the real server (so it may even
 * make the session), but answers every JOIN with `reply` (a forged REJECT).
 */
async function startHostilePath(serverPort: number, reply: (first: Buffer) => Uint8Array | undefined): Promise<{ port: number; forged: number }> {
  const state = { port: 0, forged: 0 };
  const srv = net.createServer((sock) => {
    sock.on('error', () => undefined);
    sock.once('data', (first: Buffer) => {
      const forged = reply(first);
      if (forged) {
        state.forged++;
        sock.end(forged);
        return;
      }
      const up = net.connect(serverPort, '127.0.0.1');
      up.on('error', () => sock.destroy());
      sock.on('close', () => up.destroy());
      up.on('close', () => sock.destroy());
      up.write(first);
      sock.pipe(up);
      up.pipe(sock);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  state.port = (srv.address() as net.AddressInfo).port;
  cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
  return state;
}

function rejectBytes(code: number, reason: string): Uint8Array {
  return encodeHandshake({ type: MsgType.REJECT, code, reason });
}

interface LogLine {
  level: 'info' | 'warn' | 'error' | 'debug';
  obj: object;
  msg: string;
  /** Clock time of the line (when a clock is given). */
  at: number;
}

function recordingLog(clock?: Clock): { log: ClientLogger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) => (obj: object, msg: string) => void lines.push({ level, obj, msg, at: clock?.now() ?? 0 });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

function startClient(opts: ConstructorParameters<typeof PlaitClient>[0]): PlaitClient {
  const client = new PlaitClient(opts);
  cleanups.push(() => client.close());
  return client;
}




describe('a hostile path costs only that path', () => {
  it('a forged REJECT UNKNOWN_TOKEN on a second path does not end the session; a transfer on the healthy path completes', async () => {
    const env = await startServer();
    const hostile = await startHostilePath(env.port, (first) => (first[0] === MsgType.JOIN ? rejectBytes(ErrorCode.UNKNOWN_TOKEN, 'unknown session token') : undefined));
    const { log, lines } = recordingLog();
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: env.port }, { host: '127.0.0.1', port: hostile.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      log,
    });
    await client.start();
    const session = client.currentSession!;
    const conn = await client.dial({ host: '127.0.0.1', port: env.echoPort });
    const data = randomBytes(4 << 20);
    const back = echoRoundTrip(conn, data);
    await waitFor(() => hostile.forged >= 2, 'two forged REJECTs');
    expect(sha(await back)).toBe(sha(data));
    expect(client.currentSession).toBe(session);
    expect(session.isClosed).toBe(false);
    expect(client.counters.sessions).toBe(1);
    // The second forged REJECT left the hostile server; the client may still be reading it.
    await waitFor(() => client.counters.unverifiedRefusals >= 2, 'the client to count both refusals');
    // Said once at warn level, with the reason in /stats.
    const warned = lines.filter((l) => l.level === 'warn' && /did not prove the secret/.test(l.msg));
    expect(warned.length).toBe(1);
    const path = client.stats().paths.find((p) => p.remote.endsWith(`:${hostile.port}`))!;
    expect(path.problem).toBe('unverified-refusal');
    expect(path.lastError).toMatch(/did not prove the secret/);
    conn.destroy();
  });

  it('a server that really forgot the session proves it: the client starts a new session at once', async () => {
    const env = await startServer();
    const relay: LinkRelay = await startLinkRelay({ target: { host: '127.0.0.1', port: env.port } });
    cleanups.push(() => relay.close());
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: relay.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      graceMs: 60_000,
    });
    await client.start();
    const first = client.currentSession!;
    // The link resets while the server drops the session without a word (a restart, as the client sees it).
    relay.cut('reset');
    for (const s of env.server.sessions()) s.close(new PlaitError(ErrorCode.CLOSED, 'test: forget'), false);
    await waitFor(() => client.counters.sessions === 2, 'a second session');
    expect(first.isClosed).toBe(true);
    const conn = await client.dial({ host: '127.0.0.1', port: env.echoPort });
    const data = randomBytes(100_000);
    expect(sha(await echoRoundTrip(conn, data))).toBe(sha(data));
    conn.destroy();
  });
});

describe('clock skew heals itself, only from a proven refusal', () => {
  const skewedClock = (offsetMs: number): Clock => ({ ...realClock, wallNow: () => Date.now() + offsetMs });

  it('a client whose clock is 45 s behind learns the server time from the verified refusal and connects', async () => {
    const env = await startServer();
    const { log, lines } = recordingLog();
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: env.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      clock: skewedClock(-45_000),
      log,
    });
    await client.start();
    expect(client.counters.clockCorrections).toBe(1);
    expect(Math.abs(client.stats().clockOffsetMs - 45_000)).toBeLessThan(2_000);
    expect(lines.some((l) => l.level === 'warn' && /45\.\d s behind the server's/.test(l.msg))).toBe(true);
  });

  it('a forged STALE_TIMESTAMP (no valid proof) moves nothing and fails that path only', async () => {
    const env = await startServer();
    const forgedProof = (first: Buffer): Uint8Array | undefined =>
      first[0] === MsgType.HELLO
        ? encodeHandshake({ type: MsgType.REJECT, code: ErrorCode.STALE_TIMESTAMP, reason: 'stale', proof: { time: Date.now() + 86_400_000, mac: randomBytes(32) } })
        : undefined;
    const hostile = await startHostilePath(env.port, forgedProof);
    const client = startClient({
      // The hostile path is the first to race its HELLO.
      servers: [{ host: '127.0.0.1', port: hostile.port }, { host: '127.0.0.1', port: env.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      helloStaggerMs: 200,
    });
    await client.start();
    await waitFor(() => hostile.forged >= 1, 'the forged refusal');
    expect(client.counters.clockCorrections).toBe(0);
    expect(client.stats().clockOffsetMs).toBe(0);
    expect(client.counters.unverifiedRefusals).toBeGreaterThanOrEqual(1);
    expect(client.currentSession?.isClosed).toBe(false);
  });
});

describe('start on any path', () => {
  it('a dead first path does not hold up the session: the next path races its HELLO and wins', async () => {
    const env = await startServer();
    // The first path accepts TCP but never answers (a link that died after the SYN).
    const dead: LinkRelay = await startLinkRelay({ target: { host: '127.0.0.1', port: env.port } });
    cleanups.push(() => dead.close());
    dead.cut('blackhole');
    const clock = new TestClock();
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: dead.port }, { host: '127.0.0.1', port: env.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      helloStaggerMs: 200,
      clock,
    });
    const started = track(client.start());
    // The second path's HELLO waits for the stagger (200 ms of clock), not for the dead path's handshake timeout (5 s).
    const took = await clock.advanceUntil(() => started.settled, 4_000, 'the session is up');
    await started.promise;
    expect(took).toBeGreaterThanOrEqual(200);
    // The session came up while the dead path's HELLO was still waiting for its answer.
    const paths = client.stats().paths;
    expect(paths.find((p) => p.remote.endsWith(`:${dead.port}`))!.state).toBe('connecting');
    expect(paths.find((p) => p.remote.endsWith(`:${env.port}`))!.state).toBe('up');
    expect(client.counters.sessions).toBe(1);
  });

  it('when both paths answer, the loser joins the winner (one session on the server)', async () => {
    const env = await startServer();
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: env.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [] },
      helloStaggerMs: 0,
    });
    await client.start();
    await waitFor(() => client.currentSession?.subflowCount === 2, 'both paths in the session');
    await waitFor(() => env.server.sessions().length === 1, 'one session on the server');
    expect(client.counters.sessions).toBe(1);
  });
});

describe('outages: the grace is what it says, and new streams wait for it', () => {
  it('a stream opened while every link is down waits for the session instead of failing at the dial timeout', async () => {
    const env = await startServer();
    const relays: LinkRelay[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await startLinkRelay({ target: { host: '127.0.0.1', port: env.port }, blackhole: 'hold' });
      relays.push(r);
      cleanups.push(() => r.close());
    }
    const clock = new TestClock();
    const client = startClient({
      servers: relays.map((r) => ({ host: '127.0.0.1', port: r.port })),
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      graceMs: 20_000,
      dialTimeoutMs: 1_000,
      clock,
    });
    await client.start();
    await clock.settle(() => client.currentSession?.liveSubflows.filter((s) => s.state === 'active').length === 2, 'both subflows active');
    for (const r of relays) r.cut('blackhole');
    // Idle subflows are found dead by a keepalive (2 s) going unanswered for a retransmission timeout (at most 3 s).
    await clock.advanceUntil(() => client.stats().outage !== undefined, 5_100, 'the outage is noticed');
    const dialed = track(client.dial({ host: '127.0.0.1', port: env.echoPort }));
    // Three dial timeouts of clock time pass with every link down: the dial still waits.
    await clock.advance(3_000);
    expect(dialed.settled).toBe(false);
    for (const r of relays) r.restore();
    // The held records go through once the links are back: the stream opens with no more clock time.
    await clock.settle(() => dialed.settled, 'the dial completes after the links return');
    const conn = await dialed.promise;
    const data = randomBytes(100_000);
    expect(sha(await echoRoundTrip(conn, data))).toBe(sha(data));
    conn.destroy();
  });

  it('the grace is counted from the last sign of life, not from when the subflows are finally declared dead', async () => {
    const env = await startServer();
    const relay: LinkRelay = await startLinkRelay({ target: { host: '127.0.0.1', port: env.port }, blackhole: 'hold' });
    cleanups.push(() => relay.close());
    const clock = new TestClock();
    const { log, lines } = recordingLog(clock);
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: relay.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      graceMs: 1_500,
      // Silence is noticed after a keepalive (200 ms) and a retransmission timeout (400 ms at most), well
      // inside the grace; a subflow is declared dead only after 20 s without an ack, far beyond it.
      config: { deadAfterMs: 20_000, keepaliveMs: 200, minRtoMs: 100, maxRtoMs: 400 },
      clock,
      log,
    });
    await client.start();
    const session = client.currentSession!;
    relay.cut('blackhole');
    const lastHeard = session.lastHeardAt;
    await clock.advanceUntil(() => session.isClosed, 10_000, 'the grace ends the session', { stepMs: 5 });
    // The session ended by the grace, 1.5 s of clock after the last record from the server, while its subflow was still only suspect.
    expect(client.counters.outagesExpired).toBe(1);
    expect(clock.now() - lastHeard).toBeGreaterThanOrEqual(1_500);
    expect(clock.now() - lastHeard).toBeLessThanOrEqual(1_510);
    const said = lines.find((l) => l.level === 'warn' && /all paths down/.test(l.msg));
    expect(said?.msg).toMatch(/1\.5 s from the last sign of life/);
    // The outage was declared well before the end: the grace did not start there.
    expect(said!.at - lastHeard).toBeLessThan(1_000);
  });
});

describe('say why a path is down', () => {
  it('a refused server and a non-local --bind are logged once each at warn level, with the reason in /stats', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const clock = new TestClock();
    const { log, lines } = recordingLog(clock);
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: closed }],
      secretKeys,
      sources: { binds: ['127.0.0.1', '192.0.2.77'], vias: [], backups: [] },
      clock,
      log,
    });
    void client.start().catch(() => undefined);
    // Three attempts each: the backoff (125-250, then 250-500 ms of clock) between them.
    await clock.advanceUntil(() => client.stats().paths.every((p) => p.attempts >= 3), 2_000, 'three attempts on every path');
    const warns = lines.filter((l) => l.level === 'warn' && /path down/.test(l.msg));
    expect(warns.filter((l) => /refused the connection/.test(l.msg)).length).toBe(1);
    expect(warns.filter((l) => /192\.0\.2\.77 is not an address of this machine/.test(l.msg)).length).toBe(1);
    const kinds = client.stats().paths.map((p) => p.problem).sort();
    expect(kinds).toEqual(['address-not-local', 'refused']);
    // A SOCKS client is told without waiting for the dial timeout: no clock time passes.
    const at = clock.now();
    const err = await settles(
      client.dial({ host: '127.0.0.1', port: 9 }).then(
        () => undefined,
        (e: unknown) => e as Error,
      ),
      'the dial is refused',
    );
    expect(err?.message).toMatch(/refused the connection/);
    expect(clock.now()).toBe(at);
  });

  it('a missing --via interface is said once, and nothing is dialled from it', async () => {
    const env = await startServer();
    const clock = new TestClock();
    const { log, lines } = recordingLog(clock);
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: env.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: ['plaitnone0'], backups: [] },
      pollMs: 50,
      clock,
      log,
    });
    await client.start();
    const polls = vi.spyOn(client, 'refreshPaths');
    // 300 ms of clock: six re-reads of the interfaces.
    await clock.advance(300);
    expect(polls).toHaveBeenCalledTimes(6);
    expect(lines.filter((l) => l.level === 'warn' && /interface plaitnone0 does not exist/.test(l.msg)).length).toBe(1);
    expect(client.stats().paths.map((p) => p.local)).toEqual(['127.0.0.1']);
  });
});

describe('a draining server (issue 11): proven DRAINING is retried at once, a few times; a forged one is not', () => {
  it('three retries at once (no clock time passes), then backoff; the session comes once the server takes sessions again', async () => {
    const env = await startServer();
    env.server.acceptor.drain();
    const other = await startServer();
    // The client's one address, like a balancer: to the draining instance, later to another one.
    const lb = { to: env.port };
    const srv = net.createServer((sock) => {
      const up = net.connect(lb.to, '127.0.0.1');
      for (const [a, b] of [[sock, up], [up, sock]] as const) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
        a.pipe(b);
      }
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const clock = new TestClock();
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      clock,
    });
    const started = track(client.start());
    const path = (): { attempts: number; state: string; problem: string | undefined } => client.stats().paths[0]!;
    // The first HELLO and three retries at once (0 ms timers), all refused, the clock standing still.
    const giveUp = performance.now() + 20_000;
    while (!(env.server.acceptor.counters.rejectDraining === 4 && path().state === 'backoff')) {
      if (performance.now() > giveUp) throw new Error(`never happened: four refused HELLOs (${JSON.stringify(path())})`);
      await clock.advance(0);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(clock.now()).toBe(0);
    expect(path().problem).toBe('server-busy');
    // Then it backs off like any refusal (at least 125 ms): no fifth HELLO before that.
    await clock.advance(100);
    await new Promise((r) => setTimeout(r, 200));
    expect(env.server.acceptor.counters.rejectDraining).toBe(4);
    // A server taking sessions again (a new instance behind the same address) gets the next one.
    lb.to = other.port;
    await clock.advanceUntil(() => started.settled, 10_000, 'the session after the backoff');
    expect(client.currentSession).toBeDefined();
    expect(other.server.sessions()).toHaveLength(1);
  });

  it('an unproven DRAINING (a forged REJECT on the path) is a plain path failure: no immediate retry', async () => {
    const env = await startServer();
    const hostile = await startHostilePath(env.port, (first) => (first[0] === MsgType.HELLO ? rejectBytes(ErrorCode.DRAINING, 'forged') : undefined));
    const clock = new TestClock();
    const client = startClient({
      servers: [{ host: '127.0.0.1', port: hostile.port }],
      secretKeys,
      sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
      clock,
    });
    void client.start().catch(() => undefined);
    await clock.settle(() => hostile.forged >= 1 && client.stats().paths[0]!.state === 'backoff', 'the forged refusal');
    await new Promise((r) => setTimeout(r, 200));
    expect(hostile.forged).toBe(1);
    expect(client.counters.unverifiedRefusals).toBe(1);
  });
});
