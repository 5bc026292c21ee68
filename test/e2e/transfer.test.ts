/**
 * End-to-end data transfer through the real CLI: one `plait server` and one
 * `plait client` bonding two subflows (127.0.0.1 and 127.0.0.2) on loopback.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoServer, type EchoServer } from '@plait/testkit';
import { startFileServer, type FileServer } from '@plait/testkit';
import { startLinkRelay, type LinkRelay } from '@plait/testkit';
import {
  connectTcp,
  curl,
  echoRoundTrip,
  KiB,
  killAll,
  MiB,
  sha256,
  socks5Connect,
  startClient,
  startServer,
  subflowBytes,
  type ClientHandle,
  type ServerHandle,
  type StatsJson,
} from './cli-helpers.js';

const FILE_SIZE = 64 * MiB;
/**
 * On unconstrained loopback the bottleneck is CPU, not either link, so the
 * earliest-arrival (ECF) scheduler legitimately keeps most bytes on the
 * first subflow and only spills onto the second when the first is full:
 * measured 0.8-17 % on the second subflow depending on build and load. A
 * fixed ">= 5 %" split would be a flaky, false failure here, so these tests
 * only require both subflows to have carried real payload; the share test
 * with links that actually need bonding is below (rate-limited relays).
 */
const MIN_BYTES_PER_SUBFLOW = 64 * KiB;
/** With two 80 Mbit/s links, each must carry at least this share. */
const MIN_SHARE_WHEN_NEEDED = 0.25;

let fileServer: FileServer;
let echo: EchoServer;
let server: ServerHandle;
let client: ClientHandle;
let dumps: () => string;

beforeAll(async () => {
  const secret = randomBytes(32).toString('base64url');
  fileServer = await startFileServer({ size: FILE_SIZE });
  echo = await startEchoServer();
  server = await startServer({ secret, allowPrivate: true });
  client = await startClient({
    secret,
    servers: [server.addr],
    binds: ['127.0.0.1', '127.0.0.2'],
    socks: true,
    http: true,
    forwards: [`127.0.0.1:${echo.port}`],
  });
  dumps = () => `${server.proc.dump()}\n${client.proc.dump()}`;
}, 60_000);

afterAll(async () => {
  await killAll();
  await fileServer?.close();
  await echo?.close();
});

/** Each subflow's share of the bytes the client received during `run`. */
async function receivedShares(run: () => Promise<void>): Promise<{ shares: { id: number; local: string; bytes: number; share: number }[]; after: StatsJson }> {
  const before = subflowBytes(await client.stats());
  await run();
  const after = await client.stats();
  const now = subflowBytes(after);
  const deltas = [...now].map(([id, v]) => ({ id, local: v.local, bytes: v.received - (before.get(id)?.received ?? 0) }));
  const total = deltas.reduce((a, d) => a + d.bytes, 0);
  return { shares: deltas.map((d) => ({ ...d, share: total > 0 ? d.bytes / total : 0 })), after };
}

function expectTwoBusySubflows(shares: { id: number; local: string; bytes: number; share: number }[], after: StatsJson): void {
  const sess = after.sessions[0];
  expect(sess, 'client /stats has a session').toBeDefined();
  expect(sess!.subflows.length, `two subflows in ${JSON.stringify(sess!.subflows)}`).toBe(2);
  const locals = sess!.subflows.map((s) => s.local.split(':')[0]).sort();
  expect(locals).toEqual(['127.0.0.1', '127.0.0.2']);
  const total = shares.reduce((a, s) => a + s.bytes, 0);
  // The download (64 MiB + headers + record overhead) arrived on the client's subflows.
  expect(total).toBeGreaterThanOrEqual(FILE_SIZE);
  for (const s of shares) {
    expect(s.bytes, `subflow ${s.id} (${s.local}) carried ${s.bytes} of ${total} received bytes`).toBeGreaterThanOrEqual(MIN_BYTES_PER_SUBFLOW);
  }
}

describe('64 MiB download through a two-subflow client', () => {
  it('curl --socks5-hostname: sha256 matches, both subflows carry payload', async () => {
    let res: Awaited<ReturnType<typeof curl>> | undefined;
    const { shares, after } = await receivedShares(async () => {
      res = await curl(['-sS', '--fail', '--max-time', '50', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 55_000);
    });
    expect(res!.code, `curl failed: ${res!.stderr}\n${dumps()}`).toBe(0);
    expect(res!.bytes).toBe(FILE_SIZE);
    expect(res!.sha256).toBe(fileServer.sha256);
    expectTwoBusySubflows(shares, after);
  }, 60_000);

  it('curl --proxy http:// --proxytunnel (HTTP CONNECT): sha256 matches, both subflows carry payload', async () => {
    let res: Awaited<ReturnType<typeof curl>> | undefined;
    const { shares, after } = await receivedShares(async () => {
      res = await curl(['-sS', '--fail', '--max-time', '50', '--proxytunnel', '--proxy', `http://127.0.0.1:${client.httpPort}`, fileServer.url], 55_000);
    });
    expect(res!.code, `curl failed: ${res!.stderr}\n${dumps()}`).toBe(0);
    expect(res!.bytes).toBe(FILE_SIZE);
    expect(res!.sha256).toBe(fileServer.sha256);
    expectTwoBusySubflows(shares, after);
  }, 60_000);

  it('session counters: duplicateBytes never exceeds what the server actually resent', async () => {
    // BUG (plait, see report): Session.onDataFrame (packages/core/src/session.ts,
    // `duplicateBytes += payload.length - max(0, after - before)`) infers
    // duplicates from how much the stream's recvBuffered grew. Bytes consumed
    // synchronously inside onData never show up there: the 3-byte reply header
    // of every stream (Stream.consumeHeaderBytes) always, and before commit
    // 1ac7c73 also every payload byte StreamDuplex could push at once (~50 MB
    // "duplicates" per 64 MiB download). This test asserts the correct bound
    // (duplicates <= bytes the server reinjected, 0 on a calm box) and fails until the counter is fixed.
    const serverCounters = async (): Promise<Record<string, number>> => {
      const token = (await client.stats()).sessions[0]!.token;
      const sess = (await server.stats()).sessions.find((x) => x.token === token);
      expect(sess, `the server knows session ${token}`).toBeDefined();
      return sess!.counters;
    };
    const before = (await client.stats()).sessions[0]!.counters;
    const serverBefore = await serverCounters();
    const res = await curl(['-sS', '--fail', '--max-time', '30', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 35_000);
    expect(res.code, res.stderr).toBe(0);
    expect(res.sha256).toBe(fileServer.sha256);
    const after = (await client.stats()).sessions[0]!.counters;
    const serverAfter = await serverCounters();
    const duplicates = (after.duplicateBytes ?? 0) - (before.duplicateBytes ?? 0);
    // Bytes can only arrive twice if the server sent them twice: reinjection
    // (after a subflow went suspect, which a loaded box can cause), or a copy
    // on purpose (the latency class sends a stream's small first frames on two
    // subflows, counted as bytesDuplicated).
    const sentTwice = (k: string): number => (serverAfter[k] ?? 0) - (serverBefore[k] ?? 0);
    const resent = sentTwice('bytesReinjected') + sentTwice('bytesDuplicated');
    expect(duplicates, `client counted ${duplicates} duplicate bytes on a ${FILE_SIZE}-byte download; the server resent ${resent}`).toBeLessThanOrEqual(resent);
  }, 60_000);
});

describe('bonding when one link is not enough', () => {
  const relays: LinkRelay[] = [];
  afterAll(async () => {
    for (const r of relays.splice(0)) await r.close();
  });

  it('two rate-limited links (80 Mbit/s each, via relays): a 64 MiB download is spread over both (>= 25 % each)', async () => {
    // Low enough that the links, not a loaded machine's CPU, are the bottleneck.
    const RATE = 80e6;
    const r1 = await startLinkRelay({ target: { host: '127.0.0.1', port: server.port }, rateBitsPerSec: RATE });
    const r2 = await startLinkRelay({ target: { host: '127.0.0.1', port: server.port }, rateBitsPerSec: RATE });
    relays.push(r1, r2);
    const secret = server.secret;
    const c = await startClient({ secret, servers: [`127.0.0.1:${r1.port}`, `127.0.0.1:${r2.port}`], binds: ['127.0.0.1'] });
    try {
      const d1 = r1.stats.bytesDown;
      const d2 = r2.stats.bytesDown;
      const res = await curl(['-sS', '--fail', '--max-time', '40', '--socks5-hostname', `127.0.0.1:${c.socksPort}`, fileServer.url], 45_000);
      expect(res.code, `curl failed: ${res.stderr}\n${c.proc.dump()}`).toBe(0);
      expect(res.sha256).toBe(fileServer.sha256);
      const b1 = r1.stats.bytesDown - d1;
      const b2 = r2.stats.bytesDown - d2;
      const oneLinkMs = Math.round((FILE_SIZE * 8 * 1000) / RATE);
      const info = `${(b1 / MiB).toFixed(1)} + ${(b2 / MiB).toFixed(1)} MiB in ${res.elapsedMs} ms (one link alone needs >= ${oneLinkMs} ms)`;
      for (const b of [b1, b2]) expect(b / (b1 + b2), info).toBeGreaterThanOrEqual(MIN_SHARE_WHEN_NEEDED);
    } finally {
      await c.proc.kill();
    }
  }, 60_000);
});

describe('port forward', () => {
  it('--forward LPORT:127.0.0.1:ECHOPORT carries a byte-exact bidirectional 16 MiB echo', async () => {
    // Can hit the same half-close truncation bug as the 200-connection test
    // below (it usually passes with a single stream: the tail is sent in time).
    const data = randomBytes(16 * MiB);
    const sock = await connectTcp(client.forwardPorts[0]!);
    sock.on('error', () => undefined);
    try {
      const got = await echoRoundTrip(sock, data, 45_000);
      expect(got.length).toBe(data.length);
      expect(sha256(got)).toBe(sha256(data));
      expect(got.equals(data)).toBe(true);
    } finally {
      sock.destroy();
    }
  }, 60_000);
});

describe('many concurrent SOCKS streams', () => {
  it('200 concurrent SOCKS5 connections with random sizes (1 KiB..512 KiB) echo byte-exact', async () => {
    // BUG (plait, see report): when the client half-closes first (write, then
    // FIN) and the target answers and closes right after, the server's
    // StreamDuplex auto-destroys as soon as its readable side has ended and
    // _final() has queued the FIN (packages/node/src/stream-duplex.ts:
    // _final calls cb() at once; Duplex autoDestroy -> _destroy ->
    // stream.reset(CANCEL) because the core stream is not closed yet). The
    // unsent tail of the response is dropped and the proxied connection ends
    // with a clean but truncated EOF. This test asserts the correct
    // behaviour (a complete echo) and fails while that bug is there.
    const N = 200;
    const sizes = Array.from({ length: N }, () => randomInt(KiB, 512 * KiB + 1));
    const failures: string[] = [];
    const results = await Promise.all(
      sizes.map(async (size, i) => {
        const data = randomBytes(size);
        let sock;
        try {
          const r = await socks5Connect(client.socksPort!, '127.0.0.1', echo.port, 30_000);
          sock = r.socket;
          if (r.code !== 0) throw new Error(`SOCKS reply ${r.code}`);
          const got = await echoRoundTrip(sock, data, 60_000);
          if (!got.equals(data)) throw new Error(`echo mismatch: sent ${size} bytes, got ${got.length} (sha ${sha256(got).slice(0, 12)} vs ${sha256(data).slice(0, 12)})`);
          return true;
        } catch (e) {
          failures.push(`#${i} (${size} B): ${e instanceof Error ? e.message : String(e)}`);
          return false;
        } finally {
          sock?.destroy();
        }
      }),
    );
    expect(failures, `${failures.length} of ${N} failed:\n${failures.slice(0, 20).join('\n')}\n${dumps()}`).toEqual([]);
    expect(results.every(Boolean)).toBe(true);
    expect(echo.connections).toBeGreaterThanOrEqual(N);
  }, 75_000);
});
