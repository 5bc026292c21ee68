import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { startEchoServer } from '@plait/testkit';
import { sha256OfStream, startFileServer } from '@plait/testkit';
import { startLinkRelay, type LinkRelay } from '@plait/testkit';

const MiB = 1024 * 1024;

/** Everything created in a test, torn down afterwards even on failure. */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

function track<T extends { close(): Promise<void> }>(x: T): T {
  cleanups.push(() => x.close());
  return x;
}

interface Client {
  sock: net.Socket;
  received(): Buffer;
  readonly length: number;
  readonly ended: boolean;
  readonly closed: boolean;
  readonly error: NodeJS.ErrnoException | undefined;
  waitForLength(n: number, timeoutMs?: number): Promise<Buffer>;
}

async function connect(port: number, host = '127.0.0.1'): Promise<Client> {
  const sock = net.connect({ port, host });
  sock.setNoDelay(true);
  cleanups.push(() => sock.destroy());
  const chunks: Buffer[] = [];
  let length = 0;
  let ended = false;
  let closed = false;
  let error: NodeJS.ErrnoException | undefined;
  let waiter: (() => void) | undefined;
  const poke = (): void => waiter?.();
  sock.on('data', (d: Buffer) => {
    chunks.push(d);
    length += d.length;
    poke();
  });
  sock.on('end', () => {
    ended = true;
    poke();
  });
  sock.on('error', (e) => {
    error = e;
    poke();
  });
  sock.on('close', () => {
    closed = true;
    poke();
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const received = (): Buffer => Buffer.concat(chunks);
  return {
    sock,
    received,
    get length() {
      return length;
    },
    get ended() {
      return ended;
    },
    get closed() {
      return closed;
    },
    get error() {
      return error;
    },
    waitForLength(n, timeoutMs = 5000) {
      return new Promise<Buffer>((resolve, reject) => {
        const check = (): void => {
          if (length >= n) {
            clearTimeout(t);
            waiter = undefined;
            resolve(received());
          } else if (closed) {
            clearTimeout(t);
            reject(new Error(`socket closed after ${length}/${n} bytes`));
          }
        };
        const t = setTimeout(() => reject(new Error(`timeout: ${length}/${n} bytes`)), timeoutMs);
        waiter = check;
        check();
      });
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitUntil(pred: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error('waitUntil: timed out');
    await sleep(5);
  }
}

/** Writes all of buf honouring backpressure. */
async function writeAll(sock: net.Socket, buf: Buffer, chunk = 64 * 1024): Promise<void> {
  for (let off = 0; off < buf.length; off += chunk) {
    if (!sock.write(buf.subarray(off, off + chunk))) await new Promise((r) => sock.once('drain', r));
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function echoRelay(opts: Partial<Parameters<typeof startLinkRelay>[0]> = {}, host = '127.0.0.1') {
  const echo = track(await startEchoServer(host));
  const relay = track(await startLinkRelay({ listenHost: host, ...opts, target: { host, port: echo.port } }));
  return { echo, relay };
}

async function pingRtt(c: Client): Promise<number> {
  const before = c.length;
  const t0 = performance.now();
  c.sock.write(randomBytes(32));
  await c.waitForLength(before + 32);
  return performance.now() - t0;
}

/** Sink server that counts bytes and can start paused (to exercise backpressure). */
async function startSink(paused: boolean) {
  let bytes = 0;
  let ended = false;
  const socks: net.Socket[] = [];
  const server = net.createServer((s) => {
    socks.push(s);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('end', () => (ended = true));
    if (paused) s.pause();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sink = {
    port: (server.address() as net.AddressInfo).port,
    get bytes() {
      return bytes;
    },
    get ended() {
      return ended;
    },
    resume: () => socks.forEach((s) => s.resume()),
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        socks.forEach((s) => s.destroy());
      }),
  };
  return track(sink);
}

describe('link relay', () => {
  it('forwards several MiB both ways exactly and propagates FIN (127.0.0.2)', async () => {
    const { relay } = await echoRelay({}, '127.0.0.2');
    expect(relay.host).toBe('127.0.0.2');
    const c = await connect(relay.port, '127.0.0.2');
    const data = randomBytes(6 * MiB);
    await writeAll(c.sock, data);
    const got = await c.waitForLength(data.length, 10_000);
    expect(got.length).toBe(data.length);
    expect(sha(got)).toBe(sha(data));
    c.sock.end();
    await waitUntil(() => c.ended);
    expect(relay.stats.bytesUp).toBe(data.length);
    expect(relay.stats.bytesDown).toBe(data.length);
    expect(relay.stats.connections).toBe(1);
    await waitUntil(() => relay.stats.active === 0);
  });

  it('forwards exactly through delay + rate limit (chunk splitting, small queue)', async () => {
    const { relay } = await echoRelay({ delayMs: 5, rateBitsPerSec: 200e6, queueBytes: 10_000 });
    const c = await connect(relay.port);
    const data = randomBytes(3 * MiB);
    const [got] = await Promise.all([c.waitForLength(data.length, 10_000), writeAll(c.sock, data, 7777)]);
    expect(sha(got)).toBe(sha(data));
    expect(relay.stats.bufferedBytes).toBe(0);
  });

  it('applies the one-way delay in each direction and setDelay takes effect', async () => {
    const { relay } = await echoRelay({ delayMs: 50 });
    const c = await connect(relay.port);
    const rtts: number[] = [];
    for (let i = 0; i < 5; i++) rtts.push(await pingRtt(c));
    // Never early: the relay checks the clock, so this holds even on a slow box.
    for (const r of rtts) expect(r).toBeGreaterThanOrEqual(100);
    expect(median(rtts)).toBeLessThan(100 + 60);

    relay.setDelay(0);
    await pingRtt(c); // a ping may straddle the change
    const fast: number[] = [];
    for (let i = 0; i < 5; i++) fast.push(await pingRtt(c));
    expect(median(fast)).toBeLessThan(40);
  });

  it('rate-limits a download while keeping the delay line pipelined', async () => {
    const size = 2_000_000;
    const rate = 16e6; // 2 MB/s -> 1 s
    const files = track(await startFileServer({ size }));
    const relay = track(
      await startLinkRelay({ target: { host: '127.0.0.1', port: files.port }, rateBitsPerSec: rate, delayMs: 50 }),
    );
    const t0 = performance.now();
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: relay.port, path: '/file', agent: false }, resolve).on('error', reject);
    });
    expect(res.statusCode).toBe(200);
    const { sha256, bytes } = await sha256OfStream(res);
    const elapsed = (performance.now() - t0) / 1000;
    expect(bytes).toBe(size);
    expect(sha256).toBe(files.sha256);
    // Serialisation time + 1 RTT. Without pipelining the 50 ms line would cap
    // throughput far below the rate.
    const expected = (size * 8) / rate + 0.1;
    expect(elapsed).toBeGreaterThan(0.7 * expected);
    expect(elapsed).toBeLessThan(1.3 * expected);
  });

  it('bounds the rate queue and setRate(undefined) lifts the limit', async () => {
    const sink = await startSink(false);
    const queueBytes = 32 * 1024;
    const relay = track(
      await startLinkRelay({ target: { host: '127.0.0.1', port: sink.port }, rateBitsPerSec: 8e6, queueBytes }),
    );
    const c = await connect(relay.port);
    const size = 4 * MiB; // ~4.2 s at 8 Mbit/s if the limit stayed
    let maxBuffered = 0;
    const sampler = setInterval(() => (maxBuffered = Math.max(maxBuffered, relay.stats.bufferedBytes)), 2);
    cleanups.push(() => clearInterval(sampler));
    const t0 = performance.now();
    const writing = writeAll(c.sock, randomBytes(size));
    await sleep(300);
    const during = sink.bytes;
    // ~300 KB at 1 MB/s; generous bounds for a noisy machine.
    expect(during).toBeGreaterThan(100_000);
    expect(during).toBeLessThan(700_000);
    relay.setRate(undefined);
    await writing;
    await waitUntil(() => sink.bytes === size, 3000);
    expect(performance.now() - t0).toBeLessThan(2000);
    // One read chunk (<= 64 KiB) may overshoot the queue bound, and up to a
    // burst (15 kB) may sit in the delay line if the sink's socket is briefly full.
    expect(maxBuffered).toBeLessThanOrEqual(queueBytes + 64 * 1024 + 16 * 1024);
  });

  it('applies backpressure instead of buffering without bound when the receiver stalls', async () => {
    const sink = await startSink(true);
    const relay = track(await startLinkRelay({ target: { host: '127.0.0.1', port: sink.port }, delayMs: 20 }));
    const c = await connect(relay.port);
    const chunk = randomBytes(64 * 1024);
    const limit = 512 * MiB;
    let written = 0;
    // Write until the sender is blocked (no 'drain' for 300 ms).
    for (;;) {
      if (written >= limit) break;
      written += chunk.length;
      if (!c.sock.write(chunk)) {
        const drained = await Promise.race([
          new Promise<boolean>((r) => c.sock.once('drain', () => r(true))),
          sleep(300).then(() => false),
        ]);
        if (!drained) break;
      }
    }
    expect(written).toBeLessThan(limit); // kernel buffers + relay bound, then stall
    expect(relay.stats.bufferedBytes).toBeLessThanOrEqual(4 * MiB + 64 * 1024);
    sink.resume();
    c.sock.end();
    await waitUntil(() => sink.ended, 8000);
    expect(sink.bytes).toBe(written);
  });

  it('blackhole stops delivery without closing; restore forwards new data only', async () => {
    const { echo, relay } = await echoRelay();
    const c = await connect(relay.port);
    c.sock.write('hello');
    await c.waitForLength(5);
    expect(echo.connections).toBe(1);

    relay.cut('blackhole');
    c.sock.write('lost in the void');
    // A connection made during the blackhole is accepted but never reaches the target.
    const late = await connect(relay.port);
    late.sock.write('also lost');
    await sleep(500);
    for (const x of [c, late]) {
      expect(x.ended).toBe(false);
      expect(x.closed).toBe(false);
      expect(x.error).toBeUndefined();
    }
    expect(c.length).toBe(5);
    expect(late.length).toBe(0);
    expect(echo.connections).toBe(1);

    relay.restore();
    c.sock.write('again');
    expect((await c.waitForLength(10)).toString()).toBe('helloagain');
    await waitUntil(() => echo.connections === 2);
    late.sock.write('late');
    expect((await late.waitForLength(4)).toString()).toBe('late');
    // Nothing from the blackhole trickles in afterwards.
    await sleep(50);
    expect(c.length).toBe(10);
    expect(late.length).toBe(4);
  });

  it("blackhole 'hold' mode stalls and then resumes losslessly", async () => {
    const { relay } = await echoRelay({ blackhole: 'hold', delayMs: 10 });
    const c = await connect(relay.port);
    relay.cut('blackhole');
    c.sock.write('held ');
    await sleep(300);
    expect(c.length).toBe(0);
    expect(c.closed).toBe(false);
    relay.restore();
    c.sock.write('then more');
    expect((await c.waitForLength(14)).toString()).toBe('held then more');
  });

  it('reset gives ECONNRESET on the client; new connections then work', async () => {
    const { relay } = await echoRelay();
    const c = await connect(relay.port);
    c.sock.write('x');
    await c.waitForLength(1);
    relay.cut('reset');
    await waitUntil(() => c.closed);
    expect(c.error?.code).toBe('ECONNRESET');
    await waitUntil(() => relay.stats.active === 0);

    const d = await connect(relay.port);
    d.sock.write('ok');
    expect((await d.waitForLength(2)).toString()).toBe('ok');
  });

  it("close gives 'end' on the client; new connections then work", async () => {
    const { relay } = await echoRelay();
    const c = await connect(relay.port);
    c.sock.write('x');
    await c.waitForLength(1);
    relay.cut('close');
    await waitUntil(() => c.ended);
    expect(c.error).toBeUndefined();
    await waitUntil(() => c.closed); // client auto-ends (allowHalfOpen false), both sides close
    await waitUntil(() => relay.stats.active === 0);

    const d = await connect(relay.port);
    d.sock.write('ok');
    expect((await d.waitForLength(2)).toString()).toBe('ok');
  });

  it('resets the client when the target refuses the connection', async () => {
    // Grab a port that is (very likely) closed by binding and releasing it.
    const tmp = net.createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    const deadPort = (tmp.address() as net.AddressInfo).port;
    await new Promise<void>((r) => tmp.close(() => r()));
    const relay: LinkRelay = track(await startLinkRelay({ target: { host: '127.0.0.1', port: deadPort } }));
    const c = await connect(relay.port);
    await waitUntil(() => c.closed);
    expect(c.error?.code).toBe('ECONNRESET');
  });
});
