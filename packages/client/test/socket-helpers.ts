import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import * as net from 'node:net';

/** Socket helpers shared by the frontend tests. */

export function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') reject(new Error('no port'));
      else resolve(addr.port);
    });
  });
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Collects everything a socket receives and lets a test wait for bytes, end or close. */
export function reader(sock: net.Socket) {
  const chunks: Buffer[] = [];
  let length = 0;
  let ended = false;
  let closed = false;
  let waiters: (() => void)[] = [];
  const wake = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  sock.on('data', (c: Buffer) => {
    chunks.push(c);
    length += c.length;
    wake();
  });
  sock.on('end', () => {
    ended = true;
    wake();
  });
  sock.on('close', () => {
    closed = true;
    wake();
  });
  sock.on('error', () => {});
  const until = (cond: () => boolean, what: string, ms = 10_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      const check = (): void => {
        if (cond()) {
          clearTimeout(t);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  const all = (): Buffer => {
    const b = Buffer.concat(chunks);
    chunks.length = 0;
    if (b.length > 0) chunks.push(b);
    return b;
  };
  return {
    received: (): Buffer => all(),
    isClosed: (): boolean => closed,
    async take(n: number): Promise<Buffer> {
      await until(() => length >= n || closed, `${n} bytes`);
      const b = all();
      if (b.length < n) throw new Error(`closed after ${b.length} of ${n} bytes`);
      chunks.length = 0;
      if (b.length > n) chunks.push(b.subarray(n));
      length -= n;
      return b.subarray(0, n);
    },
    async rest(): Promise<Buffer> {
      await until(() => ended || closed, 'end');
      return all();
    },
    closed: (): Promise<void> => until(() => closed, 'close'),
  };
}

export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Resolves as `p` does. The real-time limit is a hang guard (a clear message
 * instead of the test timeout), not an assertion on how long `p` takes.
 */
export function settles<T>(p: Promise<T> | undefined, what: string, guardMs = 20_000): Promise<T> {
  if (!p) return Promise.reject(new Error(`no promise: ${what}`));
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`never settled: ${what}`)), guardMs);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(timer));
}

/** Write `data` to an echo connection and resolve with what came back (as many bytes). */
export async function echoRoundTrip(conn: Duplex, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    conn.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= data.length) resolve(Buffer.concat(chunks));
    });
    conn.on('error', reject);
    conn.write(data);
  });
}

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Poll `cond` until it holds, for outcomes of real I/O. The real-time limit
 * is a hang guard only: tests assert on what happened, and on clock time
 * through a TestClock, never on how long this took.
 */
export async function waitFor(cond: () => boolean, what: string, guardMs = 20_000): Promise<void> {
  const giveUp = performance.now() + guardMs;
  while (!cond()) {
    if (performance.now() > giveUp) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

