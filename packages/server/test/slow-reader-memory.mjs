// Slow-reader attack, measured: one session (client end in this process over
// one loopback TCP subflow to a PlaitServer), N streams to a target that
// sends forever, and a client that never reads. Prints JSON: bytes the
// server buffers for its streams (core accounting) and the RSS growth.
// Run after `npx tsc -b`: node packages/server/test/slow-reader-memory.mjs [N] [seconds]
import * as net from 'node:net';
import { connectSession, deriveSecretKeys, makeConfig, realClock } from '@plait/core';
import { SocketChannel } from '@plait/node';
import { EgressPolicy, PlaitServer } from '@plait/server';

const N = Number(process.argv[2] ?? 100);
const SECONDS = Number(process.argv[3] ?? 8);
const secret = 'slow-reader-secret-0123456789abcdef';
const secretKeys = deriveSecretKeys(secret);

// A target that writes as fast as its socket drains, forever.
const block = Buffer.alloc(64 * 1024, 7);
const targets = new Set();
const target = net.createServer((s) => {
  targets.add(s);
  s.on('error', () => undefined);
  const pump = () => {
    while (!s.destroyed && s.write(block));
  };
  s.on('drain', pump);
  pump();
});
await new Promise((r) => target.listen(0, '127.0.0.1', r));

const server = new PlaitServer({
  listen: { host: '127.0.0.1', port: 0 },
  secretKeys,
  policy: new EgressPolicy({ allowPrivate: true }),
});
const addr = await server.listen();
const sock = net.connect(addr.port, '127.0.0.1');
await new Promise((r) => sock.once('connect', r));
const { session } = await connectSession(new SocketChannel(sock), { secretKeys, config: makeConfig(), clock: realClock });

const gcSettle = async () => {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 100));
    global.gc?.();
  }
};
await gcSettle();
const before = process.memoryUsage().rss;
for (let i = 0; i < N; i++) {
  const s = session.openStream({ host: '127.0.0.1', port: target.address().port });
  s.setHandlers({ data: () => undefined }); // never released: the reader never reads
}
let peak = 0;
const serverBuffered = () => {
  let sum = 0;
  for (const ss of server.sessions()) {
    const st = ss.stats();
    sum += st.sendBufferedBytes ?? NaN;
  }
  return sum;
};
const t0 = Date.now();
while (Date.now() - t0 < SECONDS * 1000) {
  await new Promise((r) => setTimeout(r, 250));
  peak = Math.max(peak, process.memoryUsage().rss - before);
}
await gcSettle();
const st = server.sessions()[0]?.stats();
const out = {
  streams: N,
  seconds: SECONDS,
  serverSendBufferedBytes: serverBuffered(),
  serverRecvBufferedBytes: st?.recvBufferedBytes,
  targetsConnected: targets.size,
  rssDeltaBytes: process.memoryUsage().rss - before,
  rssPeakDeltaBytes: peak,
};
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
