/**
 * One long transfer must not grow the proxy with its length: the bytes read
 * from the local socket (server: the target; client: the app) are released
 * once the peer acknowledged them. (A regression once kept every read slab
 * of a connection until it closed: a 1.5 GiB download left the server at
 * 1.6 GiB RSS.) Real CLI on loopback, one subflow, a --forward each way.
 */
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, MiB, startClient, startServer, type ClientHandle, type ServerHandle } from './cli-helpers.js';

const SIZE = 384 * MiB;
/** Far below SIZE: what the process may hold beyond its resting size (windows, buffers, heap slack). */
const GROWTH_LIMIT = 160 * MiB;
const BLOCK = Buffer.alloc(256 * 1024);
for (let i = 0; i < BLOCK.length; i++) BLOCK[i] = (i * 131 + 7) & 0xff;
const SIZE_SHA = ((): string => {
  const h = createHash('sha256');
  for (let n = 0; n < SIZE; n += BLOCK.length) h.update(BLOCK);
  return h.digest('hex');
})();

let server: ServerHandle;
let client: ClientHandle;
let source: net.Server;
let sink: net.Server;
let sinkDone: Promise<string>;

const rssOf = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/** Writes SIZE bytes (BLOCK repeated) to `s` with backpressure, then ends it. */
function sendAll(s: net.Socket): void {
  let sent = 0;
  const more = (): void => {
    while (sent < SIZE) {
      sent += BLOCK.length;
      if (!s.write(BLOCK)) return;
    }
    s.end();
  };
  s.on('drain', more);
  more();
}

/** Reads everything from `s`; its sha256 and length. */
function readAll(s: net.Socket): Promise<{ sha: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let bytes = 0;
    s.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    s.on('end', () => resolve({ sha: h.digest('hex'), bytes }));
    s.on('error', reject);
  });
}

beforeAll(async () => {
  source = net.createServer((s) => {
    s.on('error', () => undefined);
    sendAll(s);
  });
  let resolveSink: (sha: string) => void;
  sinkDone = new Promise((r) => (resolveSink = r));
  sink = net.createServer((s) => {
    s.on('error', () => undefined);
    void readAll(s).then(({ sha, bytes }) => resolveSink(`${bytes}:${sha}`));
  });
  await new Promise<void>((r) => source.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const secret = randomBytes(32).toString('base64url');
  server = await startServer({ secret, allowPrivate: true });
  client = await startClient({
    secret,
    servers: [server.addr],
    socks: false,
    forwards: [`127.0.0.1:${(source.address() as net.AddressInfo).port}`, `127.0.0.1:${(sink.address() as net.AddressInfo).port}`],
  });
}, 60_000);

afterAll(async () => {
  await killAll();
  source?.close();
  sink?.close();
});

describe('a long transfer through one connection', () => {
  it(`download of ${SIZE / MiB} MiB: intact, and the server does not grow with it`, async () => {
    const before = rssOf(server.proc.pid);
    const s = net.connect(client.forwardPorts[0]!, '127.0.0.1');
    const got = await readAll(s);
    expect(got.bytes).toBe(SIZE);
    expect(got.sha).toBe(SIZE_SHA);
    expect(rssOf(server.proc.pid) - before).toBeLessThan(GROWTH_LIMIT);
  }, 120_000);

  it(`upload of ${SIZE / MiB} MiB: intact, and the client does not grow with it`, async () => {
    const before = rssOf(client.proc.pid);
    const s = net.connect(client.forwardPorts[1]!, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('connect', () => sendAll(s));
    expect(await sinkDone).toBe(`${SIZE}:${SIZE_SHA}`);
    expect(rssOf(client.proc.pid) - before).toBeLessThan(GROWTH_LIMIT);
  }, 120_000);
});
