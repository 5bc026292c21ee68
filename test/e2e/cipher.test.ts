/**
 * The record cipher through the real CLI: `plait client --cipher
 * chacha20-poly1305` moves a download intact; a server restricted with
 * `--cipher` refuses the other cipher with CIPHER and the client says why.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import { curl, killAll, MiB, parseLogLines, runPlait, spawnPlait, startClient, startServer, waitUntil } from './cli-helpers.js';

const FILE_SIZE = 8 * MiB;
let fileServer: FileServer | undefined;

afterAll(async () => {
  await killAll();
  await fileServer?.close();
});

describe('--cipher through the real CLI', () => {
  it('client --cipher chacha20-poly1305: the session uses ChaCha and 8 MiB arrive intact via curl --socks5-hostname', async () => {
    const secret = randomBytes(32).toString('base64url');
    fileServer = await startFileServer({ size: FILE_SIZE });
    const server = await startServer({ secret, allowPrivate: true });
    const client = await startClient({
      secret,
      servers: [server.addr],
      binds: ['127.0.0.1', '127.0.0.2'],
      extraArgs: ['--cipher', 'chacha20-poly1305'],
    });
    const established = client.logLines().find((l) => l.msg === 'session established');
    expect(established?.cipher, client.proc.dump()).toBe('chacha20-poly1305');
    const res = await curl(['-sS', '--fail', '--max-time', '40', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 45_000);
    expect(res.code, `${res.stderr}\n${server.proc.dump()}\n${client.proc.dump()}`).toBe(0);
    expect(res.bytes).toBe(FILE_SIZE);
    expect(res.sha256).toBe(fileServer.sha256);
    // Both subflows (the HELLO's and the JOIN's) carried records: the JOIN'd one used ChaCha too.
    const subflows = (await client.stats()).sessions[0]!.subflows;
    expect(subflows.length).toBe(2);
    for (const sf of subflows) expect(sf.bytesReceived).toBeGreaterThan(0);
    expect(server.logLines().filter((l) => String(l.msg).startsWith('refused connection'))).toEqual([]);
    await client.proc.kill();
    await server.proc.kill();
  }, 60_000);

  it('server --cipher aes-256-gcm refuses a ChaCha client with CIPHER; the client logs the fix and exits', async () => {
    const secret = randomBytes(32).toString('base64url');
    const server = await startServer({ secret, extraArgs: ['--cipher', 'aes-256-gcm'] });
    const client = spawnPlait(['client', '--secret', secret, '--server', server.addr, '--socks', '127.0.0.1:0', '--cipher', 'chacha20-poly1305'], { name: 'plait client' });
    const line = await waitUntil('the client to report the refusal', () =>
      parseLogLines(client.stderr()).find((l) => typeof l.msg === 'string' && /CIPHER/.test(l.msg)) ??
      parseLogLines(client.stderr()).find((l) => typeof l.err === 'string' && /CIPHER/.test(l.err)),
    );
    expect(JSON.stringify(line)).toMatch(/does not accept chacha20-poly1305.*--cipher aes-256-gcm/);
    await waitUntil('the server to log it', () => server.logLines().find((l) => String(l.msg).startsWith('refused connection') && l.code === 'CIPHER'));
    // Retrying cannot help: the client gives up, like on a wrong secret.
    const { code } = await client.waitExit(10_000);
    expect(code, client.dump()).not.toBe(0);
    expect(code, client.dump()).not.toBeNull();
    expect(client.stderr()).toMatch(/refused the record cipher on every path/);
    await client.kill();
    await server.proc.kill();
  }, 30_000);

  it('a server on node:crypto and a client on OpenSSL directly (PLAIT_RECORD_CRYPTO) interoperate, with either cipher', async () => {
    fileServer ??= await startFileServer({ size: FILE_SIZE });
    for (const cipher of ['aes-256-gcm', 'chacha20-poly1305']) {
      const secret = randomBytes(32).toString('base64url');
      const server = await startServer({ secret, allowPrivate: true, env: { PLAIT_RECORD_CRYPTO: 'node' } });
      const client = await startClient({ secret, servers: [server.addr], binds: ['127.0.0.1', '127.0.0.2'], extraArgs: ['--cipher', cipher] });
      expect(server.logLines().some((l) => l.msg === 'record crypto: node:crypto (PLAIT_RECORD_CRYPTO=node)'), server.proc.dump()).toBe(true);
      expect(client.logLines().some((l) => /^record crypto: OpenSSL EVP/.test(String(l.msg))), client.proc.dump()).toBe(true);
      const res = await curl(['-sS', '--fail', '--max-time', '40', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 45_000);
      expect(res.code, `${res.stderr}\n${server.proc.dump()}\n${client.proc.dump()}`).toBe(0);
      expect(res.sha256).toBe(fileServer.sha256);
      await client.proc.kill();
      await server.proc.kill();
    }
  }, 90_000);

  it('a cipher the CLI does not know is a usage error (exit 2)', async () => {
    const r = await runPlait(['client', '--server', '127.0.0.1:1', '--secret', 'x'.repeat(32), '--socks', '127.0.0.1:0', '--cipher', 'rc4']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--cipher: "rc4" is not a cipher; use auto, aes-256-gcm or chacha20-poly1305/);
    const s = await runPlait(['server', '--listen', '127.0.0.1:0', '--secret', 'x'.repeat(32), '--cipher', 'auto']);
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/--cipher: "auto" is not a cipher; use any/);
  }, 30_000);
});
