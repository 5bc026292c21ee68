/**
 * Refusals through the real CLI: wrong secret, junk on the server port,
 * and the egress policy (private targets) without --allow-private.
 */
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEchoServer, type EchoServer } from '@plait/testkit';
import { startFileServer, type FileServer } from '@plait/testkit';
import {
  connectTcp,
  curl,
  freePort,
  killAll,
  MiB,
  readExact,
  sleep,
  socks5Connect,
  spawnPlait,
  startClient,
  startServer,
  untilDropped,
  waitUntil,
  type ServerHandle,
} from './cli-helpers.js';

let fileServer: FileServer;
let echo: EchoServer;

beforeAll(async () => {
  fileServer = await startFileServer({ size: 1 * MiB });
  echo = await startEchoServer();
});

afterAll(async () => {
  await killAll();
  await fileServer?.close();
  await echo?.close();
});

async function expectCurlWorks(socksPort: number, what: string): Promise<void> {
  const res = await curl(['-sS', '--fail', '--max-time', '20', '--socks5-hostname', `127.0.0.1:${socksPort}`, fileServer.url], 25_000);
  expect(res.code, `${what}: curl failed: ${res.stderr}`).toBe(0);
  expect(res.sha256).toBe(fileServer.sha256);
}

function refusals(server: ServerHandle): Record<string, unknown>[] {
  return server.logLines().filter((l) => typeof l.msg === 'string' && l.msg.includes('refused connection'));
}

describe('handshake refusals (server with --allow-private)', () => {
  let server: ServerHandle;
  let secret: string;

  beforeAll(async () => {
    secret = randomBytes(32).toString('base64url');
    server = await startServer({ secret, allowPrivate: true });
  }, 30_000);

  afterEach(() => {
    expect(server.proc.exited, `the server died\n${server.proc.dump()}`).toBe(false);
  });

  it('a client with the wrong secret exits non-zero saying "authentication failed"; the server logs AUTH_FAILED; a good client still works', async () => {
    const wrong = randomBytes(32).toString('base64url');
    const socksPort = await freePort();
    const bad = spawnPlait(['client', '--server', server.addr, '--secret', wrong, '--socks', `127.0.0.1:${socksPort}`], { name: 'plait client (wrong secret)' });
    // A hang guard, not a timing: the client must give up by itself.
    const { code } = await bad.waitExit(20_000);
    expect(code, bad.dump()).not.toBe(0);
    expect(code, bad.dump()).not.toBeNull();
    expect(bad.stderr()).toMatch(/authentication failed/i);

    const line = await waitUntil(
      'an AUTH_FAILED refusal in the server log',
      () => refusals(server).find((l) => l.code === 'AUTH_FAILED'),
      5_000,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${server.proc.dump()}`);
    });
    expect(line.level).toBe(40); // pino warn

    const good = await startClient({ secret, servers: [server.addr] });
    try {
      await expectCurlWorks(good.socksPort!, 'good client after a refused one');
    } finally {
      await good.proc.kill();
    }
  }, 40_000);

  it('garbage, a half handshake and a slow drip are each dropped before the drip could finish; the server keeps serving', async () => {
    const before = refusals(server).length;
    // The server's handshake deadline (5 s) is pinned on a virtual clock in packages/core/test/preauth.test.ts;
    // here, a separate process on real time, the guard only has to sit far above it (a busy machine must not
    // fail the test) and far below the ~55 s the drip needs to complete (a server that waits it out must).
    const GUARD_MS = 20_000;

    // 1. Garbage: an unknown message type straight away.
    const garbage = async (): Promise<void> => {
      const s = await connectTcp(server.port);
      s.on('error', () => undefined);
      const dropped = untilDropped(s, GUARD_MS);
      const junk = randomBytes(1024);
      junk[0] = 0xee;
      s.write(junk);
      try {
        return await dropped;
      } finally {
        s.destroy();
      }
    };
    // 2. A valid-looking HELLO header (type 0x01, length 107), then nothing.
    const half = async (): Promise<void> => {
      const s = await connectTcp(server.port);
      s.on('error', () => undefined);
      const dropped = untilDropped(s, GUARD_MS);
      s.write(Buffer.from([0x01, 0x00, 0x6b]));
      try {
        return await dropped;
      } finally {
        s.destroy();
      }
    };
    // 3. A HELLO dripped one byte every 500 ms (would take ~55 s to complete).
    const drip = async (): Promise<void> => {
      const s: net.Socket = await connectTcp(server.port);
      s.on('error', () => undefined);
      const dropped = untilDropped(s, GUARD_MS);
      const hello = Buffer.concat([Buffer.from([0x01, 0x00, 0x6b, 0x01, 0x00, 0x00]), randomBytes(104)]);
      let stop = false;
      let sent = 0;
      const writer = (async () => {
        for (let i = 0; i < hello.length && !stop; i++) {
          if (s.destroyed || s.writableEnded) break;
          s.write(hello.subarray(i, i + 1));
          sent++;
          await sleep(500);
        }
      })();
      try {
        await dropped;
        expect(sent, 'the drip was cut off before its HELLO was complete').toBeLessThan(hello.length);
      } finally {
        stop = true;
        s.destroy();
        await writer;
      }
    };

    await Promise.all([garbage(), half(), drip()]);

    await waitUntil('three refusals in the server log', () => refusals(server).length - before >= 3, 3_000).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${server.proc.dump()}`);
    });
    expect(server.proc.exited).toBe(false);
    const good = await startClient({ secret, servers: [server.addr], binds: ['127.0.0.1', '127.0.0.2'] });
    try {
      await expectCurlWorks(good.socksPort!, 'good client after junk connections');
    } finally {
      await good.proc.kill();
    }
  }, 40_000);
});

describe('egress policy (server without --allow-private)', () => {
  it('a SOCKS request for 127.0.0.1:ECHOPORT is refused with reply 0x02 and the connection closes', async () => {
    const secret = randomBytes(32).toString('base64url');
    const server = await startServer({ secret, allowPrivate: false });
    const client = await startClient({ secret, servers: [server.addr], http: true });
    const echoBefore = echo.connections;

    const r = await socks5Connect(client.socksPort!, '127.0.0.1', echo.port, 10_000);
    try {
      expect(r.reply[0]).toBe(0x05);
      expect(r.code, `SOCKS reply ${r.reply.toString('hex')}`).toBe(0x02);
      // It must not hang: the proxy closes the connection after the error reply.
      await untilDropped(r.socket, 10_000);
    } finally {
      r.socket.destroy();
    }

    // The same through the HTTP CONNECT frontend: 403.
    const s = await connectTcp(client.httpPort!);
    s.on('error', () => undefined);
    try {
      s.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`);
      const status = (await readExact(s, 12, 10_000)).toString('latin1');
      expect(status).toBe('HTTP/1.1 403');
    } finally {
      s.destroy();
    }

    expect(echo.connections, 'the server never connected to the private target').toBe(echoBefore);
    const st = await server.stats();
    expect(st.counters.streamsRefused, JSON.stringify(st.counters)).toBeGreaterThanOrEqual(2);
    await client.proc.kill();
    await server.proc.kill();
  }, 40_000);
});
