// The "internet" of router-netns.sh: an HTTP server on each HOST:PORT given, in the server's
// network namespace. GET /whoami answers the address the connection came from (bonded: the
// plait server's; bypassed: the router's uplink); GET /bytes?n=N sends N deterministic bytes.
import http from 'node:http';

const block = Buffer.alloc(64 * 1024);
for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff;

for (const at of process.argv.slice(2)) {
  const i = at.lastIndexOf(':');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/whoami') {
      res.end(`${req.socket.remoteAddress}\n`);
      return;
    }
    if (url.pathname === '/bytes') {
      let left = Math.min(Number(url.searchParams.get('n') ?? 0), 1 << 30);
      res.writeHead(200, { 'content-length': String(left), 'content-type': 'application/octet-stream' });
      const more = () => {
        while (left > 0) {
          const chunk = block.subarray(0, Math.min(left, block.length));
          left -= chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
      return;
    }
    res.writeHead(404).end();
  });
  server.listen(Number(at.slice(i + 1)), at.slice(0, i).replace(/^\[(.*)\]$/, '$1'), () => process.stdout.write(`listening ${at}\n`));
}
