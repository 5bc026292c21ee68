/**
 * The link relay on a TestClock: delay and rate are asserted in clock time,
 * exactly, while the sockets run on real I/O. The clock stands still while the
 * test lets real I/O happen (`settle`), so "not before" checks are exact; a
 * real pause before one only gives a premature delivery the chance to show.
 * Real-time limits are hang guards, never the assertion.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startEchoServer, startLinkRelay, TestClock, type LinkRelay, type LinkRelayOptions } from '@plait/testkit';

const MiB = 1024 * 1024;

/** Everything created in a test, torn down afterwards even on failure. */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

function closeLater<T extends { close(): Promise<void> }>(x: T): T {
  cleanups.push(() => x.close());
  return x;
}

/** A real pause: time for a premature delivery to arrive, if there were one. */
const realPause = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The relay's token bucket, as documented there: burst 10 ms of rate (>= 15 kB), split quantum 2 ms (>= 1500 B). */
const burstBytes = (bps: number): number => Math.max(15_000, (bps / 8) * 0.01);
const quantumBytes = (bps: number): number => Math.max(1500, (bps / 8) * 0.002);

interface Client {
  sock: net.Socket;
  received(): Buffer;
  readonly length: number;
  readonly ended: boolean;
  readonly closed: boolean;
  readonly error: NodeJS.ErrnoException | undefined;
}

async function connect(port: number, host = '127.0.0.1', allowHalfOpen = false): Promise<Client> {
  const sock = net.connect({ port, host, allowHalfOpen });
  sock.setNoDelay(true);
  cleanups.push(() => sock.destroy());
  const chunks: Buffer[] = [];
  let length = 0;
  let ended = false;
  let closed = false;
  let error: NodeJS.ErrnoException | undefined;
  sock.on('data', (d: Buffer) => {
    chunks.push(d);
    length += d.length;
  });
  sock.on('end', () => (ended = true));
  sock.on('error', (e) => (error = e));
  sock.on('close', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return {
    sock,
    received: () => Buffer.concat(chunks),
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
  };
}

/** Writes all of buf honouring backpressure. */
async function writeAll(sock: net.Socket, buf: Buffer, chunk = 64 * 1024): Promise<void> {
  for (let off = 0; off < buf.length; off += chunk) {
    if (!sock.write(buf.subarray(off, off + chunk))) await new Promise((r) => sock.once('drain', r));
  }
}

async function relayTo(port: number, clock: TestClock, opts: Partial<LinkRelayOptions> = {}): Promise<LinkRelay> {
  const host = opts.listenHost ?? '127.0.0.1';
  return closeLater(await startLinkRelay({ ...opts, listenHost: host, target: { host, port }, clock }));
}

async function echoRelay(clock: TestClock, opts: Partial<LinkRelayOptions> = {}) {
  const echo = closeLater(await startEchoServer(opts.listenHost ?? '127.0.0.1'));
  return { echo, relay: await relayTo(echo.port, clock, opts) };
}

/** A server that counts what it receives; it can start paused (a stalled receiver). */
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
  return closeLater({
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
  });
}

/** A server that sends `body` to whoever connects, then FIN (a download). */
async function startSource(body: Buffer) {
  const socks: net.Socket[] = [];
  const server = net.createServer((s) => {
    socks.push(s);
    s.on('error', () => {});
    s.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return closeLater({
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        socks.forEach((s) => s.destroy());
      }),
  });
}

describe('link relay', () => {
  it('forwards several MiB both ways exactly and propagates FIN (127.0.0.2), in no clock time without delay or rate', async () => {
    const clock = new TestClock();
    const { relay } = await echoRelay(clock, { listenHost: '127.0.0.2' });
    expect(relay.host).toBe('127.0.0.2');
    const c = await connect(relay.port, '127.0.0.2');
    const data = randomBytes(6 * MiB);
    await writeAll(c.sock, data);
    await clock.settle(() => c.length >= data.length, '6 MiB echoed');
    expect(c.length).toBe(data.length);
    expect(sha(c.received())).toBe(sha(data));
    c.sock.end();
    await clock.settle(() => c.ended, 'FIN forwarded both ways');
    expect(relay.stats.bytesUp).toBe(data.length);
    expect(relay.stats.bytesDown).toBe(data.length);
    expect(relay.stats.connections).toBe(1);
    await clock.settle(() => relay.stats.active === 0, 'connection forgotten after close');
    expect(clock.now()).toBe(0);
  });

  it('forwards exactly through delay + rate limit (chunk splitting, small queue)', async () => {
    const clock = new TestClock();
    const { relay } = await echoRelay(clock, { delayMs: 5, rateBitsPerSec: 200e6, queueBytes: 10_000 });
    const c = await connect(relay.port);
    const data = randomBytes(3 * MiB);
    const writing = writeAll(c.sock, data, 7777);
    // Content is the assertion here; the clock bound is generous (0.13 s of rate each way), as the
    // queue only refills on real I/O between clock steps.
    await clock.advanceUntil(() => c.length >= data.length, 60_000, '3 MiB echoed through delay + rate', { stepMs: 5 });
    await writing;
    expect(sha(c.received())).toBe(sha(data));
    expect(relay.stats.bufferedBytes).toBe(0);
  });

  it('delivers a byte sent at clock t at t + delay, not before, each way; setDelay(0) makes it immediate', async () => {
    const clock = new TestClock();
    const delay = 50;
    const { echo, relay } = await echoRelay(clock, { delayMs: delay });
    const c = await connect(relay.port);
    await clock.settle(() => echo.connections === 1, 'the relay connects upstream');
    for (let round = 0; round < 3; round++) {
      const t0 = clock.now();
      const before = c.length;
      c.sock.write(randomBytes(32));
      await clock.settle(() => relay.stats.bufferedBytes === 32, 'the relay reads the ping (clock standing)');
      await clock.advance(delay - 1);
      await realPause();
      expect(relay.stats.bytesUp).toBe(32 * round);
      await clock.advance(1);
      expect(relay.stats.bytesUp).toBe(32 * (round + 1)); // at t0 + delay, exactly
      await clock.settle(() => relay.stats.bufferedBytes === 32, 'the echo reaches the relay');
      await clock.advance(delay - 1);
      await realPause();
      expect(c.length).toBe(before);
      await clock.advance(1);
      expect(relay.stats.bytesDown).toBe(32 * (round + 1));
      await clock.settle(() => c.length === before + 32, 'the echo reaches the client');
      expect(clock.now() - t0).toBe(2 * delay);
    }

    relay.setDelay(0);
    const t1 = clock.now();
    c.sock.write('fast');
    await clock.settle(() => c.length === 3 * 32 + 4, 'an echo with no delay');
    expect(clock.now()).toBe(t1);
  });

  it('setDelay applies to data arriving from then on and never reorders', async () => {
    const clock = new TestClock();
    const { relay } = await echoRelay(clock, { delayMs: 100 });
    const c = await connect(relay.port);
    c.sock.write('first ');
    await clock.settle(() => relay.stats.bufferedBytes === 6, 'first in the delay line (due at 100)');
    relay.setDelay(10);
    c.sock.write('second');
    await clock.settle(() => relay.stats.bufferedBytes === 12, 'second in the delay line (due at 10, behind first)');
    await clock.advance(10);
    await realPause();
    expect(relay.stats.bytesUp).toBe(0); // second waits behind first
    await clock.advance(89);
    await realPause();
    expect(relay.stats.bytesUp).toBe(0);
    await clock.advance(1);
    expect(relay.stats.bytesUp).toBe(12); // both at 100
    // The echo comes back with the new delay.
    await clock.settle(() => relay.stats.bufferedBytes === 12, 'the echo reaches the relay');
    await clock.advance(9);
    await realPause();
    expect(c.length).toBe(0);
    await clock.advance(1);
    await clock.settle(() => c.length === 12, 'the echo reaches the client at 110');
    expect(c.received().toString()).toBe('first second');
  });

  it('rate-limits a download to N*8/R of clock time (after the burst, within one quantum), the delay line pipelined', async () => {
    const clock = new TestClock();
    const size = 1_000_000;
    const rate = 16e6; // 2 kB per ms of clock
    const delay = 50;
    const body = randomBytes(size);
    const source = await startSource(body);
    // The queue holds the whole body, so the bucket never waits for real I/O and clock time is exact.
    const relay = await relayTo(source.port, clock, { rateBitsPerSec: rate, delayMs: delay, queueBytes: 2 * MiB });
    const c = await connect(relay.port);
    await clock.settle(() => relay.stats.bufferedBytes === size, 'the relay reads the whole body (clock standing)');
    const burst = burstBytes(rate);
    const quantum = quantumBytes(rate);
    const perMs = rate / 8000;
    // Bytes the bucket lets through by clock time t are sent at t + delay: at most burst + t*R/8,
    // and at most one quantum (plus a fractional token) less.
    let doneAt: number | undefined;
    while (doneAt === undefined) {
      await clock.advance(5);
      const t = clock.now();
      await clock.settle(() => c.length === relay.stats.bytesDown, `delivered bytes reach the client (clock ${t})`);
      const sent = relay.stats.bytesDown;
      if (t < delay) {
        expect(sent).toBe(0);
        continue;
      }
      const issued = burst + (t - delay) * perMs;
      expect(sent).toBeLessThanOrEqual(issued);
      expect(sent).toBeGreaterThanOrEqual(Math.min(size, issued - quantum - 1));
      if (sent === size) doneAt = t;
      if (t > 10_000) throw new Error(`only ${sent}/${size} bytes after 10 s of clock time`);
    }
    // Serialisation time + one one-way delay: a line that was not pipelined would take far longer.
    const expected = delay + (size - burst) / perMs; // 540 ms
    expect(doneAt).toBeGreaterThanOrEqual(expected);
    expect(doneAt).toBeLessThanOrEqual(expected + quantum / perMs + 5); // + one 5 ms step
    await clock.settle(() => c.ended, 'the FIN follows the data');
    expect(sha(c.received())).toBe(sha(body));
  });

  it('bounds the rate queue; setRate changes the rate at once and setRate(undefined) lifts the limit', async () => {
    const clock = new TestClock();
    const sink = await startSink(false);
    const queueBytes = 32 * 1024;
    const rate1 = 8e6; // 1 kB per ms
    const rate2 = 16e6;
    const relay = await relayTo(sink.port, clock, { rateBitsPerSec: rate1, queueBytes });
    const c = await connect(relay.port);
    const size = 4 * MiB; // over an hour of clock time at 8 Mbit/s if the limit stayed
    let maxBuffered = 0;
    const sample = (): number => (maxBuffered = Math.max(maxBuffered, relay.stats.bufferedBytes));
    const writing = writeAll(c.sock, randomBytes(size));
    // A full queue: the relay stops reading (the rest waits in kernel buffers and the writer).
    const queueFull = (): boolean => sample() >= queueBytes;
    await clock.settle(queueFull, 'the rate queue fills');
    await realPause();
    sample();
    // With the clock standing only the initial burst went out.
    expect(relay.stats.bytesUp).toBeLessThanOrEqual(burstBytes(rate1));
    expect(relay.stats.bytesUp).toBeGreaterThanOrEqual(burstBytes(rate1) - quantumBytes(rate1));

    /** Step the clock, letting the relay refill its queue in between (so the bucket never idles). */
    const run = async (ms: number): Promise<void> => {
      for (let left = ms; left > 0; left -= 5) {
        await clock.advance(Math.min(5, left));
        await clock.settle(() => queueFull() && sink.bytes === relay.stats.bytesUp, `queue refilled at ${clock.now()} ms`);
      }
    };
    await run(300);
    let issued = burstBytes(rate1) + 300 * (rate1 / 8000);
    expect(relay.stats.bytesUp).toBeLessThanOrEqual(issued);
    expect(relay.stats.bytesUp).toBeGreaterThanOrEqual(issued - quantumBytes(rate1) - 1);

    relay.setRate(rate2);
    await run(100);
    issued += 100 * (rate2 / 8000);
    expect(relay.stats.bytesUp).toBeLessThanOrEqual(issued);
    expect(relay.stats.bytesUp).toBeGreaterThanOrEqual(issued - quantumBytes(rate2) - 1);

    const t = clock.now();
    relay.setRate(undefined);
    await clock.settle(() => (sample(), sink.bytes === size), 'the rest arrives with no clock time once the limit is lifted');
    await writing;
    expect(clock.now()).toBe(t);
    // One read chunk (<= 64 KiB) may overshoot the queue bound, and up to a
    // burst (15 kB) may sit in the delay line if the sink's socket is briefly full.
    expect(maxBuffered).toBeLessThanOrEqual(queueBytes + 64 * 1024 + 16 * 1024);
  });

  it('bounds the delay line: a fast sender fills it to its cap and is paused until clock time releases it', async () => {
    const clock = new TestClock();
    const delay = 20;
    const sink = await startSink(false);
    const relay = await relayTo(sink.port, clock, { delayMs: delay });
    const c = await connect(relay.port);
    const size = 16 * MiB;
    const writing = writeAll(c.sock, randomBytes(size));
    const cap = 4 * MiB; // the cap without a rate limit
    await clock.settle(() => relay.stats.bufferedBytes >= cap, 'the delay line fills (clock standing)');
    await realPause(100);
    // It stopped reading: at most one read chunk over the cap, and nothing is due yet.
    expect(relay.stats.bufferedBytes).toBeLessThanOrEqual(cap + 64 * 1024);
    expect(relay.stats.bytesUp).toBe(0);
    await clock.advanceUntil(() => sink.bytes === size, 60_000, 'all 16 MiB delivered as the clock moves', { stepMs: delay });
    await writing;
    expect(relay.stats.bytesUp).toBe(size);
  });

  it('applies backpressure instead of buffering without bound when the receiver stalls', async () => {
    const clock = new TestClock();
    const delay = 20;
    const sink = await startSink(true);
    const relay = await relayTo(sink.port, clock, { delayMs: delay });
    const c = await connect(relay.port);
    const chunk = randomBytes(64 * 1024);
    const limit = 512 * MiB;
    let written = 0;
    // Write until the sender is blocked: the clock moved past the delay (so the relay
    // delivered what it could) and still no 'drain' after a real 300 ms. Stopping
    // early on a busy machine only makes the test write less.
    while (written < limit) {
      written += chunk.length;
      if (!c.sock.write(chunk)) {
        const drained = new Promise<boolean>((r) => c.sock.once('drain', () => r(true)));
        await clock.advance(delay);
        if (!(await Promise.race([drained, realPause(300).then(() => false)]))) break;
      }
    }
    expect(written).toBeLessThan(limit); // kernel buffers + relay bound, then stall
    expect(relay.stats.bufferedBytes).toBeLessThanOrEqual(4 * MiB + 64 * 1024);
    sink.resume();
    c.sock.end();
    await clock.advanceUntil(() => sink.ended, 60_000, 'everything written reaches the resumed receiver', { stepMs: delay });
    expect(sink.bytes).toBe(written);
  });

  it('blackhole drops queued and new data without closing; restore forwards new data only', async () => {
    const clock = new TestClock();
    const delay = 50;
    const { echo, relay } = await echoRelay(clock, { delayMs: delay });
    const c = await connect(relay.port);
    c.sock.write('hello');
    await clock.settle(() => relay.stats.bufferedBytes === 5, 'hello in the delay line');
    // Delay timing is asserted above; here the clock bounds are loose, real I/O sits between the steps.
    await clock.advanceUntil(() => c.length === 5, 10_000, 'hello echoed', { stepMs: 10 });
    expect(echo.connections).toBe(1);

    c.sock.write('queued');
    await clock.settle(() => relay.stats.bufferedBytes === 6, 'queued in the delay line');
    relay.cut('blackhole');
    expect(relay.stats.bufferedBytes).toBe(0); // what was on the wire is lost
    c.sock.write('lost in the void');
    // A connection made during the blackhole is accepted but never reaches the target.
    const late = await connect(relay.port);
    late.sock.write('also lost');
    await realPause(100);
    await clock.advance(10_000);
    await realPause(100);
    for (const x of [c, late]) {
      expect(x.ended).toBe(false);
      expect(x.closed).toBe(false);
      expect(x.error).toBeUndefined();
    }
    expect(c.length).toBe(5);
    expect(late.length).toBe(0);
    expect(echo.connections).toBe(1);
    expect(relay.stats.bytesUp).toBe(5);
    expect(relay.stats.bufferedBytes).toBe(0); // read and discarded, not held

    relay.restore();
    c.sock.write('again');
    await clock.settle(() => relay.stats.bufferedBytes === 5, 'again in the delay line');
    await clock.advanceUntil(() => c.length === 10, 10_000, 'again echoed', { stepMs: 10 });
    expect(c.received().toString()).toBe('helloagain');
    await clock.settle(() => echo.connections === 2, 'the late connection reaches the target');
    late.sock.write('late');
    await clock.advanceUntil(() => late.length === 4, 10_000, 'late echoed', { stepMs: 10 });
    expect(late.received().toString()).toBe('late');
    // Nothing from the blackhole trickles in afterwards.
    await clock.advance(10_000);
    await realPause();
    expect(c.length).toBe(10);
    expect(late.length).toBe(4);
  });

  it("blackhole 'hold' mode stalls, then resumes losslessly, held data still taking the delay after restore", async () => {
    const clock = new TestClock();
    const delay = 10;
    const { relay } = await echoRelay(clock, { blackhole: 'hold', delayMs: delay });
    const c = await connect(relay.port);
    c.sock.write('a');
    await clock.settle(() => relay.stats.bufferedBytes === 1, "'a' in the delay line (due at 10)");
    await clock.advance(5);
    relay.cut('blackhole');
    c.sock.write('held ');
    await realPause(100);
    await clock.advance(1000);
    await realPause(100);
    expect(relay.stats.bytesUp).toBe(0);
    expect(c.length).toBe(0);
    expect(c.closed).toBe(false);
    expect(relay.stats.bufferedBytes).toBe(1); // kept, and the relay stopped reading

    relay.restore(); // at 1005: everything is due at 1015, like a retransmission over the restored link
    await clock.settle(() => relay.stats.bufferedBytes === 6, "'held ' read after restore");
    await clock.advance(delay - 1);
    await realPause();
    expect(relay.stats.bytesUp).toBe(0);
    await clock.advance(1);
    expect(relay.stats.bytesUp).toBe(6);
    c.sock.write('then more');
    await clock.settle(() => relay.stats.bufferedBytes === 15, 'the echo and then more in the delay lines');
    await clock.advance(delay - 1);
    await realPause();
    expect(c.length).toBe(0);
    await clock.advance(1);
    await clock.settle(() => c.length === 6 && relay.stats.bufferedBytes === 9, "the held bytes echoed at 1025, 'then more' on its way back");
    await clock.advance(delay - 1);
    await realPause();
    expect(c.length).toBe(6);
    await clock.advance(1);
    await clock.settle(() => c.length === 15, "'then more' echoed at 1035");
    expect(c.received().toString()).toBe('aheld then more');
  });

  it('reset gives ECONNRESET on the client; new connections then work', async () => {
    const clock = new TestClock();
    const { relay } = await echoRelay(clock);
    const c = await connect(relay.port);
    c.sock.write('x');
    await clock.settle(() => c.length === 1, 'x echoed');
    relay.cut('reset');
    await clock.settle(() => c.closed, 'the client is reset');
    expect(c.error?.code).toBe('ECONNRESET');
    await clock.settle(() => relay.stats.active === 0, 'the relay forgets the connection');

    const d = await connect(relay.port);
    d.sock.write('ok');
    await clock.settle(() => d.length === 2, 'ok echoed');
    expect(d.received().toString()).toBe('ok');
  });

  it("close gives 'end' on the client; new connections then work", async () => {
    const clock = new TestClock();
    const { relay } = await echoRelay(clock);
    const c = await connect(relay.port);
    c.sock.write('x');
    await clock.settle(() => c.length === 1, 'x echoed');
    relay.cut('close');
    await clock.settle(() => c.ended, 'the client gets FIN');
    expect(c.error).toBeUndefined();
    await clock.settle(() => c.closed, 'the client auto-ends (allowHalfOpen false), both sides close');
    await clock.settle(() => relay.stats.active === 0, 'the relay forgets the connection');
    expect(clock.now()).toBe(0);

    const d = await connect(relay.port);
    d.sock.write('ok');
    await clock.settle(() => d.length === 2, 'ok echoed');
    expect(d.received().toString()).toBe('ok');
  });

  it("close drops a peer that never sends its FIN after 2 s of clock time, not before", async () => {
    const clock = new TestClock();
    const { relay } = await echoRelay(clock);
    const c = await connect(relay.port, '127.0.0.1', true); // half-open: it will not FIN back
    c.sock.write('x');
    await clock.settle(() => c.length === 1, 'x echoed');
    relay.cut('close');
    await clock.settle(() => c.ended, 'the client gets FIN');
    await clock.advance(1999);
    await realPause();
    expect(relay.stats.active).toBe(1);
    await clock.advance(1);
    await clock.settle(() => relay.stats.active === 0, 'the relay gives up on the FIN at 2000 ms');
  });

  it('resets the client when the target refuses the connection', async () => {
    // Grab a port that is (very likely) closed by binding and releasing it.
    const tmp = net.createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    const deadPort = (tmp.address() as net.AddressInfo).port;
    await new Promise<void>((r) => tmp.close(() => r()));
    const clock = new TestClock();
    const relay = await relayTo(deadPort, clock);
    const c = await connect(relay.port);
    await clock.settle(() => c.closed, 'the client is reset');
    expect(c.error?.code).toBe('ECONNRESET');
  });
});
