/** HTTP server serving one random file at /file; the test gets its sha256. */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Readable } from 'node:stream';
import { listenEphemeral } from './listen.js';

export interface FileServer {
  readonly port: number;
  readonly host: string;
  /** Full URL of the file, e.g. http://127.0.0.1:1234/file */
  readonly url: string;
  readonly size: number;
  /** Hex sha256 of the served body. */
  readonly sha256: string;
  /** Requests for /file received since start. */
  readonly requests: number;
  close(): Promise<void>;
}

export async function startFileServer(opts: { size: number; host?: string }): Promise<FileServer> {
  const { size } = opts;
  const host = opts.host ?? '127.0.0.1';
  if (!Number.isInteger(size) || size < 0) throw new RangeError(`size must be an integer >= 0, got ${size}`);
  const body = randomBytes(size);
  const sha256 = createHash('sha256').update(body).digest('hex');
  let requests = 0;

  const server = http.createServer((req, res) => {
    if (req.url !== '/file' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    requests++;
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(size),
      'x-sha256': sha256,
    });
    // One write: http/net handle backpressure internally and the buffer is shared, not copied.
    if (req.method === 'HEAD') res.end();
    else res.end(body);
  });
  const port = await listenEphemeral(server, host);
  return {
    port,
    host,
    url: `http://${host}:${port}/file`,
    size,
    sha256,
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Keep-alive and in-flight connections would otherwise hold close() open.
        server.closeAllConnections();
      }),
  };
}

/** Hex sha256 and byte count of everything a stream yields. */
export async function sha256OfStream(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    h.update(b);
    bytes += b.length;
  }
  return { sha256: h.digest('hex'), bytes };
}
