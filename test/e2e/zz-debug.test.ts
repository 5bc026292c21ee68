import { randomBytes, randomInt } from 'node:crypto';
import net from 'node:net';
import { afterAll, it } from 'vitest';
import { echoRoundTrip, KiB, killAll, socks5Connect, startClient, startServer } from './cli-helpers.js';

afterAll(killAll);

it('debug', async () => {
  const secret = randomBytes(32).toString('base64url');
  const perConn: { rx: number; tx: number; ended: boolean; closedHad?: boolean }[] = [];
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    const st = { rx: 0, tx: 0, ended: false } as { rx: number; tx: number; ended: boolean; closedHad?: boolean };
    perConn.push(st);
    s.on('data', (d) => { st.rx += d.length; st.tx += d.length; s.write(d); });
    s.on("end", () => { st.ended = true; setTimeout(() => s.end(), Number(process.env.FIN_DELAY ?? 0)); });
    s.on('error', () => {});
    s.on('close', (h) => (st.closedHad = h));
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const port = (echo.address() as net.AddressInfo).port;
  const server = await startServer({ secret, allowPrivate: true, extraArgs: ['--log-level', 'debug'] });
  const N = Number(process.env.N ?? 200);
  const binds = (process.env.BINDS ?? '127.0.0.1,127.0.0.2').split(',');
  const client = await startClient({ secret, servers: [server.addr], binds, extraArgs: ['--log-level', 'debug'] });
  const res = await Promise.all(Array.from({ length: N }, async (_, i) => {
    const size = randomInt(KiB, 512 * KiB + 1);
    const data = randomBytes(size);
    const r = await socks5Connect(client.socksPort!, '127.0.0.1', port);
    try {
      const got = await echoRoundTrip(r.socket, data, 30000);
      let mm = -1; for (let k = 0; k < Math.min(got.length, data.length); k++) if (got[k] !== data[k]) { mm = k; break; }
      const prefix = mm < 0;
      // where does got's tail come from in data?
      const tail = got.subarray(Math.max(0, got.length - 64));
      return { i, size, got: got.length, ok: got.equals(data), mm, prefix, tailAt: data.indexOf(tail), firstAt: mm >= 0 ? data.indexOf(got.subarray(mm, mm + 64)) : -2 };
    } catch (e) { return { i, size, got: -1, ok: false, err: String(e) }; }
  }));
  const bad = res.filter((r) => !r.ok);
  console.log('bad', bad.length, JSON.stringify(bad.slice(0, 5)));
  console.log('echo side', JSON.stringify(perConn.filter(p => p.rx < 600000).slice(0, 10)));
  const st = await client.stats();
  console.log(JSON.stringify(st.sessions[0]?.counters));
  console.log(server.proc.stderr().split('\n').filter(l => !l.includes('"level":20')).slice(-30).join('\n'));
  console.log(client.proc.stderr().split('\n').filter(l => l.includes('"level":40') || l.includes('"level":50')).slice(-30).join('\n'));
  echo.close();
}, 60000);
