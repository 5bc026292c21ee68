/**
 * The flags of published ports (README "Serving several households"):
 * the client's --publish SERVERPORT:HOST:PORT, and the server's
 * --allow-publish (the anonymous user's ports), --publish-bind and
 * --publish-max-conns. Each mistake is one line naming the flag.
 */
import { isIP } from 'node:net';
import { MAX_PUBLICATIONS, parsePublishSpec, type PublishSpec } from '@plait/client';
import { parseCount, UsageError } from './args.js';

/** More inbound connections than this per port is a typo (each holds a stream and two sockets). */
const MAX_CONNS = 100_000;

/** --publish (repeatable): each server port once, at most MAX_PUBLICATIONS. */
export function parsePublishFlags(values: readonly string[]): PublishSpec[] {
  if (values.length > MAX_PUBLICATIONS) throw new UsageError(`--publish: at most ${MAX_PUBLICATIONS} ports (a server holds that many per session), got ${values.length}`);
  const seen = new Set<number>();
  return values.map((v) => {
    let spec: PublishSpec;
    try {
      spec = parsePublishSpec(v);
    } catch (e) {
      throw new UsageError(`--publish: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (seen.has(spec.serverPort)) throw new UsageError(`--publish: server port ${spec.serverPort} is published twice`);
    seen.add(spec.serverPort);
    return spec;
  });
}

/** --allow-publish (repeatable, each a port or a comma list): what the anonymous --secret user may publish. */
export function parseAllowPublish(values: readonly string[]): number[] {
  const out = new Set<number>();
  for (const v of values) {
    for (const part of v.split(',').map((p) => p.trim())) {
      const n = /^\d{1,5}$/.test(part) ? Number(part) : NaN;
      if (!(n >= 1 && n <= 65535)) throw new UsageError(`--allow-publish: "${part}" is not a port (1-65535); give ports like 8080,2222`);
      out.add(n);
    }
  }
  return [...out];
}

/** --publish-bind: an IP address (0.0.0.0 or :: for every interface). */
export function parsePublishBind(value: string): string {
  const host = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
  if (isIP(host) === 0) throw new UsageError(`--publish-bind: "${value}" is not an IP address (0.0.0.0 for every IPv4 interface, :: for every one, 127.0.0.1 behind a local proxy)`);
  return host;
}

export function parsePublishMaxConns(value: string): number {
  return parseCount('--publish-max-conns', value, MAX_CONNS);
}
