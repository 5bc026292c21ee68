import * as http from 'node:http';
import type * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { deriveSecretKeys, type SessionStats } from '@plait/core';
import { listenSocks5, PlaitClient } from '@plait/client';
import { EgressPolicy, PlaitServer } from '@plait/server';
import { isLoopbackHost, listenFor, parseHostPort, parseSeconds, UsageError } from './args.js';
import { chooseRecordCrypto, parseClientCipher } from './cipher-flag.js';
import { makeLogger } from './log.js';
import { startStatsServer } from './stats.js';

export interface DemoFlags {
  socks?: string;
  interval: string;
  duration?: string;
  cipher: string;
}

/** Try `port`, then the next ones, so a busy 1080 does not stop the demo. */
async function listenNextFree<T>(start: number, tries: number, listen: (port: number) => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await listen(start + i);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i >= tries) throw e;
    }
  }
}

/** A local web server to fetch through the tunnel (this demo needs no internet). */
function startContentServer(): Promise<http.Server> {
  const block = randomBytes(1 << 20);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/file') {
      const size = Math.min(Number(url.searchParams.get('size') ?? 2 ** 26) || 0, 2 ** 34);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      let left = size;
      const more = (): void => {
        while (left > 0) {
          const n = Math.min(left, block.length);
          left -= n;
          if (!res.write(n === block.length ? block : block.subarray(0, n))) return void res.once('drain', more);
        }
        res.end();
      };
      more();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('hello through plait: this page crossed two bonded subflows\n');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const fmtBytes = (n: number): string =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;

export function linkTable(st: SessionStats | undefined): string {
  if (!st) return '  (no session yet)\n';
  const rows = [['subflow', 'local', 'remote', 'state', 'backup', 'rtt ms', 'rate', 'sent', 'received', 'reinjected']];
  for (const s of st.subflows) {
    rows.push([
      String(s.id),
      s.local,
      s.remote,
      s.state,
      s.backup ? 'yes' : 'no',
      s.rttMs.toFixed(1),
      `${fmtBytes(s.rateBytesPerSec)}/s`,
      fmtBytes(s.bytesSent),
      fmtBytes(s.bytesReceived),
      fmtBytes(s.bytesReinjected),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => '  ' + r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n') + `\n  open streams: ${st.openStreams}\n`;
}

export async function runDemo(flags: DemoFlags): Promise<void> {
  const interval = parseSeconds('--interval', flags.interval);
  const duration = flags.duration !== undefined ? parseSeconds('--duration', flags.duration) : undefined;
  const cipher = parseClientCipher(flags.cipher);
  const socksWanted = flags.socks ? parseHostPort('--socks', flags.socks) : undefined;
  // The demo's server allows private targets and its proxy has no password:
  // bound elsewhere, it would open this machine's private services to the network.
  if (socksWanted && !isLoopbackHost(socksWanted.host)) {
    throw new UsageError(`--socks: the demo proxies to this machine's private services, so it listens on loopback only (127.0.0.1, ::1, localhost), not ${socksWanted.host}`);
  }
  const log = makeLogger('warn');
  const secretKeys = deriveSecretKeys(randomBytes(32).toString('base64url'));

  const content = await startContentServer();
  const contentPort = (content.address() as net.AddressInfo).port;
  // The demo is the one place loopback targets are allowed by default.
  const { factory: recordAead } = chooseRecordCrypto();
  const server = new PlaitServer({ listen: { host: '127.0.0.1', port: 0 }, secretKeys, policy: new EgressPolicy({ allowPrivate: true }), log, ...(recordAead ? { recordAead } : {}) });
  const srvAddr = await server.listen();
  const client = new PlaitClient({
    servers: [{ host: '127.0.0.1', port: srvAddr.port }],
    secretKeys,
    sources: { binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [] },
    cipher: cipher.cipher,
    ...(recordAead ? { recordAead } : {}),
    log,
  });
  const socksServer = socksWanted
    ? await listenFor('--socks', socksWanted, () => listenSocks5(socksWanted.host, socksWanted.port, {}, client.dial))
    : await listenNextFree(1080, 20, (p) => listenSocks5('127.0.0.1', p, {}, client.dial));
  const socks = socksServer.address() as net.AddressInfo;
  const stats = await startStatsServer('127.0.0.1', 0, () => {
    const st = client.stats();
    return { role: 'client', uptimeSeconds: Math.round(process.uptime()), sessions: st.session ? [st.session] : [], counters: { ...client.counters }, paths: st.paths };
  });
  const statsPort = (stats.address() as net.AddressInfo).port;
  await client.start();

  const out = process.stdout;
  out.write(`plait demo: one session, two subflows (127.0.0.1 and 127.0.0.2) to a server on 127.0.0.1:${srvAddr.port}\n`);
  out.write(`  SOCKS5 proxy:  127.0.0.1:${socks.port}\n`);
  out.write(`  record cipher: ${cipher.cipher} (${cipher.reason})\n`);
  out.write(`  link stats:    curl -s http://127.0.0.1:${statsPort}/stats   (Prometheus: /metrics)\n\n`);
  out.write(`Try it (64 MiB through the bonded session):\n`);
  out.write(`  curl --socks5-hostname 127.0.0.1:${socks.port} -o /dev/null http://127.0.0.1:${contentPort}/file?size=67108864\n`);
  out.write(`  curl --socks5-hostname 127.0.0.1:${socks.port} http://127.0.0.1:${contentPort}/\n\n`);

  const timer = setInterval(() => {
    out.write(`[${new Date().toISOString().slice(11, 19)}] links:\n${linkTable(client.stats().session)}\n`);
  }, interval * 1000);
  const stop = (): void => {
    clearInterval(timer);
    client.close();
    socksServer.close();
    stats.close();
    content.close();
    void server.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (duration !== undefined) setTimeout(stop, duration * 1000);
}
