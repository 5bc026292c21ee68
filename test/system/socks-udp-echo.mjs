// SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) round trips, for router-netns.sh:
//   node socks-udp-echo.mjs SOCKS_HOST:PORT ECHO_IPV4:PORT COUNT INTERVAL_MS
// sends COUNT numbered datagrams to the echo server through the proxy and prints one JSON line:
// { sent, received, medianMs, p99Ms }.
import dgram from 'node:dgram';
import net from 'node:net';

const [socksAt, echoAt, countArg, intervalArg] = process.argv.slice(2);
const split = (s) => [s.slice(0, s.lastIndexOf(':')), Number(s.slice(s.lastIndexOf(':') + 1))];
const [socksHost, socksPort] = split(socksAt);
const [echoHost, echoPort] = split(echoAt);
const count = Number(countArg);
const interval = Number(intervalArg);

const ctrl = net.connect(socksPort, socksHost);
let buf = Buffer.alloc(0);
const read = (n) =>
  new Promise((resolve, reject) => {
    const check = () => {
      if (buf.length >= n) {
        const out = buf.subarray(0, n);
        buf = buf.subarray(n);
        ctrl.off('data', onData);
        resolve(out);
      }
    };
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      check();
    };
    ctrl.on('data', onData);
    ctrl.once('error', reject);
    check();
  });
await new Promise((resolve, reject) => ctrl.once('connect', resolve).once('error', reject));
ctrl.write(Buffer.from([5, 1, 0]));
const hello = await read(2);
if (hello[1] !== 0) throw new Error(`SOCKS method refused: ${hello[1]}`);
ctrl.write(Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
const head = await read(4);
if (head[1] !== 0) throw new Error(`UDP ASSOCIATE refused: reply ${head[1]}`);
const addrLen = head[3] === 1 ? 4 : head[3] === 4 ? 16 : (await read(1))[0];
const addr = await read(addrLen + 2);
let relayHost = head[3] === 1 ? [...addr.subarray(0, 4)].join('.') : socksHost;
if (relayHost === '0.0.0.0') relayHost = socksHost;
const relayPort = addr.readUInt16BE(addrLen);

const udp = dgram.createSocket('udp4');
const header = Buffer.from([0, 0, 0, 1, ...echoHost.split('.').map(Number), echoPort >> 8, echoPort & 0xff]);
const sentAt = new Map();
const rtts = [];
udp.on('message', (m) => {
  if (m.length < header.length + 4) return;
  const seq = m.readUInt32BE(header.length);
  const t = sentAt.get(seq);
  if (t === undefined) return;
  sentAt.delete(seq);
  rtts.push(Number(process.hrtime.bigint() - t) / 1e6);
});
await new Promise((resolve) => udp.bind(0, resolve));
for (let seq = 0; seq < count; seq++) {
  const payload = Buffer.alloc(4 + 60);
  payload.writeUInt32BE(seq, 0);
  sentAt.set(seq, process.hrtime.bigint());
  udp.send(Buffer.concat([header, payload]), relayPort, relayHost);
  await new Promise((r) => setTimeout(r, interval));
}
await new Promise((r) => setTimeout(r, 1000));
rtts.sort((a, b) => a - b);
const q = (f) => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(f * rtts.length))] : NaN);
process.stdout.write(JSON.stringify({ sent: count, received: rtts.length, medianMs: +q(0.5).toFixed(2), p99Ms: +q(0.99).toFixed(2) }) + '\n');
udp.close();
ctrl.destroy();
