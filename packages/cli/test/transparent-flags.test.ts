import type * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { SockOpts } from '@plait/node';
import { UsageError } from '../src/args.js';
import { toPrometheus } from '../src/stats.js';
import { parseBypassDomains, parseTransparentFlags, startTransparent } from '../src/transparent-flags.js';

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

const log = () => {
  const lines: string[] = [];
  const at = (level: string) => (_: object, msg: string) => void lines.push(`${level} ${msg}`);
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
};

/** A SockOpts stand-in: only what the transparent listeners use. */
function sockopts(over: Partial<SockOpts>): SockOpts {
  return {
    available: true,
    reason: undefined,
    tcpInfo: () => undefined,
    setNotsentLowat: () => false,
    connectBound: () => Promise.reject(new Error('unused')),
    originalDst: () => ({ ok: false, reason: 'unused' }),
    listenTransparent: () => {
      throw new Error('unused');
    },
    ...over,
  };
}
const neverDial = () => Promise.reject(new Error('no dial in this test'));

describe('--redirect / --tproxy flags', () => {
  it('a bare port listens on every address; HOST:PORT as given; bad values name the flag', () => {
    expect(parseTransparentFlags({ redirect: '12345' })).toEqual({ redirect: { host: '0.0.0.0', port: 12345 }, tproxy: undefined });
    expect(parseTransparentFlags({ tproxy: '[::]:12346' })).toEqual({ redirect: undefined, tproxy: { host: '::', port: 12346 } });
    expect(() => parseTransparentFlags({ redirect: '99999' })).toThrow(/^--redirect: port/);
    expect(() => parseTransparentFlags({ tproxy: 'x y:1' })).toThrow(/^--tproxy: /);
  });

  it('--bypass-domain: checked names, lower case; needs --dns to learn from', () => {
    const dns = { host: '0.0.0.0', port: 5353 };
    expect(parseBypassDomains({ bypassDomain: ['Netflix.com.', 'nflxvideo.net'] }, dns)).toEqual(['netflix.com', 'nflxvideo.net']);
    expect(parseBypassDomains({}, undefined)).toEqual([]);
    expect(() => parseBypassDomains({ bypassDomain: ['netflix.com'] }, undefined)).toThrow(/^--bypass-domain: needs --dns/);
    expect(() => parseBypassDomains({ bypassDomain: ['a b.com'] }, dns)).toThrow(/^--bypass-domain: "a b.com" is not a domain name/);
  });

  it('--tproxy without CAP_NET_ADMIN is a one-line usage error naming the flag', async () => {
    const eperm = sockopts({
      listenTransparent: () => {
        throw Object.assign(new Error('a TPROXY listener (--tproxy) needs root or CAP_NET_ADMIN (setsockopt IP_TRANSPARENT: EPERM)'), { code: 'EPERM' });
      },
    });
    const { log: l } = log();
    const err = await startTransparent({ redirect: undefined, tproxy: { host: '127.0.0.1', port: 0 } }, neverDial, l, eperm).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/^--tproxy: .*CAP_NET_ADMIN/);
  });

  it('--redirect without koffi still listens, and says once at start that every connection will be dropped', async () => {
    const { log: l, lines } = log();
    const t = await startTransparent(
      { redirect: { host: '127.0.0.1', port: 0 }, tproxy: undefined },
      neverDial,
      l,
      sockopts({ available: false, reason: 'the optional package koffi could not be loaded' }),
    );
    servers.push(...t.listeners.map((x) => x.server));
    expect(t.listeners.map((x) => x.mode)).toEqual(['redirect']);
    expect(lines).toEqual([expect.stringMatching(/^error --redirect: cannot read where redirected connections were going \(the optional package koffi.*dropped/) as string]);
  });

  it('a busy --redirect port is a usage error naming the flag', async () => {
    const { log: l } = log();
    const first = await startTransparent({ redirect: { host: '127.0.0.1', port: 0 }, tproxy: undefined }, neverDial, l, sockopts({}));
    servers.push(...first.listeners.map((x) => x.server));
    const port = (first.listeners[0]!.server.address() as net.AddressInfo).port;
    const err = await startTransparent({ redirect: { host: '127.0.0.1', port }, tproxy: undefined }, neverDial, l, sockopts({})).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`--redirect: 127.0.0.1:${port} is already in use`);
  });

  it('the counters reach /metrics with their help lines', () => {
    const text = toPrometheus({ role: 'client', uptimeSeconds: 1, sessions: [], counters: { transparentAccepted: 4, transparentNoDestination: 1, transparentLoops: 2 } });
    expect(text).toContain('# HELP plait_transparent_accepted_total Connections the firewall redirected');
    expect(text).toContain('plait_transparent_loops_total{role="client"} 2');
    expect(text).toContain('plait_transparent_no_destination_total{role="client"} 1');
  });
});
