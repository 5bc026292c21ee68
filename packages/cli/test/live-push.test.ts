/**
 * The stats port's /live WebSocket: pushes the /stats JSON, under the same
 * Host rule as /stats plus an Origin check (browsers let any site open a
 * WebSocket to 127.0.0.1), with a bound on live pages and slow readers
 * dropped instead of buffered for.
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TestClock } from '@plait/testkit';
import { LIVE_PAGE_MAIN, renderLive, updateLiveHistory } from '../src/live-page.js';
import { isAllowedLiveOrigin, LivePush } from '../src/live-push.js';
import { startStatsServer, type StatsSnapshot } from '../src/stats.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TOKEN = '0123456789abcdef0123456789abcdef';
const snap = (): StatsSnapshot => ({
  role: 'server',
  uptimeSeconds: 7,
  sessions: [{ token: TOKEN, subflows: [] } as unknown as StatsSnapshot['sessions'][number]],
  counters: { connections: 1 },
});

async function stats(clock?: TestClock): Promise<number> {
  const server = await startStatsServer('127.0.0.1', 0, snap, clock ? { clock } : {});
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** Open a WebSocket; resolves with it once open, or with the HTTP status it was refused with. */
function open(url: string, headers: Record<string, string> = {}): Promise<WebSocket | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    cleanups.push(() => ws.terminate());
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => resolve(-1));
  });
}


describe('/live on the stats server', () => {
  it('pushes the /stats JSON at once, then once per second of clock time (not before)', async () => {
    const clock = new TestClock();
    const port = await stats(clock);
    // Listening from the start: the first push may arrive with the upgrade's answer.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/live`);
    cleanups.push(() => ws.terminate());
    const got: string[] = [];
    ws.on('message', (d: Buffer) => got.push(d.toString()));
    await clock.settle(() => got.length === 1, 'the push on connect');
    const first = JSON.parse(got[0]!) as StatsSnapshot;
    expect(first.role).toBe('server');
    expect(first.sessions[0]!.token).toBe(TOKEN.slice(0, 8)); // as /stats: the token is cut to its prefix
    await clock.advance(999);
    await new Promise((r) => setTimeout(r, 50)); // real time for a premature push to arrive, if there were one
    expect(got.length).toBe(1);
    await clock.advance(1);
    await clock.settle(() => got.length === 2, 'the push at 1000 ms');
    await clock.advance(1000);
    await clock.settle(() => got.length === 3, 'the push at 2000 ms');
  });

  it('refuses a foreign Host (DNS rebinding) and a foreign Origin (another site), like /stats', async () => {
    const port = await stats();
    expect(await open(`ws://127.0.0.1:${port}/live`, { host: 'evil.example' })).toBe(403);
    expect(await open(`ws://127.0.0.1:${port}/live`, { origin: 'http://evil.example' })).toBe(403);
    expect(await open(`ws://127.0.0.1:${port}/live`, { origin: `http://127.0.0.1:${port + 1}` })).toBe(403);
    expect(await open(`ws://127.0.0.1:${port}/live`, { origin: `http://127.0.0.1:${port}` })).toBeInstanceOf(WebSocket);
    expect(await open(`ws://127.0.0.1:${port}/other`)).toBe(404);
  });

  it('a client that sends anything is closed (the endpoint only pushes)', async () => {
    const port = await stats();
    const ws = (await open(`ws://127.0.0.1:${port}/live`)) as WebSocket;
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    ws.send('hello');
    expect(await closed).toBe(1008);
  });

  it('closing the stats server ends its live pages (close does not hang on them)', async () => {
    const server = await startStatsServer('127.0.0.1', 0, snap);
    const port = (server.address() as net.AddressInfo).port;
    const ws = (await open(`ws://127.0.0.1:${port}/live`)) as WebSocket;
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    await new Promise<void>((r) => server.close(() => r()));
    await closed;
  });
});

describe('LivePush bounds', () => {
  async function push(opts: Partial<ConstructorParameters<typeof LivePush>[0]>) {
    const live = new LivePush({ snapshot: () => '{}', ...opts });
    const server = http.createServer((_q, r) => r.writeHead(404).end());
    server.on('upgrade', (req, socket, head) => live.handleUpgrade(req, socket, head));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => {
      live.close();
      return new Promise<void>((r) => server.close(() => r()));
    });
    return { live, url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/live` };
  }

  it('refuses live pages over the limit with 503', async () => {
    const { url, live } = await push({ maxClients: 2 });
    expect(await open(url)).toBeInstanceOf(WebSocket);
    expect(await open(url)).toBeInstanceOf(WebSocket);
    expect(await open(url)).toBe(503);
    expect(live.clientCount).toBe(2);
  });

  it('drops a client that stops reading instead of queueing for it', async () => {
    const clock = new TestClock();
    const big = JSON.stringify({ pad: 'x'.repeat(256 * 1024) });
    const { url, live } = await push({ snapshot: () => big, intervalMs: 10, maxBufferedBytes: 512 * 1024, clock });
    const fast = (await open(url)) as WebSocket;
    let fastGot = 0;
    fast.on('message', () => fastGot++);
    const slow = (await open(url)) as WebSocket;
    // Stop reading at the socket: the kernel buffers fill, then the server's queue grows.
    (slow as unknown as { _socket: net.Socket })._socket.pause();
    const closed = new Promise<void>((r) => slow.once('close', () => r()));
    // Each clock step is one push; the kernel buffers take a few MiB before the queue grows.
    await clock.advanceUntil(() => live.dropped > 0, 60_000, 'the slow reader dropped', { stepMs: 10, realMs: 5 });
    expect(live.dropped).toBe(1);
    expect(live.clientCount).toBe(1); // the reader that keeps up stays
    (slow as unknown as { _socket: net.Socket })._socket.resume();
    await closed;
    const before = fastGot;
    await clock.advanceUntil(() => fastGot > before, 1_000, 'the fast reader still served', { stepMs: 10 });
  });
});

describe('isAllowedLiveOrigin', () => {
  it('the page its own origin, or no browser at all', () => {
    expect(isAllowedLiveOrigin(undefined, '127.0.0.1:9100')).toBe(true);
    expect(isAllowedLiveOrigin('http://127.0.0.1:9100', '127.0.0.1:9100')).toBe(true);
    expect(isAllowedLiveOrigin('http://LOCALHOST:9100', 'localhost:9100')).toBe(true);
    expect(isAllowedLiveOrigin('https://127.0.0.1:9100', '127.0.0.1:9100')).toBe(false);
    expect(isAllowedLiveOrigin('http://evil.example', '127.0.0.1:9100')).toBe(false);
    expect(isAllowedLiveOrigin('null', '127.0.0.1:9100')).toBe(false);
    expect(isAllowedLiveOrigin('http://127.0.0.1:9100', undefined)).toBe(false);
  });
});

describe('the page says how its data comes', () => {
  const s = { role: 'server', uptimeSeconds: 7, sessions: [], counters: {} };
  it('pushed over /live, or polling /stats as the fallback', () => {
    const pushed = renderLive(s, {}, { connected: true, via: 'websocket' });
    expect(pushed).toContain('data-via="websocket"');
    expect(pushed).not.toContain('polling');
    const polled = renderLive(s, {}, { connected: true, via: 'polling' });
    expect(polled).toContain('data-via="polling"');
    expect(polled).toContain('● live (polling /stats)');
  });
});

/**
 * The page's own loop (the very script the page embeds) with a stand-in
 * browser: a WebSocket we open or fail, a fetch that answers, timers we run.
 */
describe("the page's loop: /live first, polling /stats when it fails", () => {
  class FakeSocket {
    static last: FakeSocket | undefined;
    onopen?: () => void;
    onmessage?: (ev: { data: string }) => void;
    onclose?: () => void;
    constructor(readonly url: string) {
      FakeSocket.last = this;
    }
    close(): void {
      this.onclose?.();
    }
  }

  function runPage() {
    const root = { innerHTML: '' };
    const timers: { at: number; fn: () => void; id: number }[] = [];
    let now = 0;
    let nextId = 1;
    const fetched: string[] = [];
    const snapshot = { role: 'client', uptimeSeconds: 3, sessions: [], counters: {} };
    const env = {
      document: { getElementById: () => root },
      location: { protocol: 'http:', host: '127.0.0.1:9100' },
      WebSocket: FakeSocket,
      fetch: async (u: string) => {
        fetched.push(u);
        return { ok: true, status: 200, json: async () => snapshot };
      },
      setTimeout: (fn: () => void, ms: number) => {
        const id = nextId++;
        timers.push({ at: now + ms, fn, id });
        return id;
      },
      clearTimeout: (id: number) => {
        const i = timers.findIndex((t) => t.id === id);
        if (i >= 0) timers.splice(i, 1);
      },
      Date: class extends Date {
        static override now(): number {
          return now;
        }
      },
    };
    const script = `'use strict';\nconst updateLiveHistory = ${updateLiveHistory.toString()};\nconst renderLive = ${renderLive.toString()};\n${LIVE_PAGE_MAIN}`;
    new Function(...Object.keys(env), script)(...Object.values(env));
    const settle = () => new Promise((r) => setTimeout(r, 0));
    return {
      root,
      fetched,
      snapshot,
      /** Advance the page's clock by `ms`, running its timers in order. */
      async advance(ms: number) {
        const end = now + ms;
        for (;;) {
          timers.sort((a, b) => a.at - b.at);
          const t = timers[0];
          if (!t || t.at > end) break;
          timers.shift();
          now = t.at;
          t.fn();
          await settle();
        }
        now = end;
        await settle();
      },
    };
  }

  it('takes pushes while /live is open; polls /stats when it closes; goes back to /live when it opens again', async () => {
    const page = runPage();
    const first = FakeSocket.last!;
    expect(first.url).toBe('ws://127.0.0.1:9100/live');
    first.onopen!();
    first.onmessage!({ data: JSON.stringify(page.snapshot) });
    expect(page.root.innerHTML).toContain('data-via="websocket"');
    await page.advance(3_000);
    expect(page.fetched).toHaveLength(0); // no polling while pushes come

    first.onclose!(); // the WebSocket fails
    await page.advance(10);
    expect(page.fetched).toEqual(['/stats']);
    expect(page.root.innerHTML).toContain('data-via="polling"');
    await page.advance(3_000);
    expect(page.fetched.length).toBeGreaterThanOrEqual(3); // once a second

    await page.advance(7_000); // 10 s after the failure: /live again
    const second = FakeSocket.last!;
    expect(second).not.toBe(first);
    second.onopen!();
    second.onmessage!({ data: JSON.stringify(page.snapshot) });
    const polls = page.fetched.length;
    await page.advance(3_000);
    expect(page.fetched.length).toBe(polls); // polling stopped
    expect(page.root.innerHTML).toContain('data-via="websocket"');
  });

  it('a /live that goes quiet for 5 s counts as failed', async () => {
    const page = runPage();
    const ws = FakeSocket.last!;
    ws.onopen!();
    ws.onmessage!({ data: JSON.stringify(page.snapshot) });
    await page.advance(6_000);
    expect(page.fetched.length).toBeGreaterThanOrEqual(1);
    expect(page.root.innerHTML).toContain('data-via="polling"');
  });
});
