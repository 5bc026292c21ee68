// A UDP echo server for router-netns.sh: node udp-echo.mjs HOST:PORT
import dgram from 'node:dgram';
const at = process.argv[2];
const i = at.lastIndexOf(':');
const sock = dgram.createSocket('udp4');
sock.on('message', (m, from) => sock.send(m, from.port, from.address));
sock.bind(Number(at.slice(i + 1)), at.slice(0, i), () => process.stdout.write(`udp echo listening ${at}\n`));
