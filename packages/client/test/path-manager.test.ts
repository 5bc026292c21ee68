import { describe, expect, it } from 'vitest';
import type * as os from 'node:os';
import { backoffMs, localSources, planPaths } from '../src/path-manager.js';

const ifaces = (m: Record<string, string[]>): ReturnType<typeof os.networkInterfaces> =>
  Object.fromEntries(
    Object.entries(m).map(([name, addrs]) => [
      name,
      addrs.map((address): os.NetworkInterfaceInfo =>
        address.includes(':')
          ? { address, family: 'IPv6', scopeid: 0, netmask: '', mac: '', internal: false, cidr: null }
          : { address, family: 'IPv4', netmask: '', mac: '', internal: false, cidr: null },
      ),
    ]),
  );

describe('path manager', () => {
  it('uses the default route when no source is given', () => {
    expect(localSources({ binds: [], vias: [], backups: [] }, ifaces({}))).toEqual([{ address: undefined, role: 'regular', origin: 'default route' }]);
  });

  it('follows an interface: its addresses now, minus link-local IPv6; backups flagged', () => {
    const opts = { binds: ['127.0.0.1'], vias: ['eth0', 'wwan0'], backups: ['wwan0'] };
    const before = localSources(opts, ifaces({ eth0: ['192.168.1.20', 'fe80::1'], wwan0: [] }));
    expect(before.map((s) => [s.address, s.role])).toEqual([
      ['127.0.0.1', 'regular'],
      ['192.168.1.20', 'regular'],
    ]);
    // The LTE stick comes up: a new backup source appears on the next poll.
    const after = localSources(opts, ifaces({ eth0: ['192.168.1.20'], wwan0: ['10.64.0.5'] }));
    expect(after.map((s) => [s.address, s.role])).toEqual([
      ['127.0.0.1', 'regular'],
      ['192.168.1.20', 'regular'],
      ['10.64.0.5', 'backup'],
    ]);
  });

  it('overflow sources: an address or an interface; an address named for two roles gets the more sparing one', () => {
    const opts = { binds: ['127.0.0.1', '127.0.0.2'], vias: ['eth0'], backups: ['10.64.0.5'], overflows: ['127.0.0.2', 'wwan0'] };
    const got = localSources(opts, ifaces({ eth0: ['192.168.1.20'], wwan0: ['10.64.0.5', '10.64.0.6'] }));
    expect(got.map((s) => [s.address, s.role, s.origin])).toEqual([
      ['127.0.0.1', 'regular', '--bind'],
      ['127.0.0.2', 'overflow', '--bind'],
      ['192.168.1.20', 'regular', '--via eth0'],
      ['10.64.0.5', 'backup', '--backup'],
      ['10.64.0.6', 'overflow', '--overflow wwan0'],
    ]);
  });

  it('an interface with no address yields no default-route path (waits for the link)', () => {
    expect(localSources({ binds: [], vias: ['eth9'], backups: [] }, ifaces({}))).toEqual([]);
  });

  it('pairs every source with every server address of its family', () => {
    const sources = localSources({ binds: ['127.0.0.1', '::1'], vias: [], backups: [] }, ifaces({}));
    const paths = planPaths(sources, [
      { host: '127.0.0.1', port: 1, id: 0 },
      { host: '::1', port: 2, id: 0 },
      { host: 'vps.example', port: 3, id: 0 },
    ]);
    expect(paths.map((p) => p.key).sort()).toEqual(['127.0.0.1>127.0.0.1:1', '127.0.0.1>vps.example:3', '::1>::1:2', '::1>vps.example:3'].sort());
  });

  it('backs off exponentially with jitter, capped', () => {
    const lo = () => 0;
    const hi = () => 0.999999;
    expect(backoffMs(0, 250, 15_000, lo)).toBe(125);
    expect(backoffMs(0, 250, 15_000, hi)).toBe(250);
    expect(backoffMs(3, 250, 15_000, lo)).toBe(1000);
    expect(backoffMs(30, 250, 15_000, hi)).toBe(15_000);
  });
});
