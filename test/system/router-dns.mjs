// A tiny authoritative DNS server for router-netns.sh (the plait server's --dns-upstream):
// answers A queries for the NAME=ADDRESS pairs given, over UDP, NXDOMAIN for anything else.
//   node router-dns.mjs HOST:PORT NAME=ADDR ...
import dgram from 'node:dgram';

const [at, ...pairs] = process.argv.slice(2);
const zone = new Map(pairs.map((p) => p.split('=')).map(([n, a]) => [n.toLowerCase(), a]));
const i = at.lastIndexOf(':');
const sock = dgram.createSocket('udp4');

function questionEnd(m) {
  let p = 12;
  while (p < m.length && m[p] !== 0) p += m[p] + 1;
  return p + 5; // the zero byte, QTYPE, QCLASS
}

sock.on('message', (m, from) => {
  if (m.length < 17) return;
  const end = questionEnd(m);
  if (end > m.length) return;
  const labels = [];
  for (let p = 12; m[p] !== 0; p += m[p] + 1) labels.push(m.subarray(p + 1, p + 1 + m[p]).toString('latin1'));
  const name = labels.join('.').toLowerCase();
  const qtype = m.readUInt16BE(end - 4);
  const addr = zone.get(name);
  const header = Buffer.from(m.subarray(0, 12));
  header.writeUInt16BE(0x8180 | (addr === undefined ? 3 : 0), 2); // response, RD+RA, NOERROR or NXDOMAIN
  header.writeUInt16BE(1, 4);
  const answer = addr !== undefined && qtype === 1;
  header.writeUInt16BE(answer ? 1 : 0, 6);
  header.writeUInt32BE(0, 8);
  const parts = [header, m.subarray(12, end)];
  if (answer) {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the question's name
    rr.writeUInt16BE(1, 2); // A
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(600, 6); // TTL
    rr.writeUInt16BE(4, 10);
    addr.split('.').forEach((o, k) => rr.writeUInt8(Number(o), 12 + k));
    parts.push(rr);
  }
  sock.send(Buffer.concat(parts), from.port, from.address);
});
sock.bind(Number(at.slice(i + 1)), at.slice(0, i), () => process.stdout.write(`dns listening ${at}\n`));
