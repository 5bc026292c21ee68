import { randomBytes } from 'node:crypto';
import { afterAll, it } from 'vitest';
import { startFileServer } from '../helpers/http-file-server.js';
import { curl, killAll, MiB, startClient, startServer, subflowBytes } from './cli-helpers.js';

afterAll(killAll);

it('debug shares', async () => {
  const secret = randomBytes(32).toString('base64url');
  const fs = await startFileServer({ size: 64 * MiB });
  const server = await startServer({ secret, allowPrivate: true });
  const client = await startClient({ secret, servers: [server.addr], binds: ['127.0.0.1', '127.0.0.2'], http: true });
  for (let i = 0; i < 6; i++) {
    const b = subflowBytes(await client.stats());
    const args = i % 2 ? ['-sS', '--proxytunnel', '--proxy', `http://127.0.0.1:${client.httpPort}`, fs.url] : ['-sS', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fs.url];
    const r = await curl(args);
    const st = await client.stats();
    const a = subflowBytes(st);
    const d = [...a].map(([id, v]) => `${id}:${((v.received - (b.get(id)?.received ?? 0)) / MiB).toFixed(1)}`);
    console.log(i % 2 ? 'http ' : 'socks', r.code, r.sha256 === fs.sha256, r.elapsedMs, d.join(' '), JSON.stringify(st.sessions[0]!.subflows.map(s => [s.rttMs, s.rateBytesPerSec, s.capBytes, s.suspectCount])));
  }
  const ss = await server.stats();
  console.log(JSON.stringify(ss.sessions[0]!.subflows.map(s => [s.id, s.rttMs, s.minRttMs, s.rateBytesPerSec, s.capBytes, s.bytesSent, s.suspectCount])), JSON.stringify(ss.sessions[0]!.counters));
  await fs.close();
}, 90000);
