// Memory with many idle streams: one session (client and server ends in this
// process, joined by one loopback TCP subflow), N streams opened and accepted,
// then left idle. Prints JSON: RSS and heap deltas per stream.
// Both ends live here, so each stream is counted twice (a conservative figure).
import * as net from 'node:net';
import { Acceptor, connectSession, deriveSecretKeys, makeConfig, realClock } from '@plait/core';
import { SocketChannel } from '@plait/node';

const N = Number(process.argv[2] ?? 10_000);
const secretKeys = deriveSecretKeys('bench-memory-secret-0123456789');
const config = makeConfig({ maxStreams: N + 16 });
const serverStreams = [];
const acceptor = new Acceptor({
  secretKeys,
  config,
  clock: realClock,
  maxSessions: 4,
  graceMs: 30_000,
  onSession: () => ({
    stream: (s) => {
      s.accept();
      serverStreams.push(s);
    },
  }),
});
const server = net.createServer((sock) => void acceptor.accept(new SocketChannel(sock)));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const sock = net.connect(server.address().port, '127.0.0.1');
await new Promise((r) => sock.once('connect', r));
const { session } = await connectSession(new SocketChannel(sock), { secretKeys, config, clock: realClock });

const settle = async () => {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 100));
    global.gc?.();
  }
};
await settle();
const before = process.memoryUsage();
const streams = [];
let accepted = 0;
for (let i = 0; i < N; i++) {
  const s = session.openStream({ host: 'idle.test', port: 1 + (i % 65535) });
  s.setHandlers({ accept: () => accepted++ });
  streams.push(s);
  if (i % 500 === 499) await new Promise((r) => setImmediate(r));
}
const t0 = Date.now();
while (accepted < N && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 50));
await settle();
const after = process.memoryUsage();
const out = {
  streams: N,
  accepted,
  serverStreams: serverStreams.length,
  rssDeltaBytes: after.rss - before.rss,
  heapDeltaBytes: after.heapUsed - before.heapUsed,
  rssPerStreamBytes: Math.round((after.rss - before.rss) / N),
  heapPerStreamBytes: Math.round((after.heapUsed - before.heapUsed) / N),
};
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
