import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

/**
 * The first `nameserver` of a resolv.conf (the server's default DNS
 * resolver for clients' `--dns`), or undefined when there is none. A zone
 * (`fe80::1%eth0`) is kept: the UDP socket needs it.
 */
export function resolvConfNameserver(path = '/etc/resolv.conf'): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = m[1]!;
    if (isIP(host.split('%')[0]!)) return host;
  }
  return undefined;
}
