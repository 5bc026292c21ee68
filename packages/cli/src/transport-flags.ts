import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { listenError, parseHostPort, UsageError, type HostPort } from './args.js';

/** A server --listen value: TCP HOST:PORT, or ws://HOST:PORT/PATH (`path` set). */
export interface ListenFlag extends HostPort {
  path?: string;
}

/** A client --server value: TCP HOST:PORT, or a ws:// / wss:// URL (`url` set; host and port taken from it). */
export interface ServerFlag extends HostPort {
  url?: string;
}

/** A CA file bigger than this is a wrong path (a bundle of every public root is ~200 KiB). */
const MAX_CA_FILE_BYTES = 1024 * 1024;

/**
 * ws://HOST:PORT/PATH or wss://... as a URL with only a scheme, host,
 * optional port and path: credentials, queries and fragments have no use
 * here and are refused rather than ignored.
 */
function parseWsUrl(flag: string, value: string, schemes: readonly string[]): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${flag}: "${value}" is not a valid URL`);
  }
  if (!schemes.includes(url.protocol)) throw new UsageError(`${flag}: "${value}": use ${schemes.map((s) => `${s}//`).join(' or ')}`);
  if (url.username || url.password) throw new UsageError(`${flag}: "${value}": no user or password in the URL (the secret authenticates)`);
  if (url.search || url.hash) throw new UsageError(`${flag}: "${value}": no query or fragment in the URL`);
  if (!url.hostname) throw new UsageError(`${flag}: "${value}": the URL needs a host`);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (host.includes(':') && isIP(host) !== 6) throw new UsageError(`${flag}: "${host}" is not an IPv6 address`);
  return url;
}

const defaultPort = (url: URL): number => (url.port ? Number(url.port) : url.protocol === 'wss:' ? 443 : 80);
const hostOf = (url: URL): string => (url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname);

/** `plait server --listen`: HOST:PORT (TCP) or ws://HOST:PORT/PATH (WebSocket; TLS belongs to a reverse proxy). */
export function parseListenFlag(value: string): ListenFlag {
  if (/^wss:\/\//i.test(value)) {
    throw new UsageError('--listen: the server takes ws:// only; put TLS in a reverse proxy in front (README: WebSocket subflows)');
  }
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return parseHostPort('--listen', value, { defaultHost: '0.0.0.0' });
  const url = parseWsUrl('--listen', value, ['ws:']);
  return { host: hostOf(url), port: defaultPort(url), path: url.pathname };
}

/** `plait client --server`: HOST:PORT (TCP) or ws://HOST[:PORT]/PATH, wss://HOST[:PORT]/PATH. */
export function parseServerFlag(value: string): ServerFlag {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return parseHostPort('--server', value, { connect: true });
  const url = parseWsUrl('--server', value, ['ws:', 'wss:']);
  const port = defaultPort(url);
  if (port < 1) throw new UsageError(`--server: port must be 1-65535, got "${url.port}"`);
  return { host: hostOf(url), port, url: url.href };
}

/**
 * `--ca FILE`: PEM certificates to trust for wss:// servers instead of
 * Node's built-in list. Checked now (readable, not huge, parses as PEM) so a
 * wrong file fails here with one line, not later as a TLS error on every path.
 */
export function readCaFile(file: string, servers: readonly ServerFlag[]): Buffer {
  if (!servers.some((s) => s.url?.startsWith('wss:'))) throw new UsageError('--ca: only wss:// servers use a CA; no --server is wss://');
  let pem: Buffer;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new UsageError(`--ca: ${file} is not a regular file`);
    if (st.size > MAX_CA_FILE_BYTES) throw new UsageError(`--ca: ${file} is too large for a CA file (${st.size} bytes)`);
    pem = readFileSync(file);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--ca: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca: ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  try {
    createSecureContext({ ca: pem });
  } catch (e) {
    throw new UsageError(`--ca: ${file} is not a usable PEM certificate: ${e instanceof Error ? e.message : String(e)}`);
  }
  return pem;
}

/** Start the server's listeners; a busy or foreign address is a usage error naming --listen and that address. */
export async function listenForAll<T>(listen: readonly ListenFlag[], start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (e) {
    const i = (e as { listener?: unknown }).listener;
    const at = typeof i === 'number' ? listen[i] : undefined;
    throw at ? listenError('--listen', at, e) : e;
  }
}

/** A bound listener for the log: 0.0.0.0:7000 or ws://127.0.0.1:8080/plait. */
export function listenText(l: { transport: 'tcp' | 'ws'; address: AddressInfo; path?: string }): string {
  const hp = l.address.family === 'IPv6' ? `[${l.address.address}]:${l.address.port}` : `${l.address.address}:${l.address.port}`;
  return l.transport === 'ws' ? `ws://${hp}${l.path ?? ''}` : hp;
}
