import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { ResetCode } from '@plait/core';
import { DialError, pipeBoth, socksReplyFor } from '../src/dialer.js';
import { listen, closeServer, reader, connect, settles, waitFor } from './socket-helpers.js';

// ---- fixtures ----

const servers: net.Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map(closeServer));
});

/** A connected loopback TCP pair: [client end, server end], both allowing half-open. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  servers.push(server);
  const port = await listen(server);
  const accepted = new Promise<net.Socket>((res) => server.once('connection', res));
  const client = await connect(port);
  return [client, await accepted];
}

/**
 * Two pairs joined in the middle: left <-> [a | pipeBoth | b] <-> right.
 * The test drives `left` and `right` like a client and a target would.
 */
async function joined(): Promise<{ left: net.Socket; right: net.Socket; a: net.Socket; b: net.Socket }> {
  const [left, a] = await socketPair();
  const [right, b] = await socketPair();
  pipeBoth(a, b);
  return { left, right, a, b };
}

// ---- tests ----

describe('socksReplyFor', () => {
  // Written out from PROTOCOL.md section 9.
  const table: [ResetCode, number][] = [
    [ResetCode.CANCEL, 0x01],
    [ResetCode.REFUSED, 0x05],
    [ResetCode.HOST_UNREACHABLE, 0x04],
    [ResetCode.NETWORK_UNREACHABLE, 0x03],
    [ResetCode.TIMEOUT, 0x06],
    [ResetCode.NOT_ALLOWED, 0x02],
    [ResetCode.DNS_FAILED, 0x04],
    [ResetCode.LIMIT, 0x01],
    [ResetCode.PROTOCOL, 0x01],
    [ResetCode.SESSION_CLOSED, 0x01],
    [ResetCode.INTERNAL, 0x01],
    [ResetCode.FLOW_CONTROL, 0x01],
  ];
  it('covers every RESET code', () => {
    expect(table.map(([c]) => c).sort((x, y) => x - y)).toEqual(Object.values(ResetCode).sort((x, y) => x - y));
  });
  for (const [code, reply] of table) {
    it(`maps ${code} to 0x0${reply.toString(16)}`, () => expect(socksReplyFor(code)).toBe(reply));
  }
});

describe('DialError', () => {
  it('carries its code and message and is an Error', () => {
    const e = new DialError(ResetCode.TIMEOUT, 'slow');
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe(ResetCode.TIMEOUT);
    expect(e.message).toBe('slow');
    expect(e.name).toBe('DialError');
  });
});

describe('pipeBoth', () => {
  it('carries several MiB each way at once, byte-exact', async () => {
    const { left, right } = await joined();
    const rl = reader(left);
    const rr = reader(right);
    const up = randomBytes(3 * 1024 * 1024);
    const down = randomBytes(5 * 1024 * 1024);
    left.end(up);
    right.end(down);
    const [gotUp, gotDown] = await Promise.all([rr.rest(), rl.rest()]);
    expect(gotUp.equals(up)).toBe(true);
    expect(gotDown.equals(down)).toBe(true);
    await Promise.all([rl.closed(), rr.closed()]);
  });

  it('passes a half-close left to right while right can still answer', async () => {
    const { left, right, a, b } = await joined();
    const rl = reader(left);
    const rr = reader(right);
    left.end('request');
    expect((await rr.rest()).toString()).toBe('request');
    // Left only half-closed: the FIN went through and nothing was torn down.
    expect([a.destroyed, b.destroyed, rl.isClosed()]).toEqual([false, false, false]);
    right.write('answer part 1, ');
    expect((await rl.take(15)).toString()).toBe('answer part 1, ');
    right.end('part 2');
    expect((await rl.rest()).toString()).toBe('part 2');
    await Promise.all([rl.closed(), rr.closed()]);
  });

  it('passes a half-close right to left while left can still send', async () => {
    const { left, right, a, b } = await joined();
    const rl = reader(left);
    const rr = reader(right);
    right.end('banner');
    expect((await rl.rest()).toString()).toBe('banner');
    expect([a.destroyed, b.destroyed, rr.isClosed()]).toEqual([false, false, false]);
    left.end('late data');
    expect((await rr.rest()).toString()).toBe('late data');
  });

  it('lets the other side flush after one side closed cleanly', async () => {
    // b writes slowly, so it still holds data when a has ended both ways and closed.
    const received: Buffer[] = [];
    const b = new Duplex({
      highWaterMark: 1024,
      read() {},
      write(chunk: Buffer, _enc, cb) {
        setTimeout(() => {
          received.push(chunk);
          cb();
        }, 5);
      },
    });
    const a = new Duplex({
      read() {},
      write(_chunk: Buffer, _enc, cb) {
        cb();
      },
    });
    pipeBoth(a, b);
    b.push(null);
    const sent = randomBytes(20 * 1000);
    for (let i = 0; i < 20; i++) a.push(sent.subarray(i * 1000, (i + 1) * 1000));
    a.push(null);
    const aClosed = new Promise<void>((r) => a.once('close', () => r()));
    await new Promise<void>((r) => b.once('close', () => r()));
    await aClosed;
    expect(Buffer.concat(received).equals(sent)).toBe(true);
  });

  it('tears both down when one side is reset', async () => {
    const { left, right, a, b } = await joined();
    const rr = reader(right);
    reader(left);
    left.resetAndDestroy();
    // b is destroyed, so right sees its end (it stays half-open itself).
    await rr.rest();
    expect(a.destroyed).toBe(true);
    expect(b.destroyed).toBe(true);
  });

  it('tears both down when one side errors', async () => {
    const x = new PassThrough();
    const y = new PassThrough();
    pipeBoth(x, y);
    const yClosed = new Promise<void>((r) => y.once('close', () => r()));
    x.destroy(new Error('broken'));
    await settles(yClosed, 'the other side is closed', 5_000);
    expect(y.destroyed).toBe(true);
  });

  it('tears both down when one side is destroyed before its end', async () => {
    const x = new PassThrough();
    const y = new PassThrough();
    pipeBoth(x, y);
    const xClosed = new Promise<void>((r) => x.once('close', () => r()));
    y.destroy();
    await settles(xClosed, 'the other side is closed', 5_000);
    expect(x.destroyed).toBe(true);
  });

  it('stops reading one side while the other does not drain', async () => {
    // `b` accepts writes but never completes them, like a peer that stopped reading.
    const written: number[] = [];
    const b = new Duplex({
      highWaterMark: 64 * 1024,
      read() {},
      write(chunk: Buffer, _enc, _cb) {
        written.push(chunk.length);
      },
    });
    const a = new PassThrough({ highWaterMark: 64 * 1024 });
    pipeBoth(a, b);
    let accepted = 0;
    const chunk = Buffer.alloc(16 * 1024);
    for (let i = 0; i < 1024 && a.write(chunk); i++) accepted += chunk.length;
    // Without backpressure all 16 MiB would be pushed into b, and a would never pause.
    await waitFor(() => a.isPaused(), 'the pipe pauses a', 5_000);
    expect(accepted).toBeLessThan(1024 * 1024);
    expect(b.writableLength).toBeLessThanOrEqual(256 * 1024);
  });

  it('respects backpressure between sockets: a stalled reader does not make the middle buffer everything', async () => {
    const { left, right, a, b } = await joined();
    right.pause();
    const big = Buffer.alloc(48 * 1024 * 1024, 7);
    left.write(big);
    // The middle stops reading `a` once `b` is full; the kernel buffers some MiB, the rest must wait in `left`, not in `b`.
    await waitFor(() => a.isPaused() && b.writableLength > 0, 'the pipe stops reading a', 5_000);
    expect(b.writableLength).toBeLessThan(4 * 1024 * 1024);
    expect(left.writableLength).toBeGreaterThan(8 * 1024 * 1024);
    left.destroy();
    right.destroy();
  });
});
