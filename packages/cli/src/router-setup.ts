/**
 * `plait router-setup`: checks its flags, resolves the plait server's
 * addresses and the uplinks' current addresses, and prints the rule set of
 * router-rules.ts (nothing is changed: the user reads it, then pipes it to sh).
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { parseCount, UsageError } from './args.js';
import { applyScript, iptablesRules, nftRules, undoScript, type RouterPlan, type Uplink } from './router-rules.js';

export interface RouterSetupFlags {
  lan?: string;
  redirect?: string;
  tproxy?: string;
  dns?: string;
  server: string[];
  uplink: string[];
  rejectQuic?: boolean;
  bypass: string[];
  bypassDomain: string[];
  bypassDevice: string[];
  bypassVia?: string;
  iptables?: boolean;
  undo?: boolean;
  rulesOnly?: boolean;
}

export interface RouterSetupDeps {
  /** Every address of a host name (default: the system resolver). */
  resolve?: (host: string) => Promise<string[]>;
  /** IPv4 addresses an interface has now (default: os.networkInterfaces). */
  ifaceAddresses?: (iface: string) => string[];
}

/**
 * Stricter than Linux's own rule: the name is printed into shell and nft
 * text, so only the characters interface names really use are accepted.
 */
function parseIface(flag: string, value: string): string {
  if (!/^[A-Za-z0-9_.@-]{1,15}$/.test(value) || value === '.' || value === '..') {
    throw new UsageError(`${flag}: "${value}" is not an interface name (1-15 letters, digits, "_", ".", "@" or "-")`);
  }
  return value;
}

function parsePort(flag: string, value: string): number {
  return parseCount(flag, value, 65535);
}

/** An IPv4/IPv6 address or CIDR, as nft and iptables take it. */
export function parseCidr(flag: string, value: string): string {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(value);
  const kind = m ? isIP(m[1]!) : 0;
  const prefix = m?.[2] === undefined ? undefined : Number(m[2]);
  if (!m || kind === 0 || (prefix !== undefined && prefix > (kind === 4 ? 32 : 128))) {
    throw new UsageError(`${flag}: "${value}" is not an IP address or CIDR (like 192.0.2.0/24 or 2001:db8::/32)`);
  }
  return value.toLowerCase();
}

const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
/** A DNS name: dot-separated labels of letters, digits and hyphens (a trailing dot is dropped). */
export function parseDomain(flag: string, value: string): string {
  const name = value.toLowerCase().replace(/\.$/, '');
  const label = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
  if (name.length === 0 || name.length > 253 || !name.split('.').every((l) => label.test(l))) {
    throw new UsageError(`${flag}: "${value}" is not a domain name`);
  }
  return name;
}

async function serverAddresses(values: string[], resolve: (h: string) => Promise<string[]>): Promise<string[]> {
  const out: string[] = [];
  for (const v of values) {
    // HOST, HOST:PORT or [IPv6]:PORT: only the host matters here.
    const host = /^\[([^\]]+)\](?::\d+)?$/.exec(v)?.[1] ?? (isIP(v) === 6 ? v : v.replace(/:\d+$/, ''));
    if (isIP(host) !== 0) {
      out.push(host.toLowerCase());
      continue;
    }
    if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new UsageError(`--server: "${v}" is not a host name or address`);
    let addrs: string[];
    try {
      addrs = await resolve(host);
    } catch (e) {
      throw new UsageError(`--server: cannot resolve "${host}" (${e instanceof Error ? e.message : String(e)}); give its IP address`);
    }
    out.push(...addrs.map((a) => a.toLowerCase()));
  }
  return [...new Set(out)];
}

const defaultResolve = async (host: string): Promise<string[]> => (await lookup(host, { all: true })).map((a) => a.address);
const defaultIfaceAddresses = (iface: string): string[] =>
  (networkInterfaces()[iface] ?? []).filter((a) => a.family === 'IPv4' && !a.internal).map((a) => a.address);

/** Every flag checked (usage errors name the flag), names resolved: the plan the rules are printed from. */
export async function routerPlan(flags: RouterSetupFlags, deps: RouterSetupDeps = {}): Promise<RouterPlan> {
  if (flags.lan === undefined) throw new UsageError('--lan: the LAN interface is required (like --lan br-lan)');
  const lan = parseIface('--lan', flags.lan);
  if ((flags.redirect === undefined) === (flags.tproxy === undefined)) {
    throw new UsageError('--redirect: give the port of plait client --redirect, or of --tproxy (one of the two)');
  }
  const mode = flags.redirect !== undefined ? 'redirect' : 'tproxy';
  const port = parsePort(`--${mode}`, (flags.redirect ?? flags.tproxy)!);
  const dnsPort = flags.dns === undefined ? undefined : parsePort('--dns', flags.dns);
  if (dnsPort !== undefined && dnsPort === port) throw new UsageError(`--dns: must differ from the --${mode} port`);
  const ifaceAddresses = deps.ifaceAddresses ?? defaultIfaceAddresses;
  const uplinks: Uplink[] = flags.uplink.map((spec) => {
    const m = /^([^=]+)=(.+)$/.exec(spec);
    if (!m) throw new UsageError(`--uplink: expected IFACE=GATEWAY (like eth0=192.168.1.1), got "${spec}"`);
    const iface = parseIface('--uplink', m[1]!);
    if (isIP(m[2]!) !== 4) throw new UsageError(`--uplink: gateway "${m[2]!}" is not an IPv4 address`);
    if (iface === lan) throw new UsageError(`--uplink: ${iface} is the LAN interface`);
    return { iface, gateway: m[2]!, sources: ifaceAddresses(iface) };
  });
  if (new Set(uplinks.map((u) => u.iface)).size !== uplinks.length) throw new UsageError('--uplink: each interface once');
  const bypassSources: string[] = [];
  const bypassMacs: string[] = [];
  for (const d of flags.bypassDevice) {
    if (MAC.test(d.toLowerCase())) bypassMacs.push(d.toLowerCase());
    else if (/^[^/]+(\/\d+)?$/.test(d) && isIP(d.split('/')[0]!) !== 0) bypassSources.push(parseCidr('--bypass-device', d));
    else throw new UsageError(`--bypass-device: "${d}" is neither an IP address, a CIDR nor a MAC address (aa:bb:cc:dd:ee:ff)`);
  }
  const bypassNets = flags.bypass.map((c) => parseCidr('--bypass', c));
  const bypassDomains = flags.bypassDomain.map((d) => parseDomain('--bypass-domain', d));
  const anyBypass = bypassNets.length + bypassDomains.length + bypassSources.length + bypassMacs.length > 0;
  let bypassVia: string | undefined;
  if (flags.bypassVia !== undefined) {
    bypassVia = parseIface('--bypass-via', flags.bypassVia);
    if (!uplinks.some((u) => u.iface === bypassVia)) throw new UsageError(`--bypass-via: ${bypassVia} is not one of the --uplink interfaces`);
  } else if (anyBypass) {
    bypassVia = uplinks[0]?.iface;
  }
  if (flags.iptables && (bypassDomains.length > 0 || bypassSources.some((s) => s.includes(':')) || bypassNets.some((s) => s.includes(':')))) {
    throw new UsageError('--iptables: --bypass-domain and IPv6 bypass rules need nftables (leave out --iptables)');
  }
  const servers = await serverAddresses(flags.server, deps.resolve ?? defaultResolve);
  return { lan, mode, port, dnsPort, servers, uplinks, rejectQuic: flags.rejectQuic === true, bypassNets, bypassDomains, bypassSources, bypassMacs, bypassVia };
}

/** What `plait router-setup` prints for these flags. */
export async function routerSetupText(flags: RouterSetupFlags, deps: RouterSetupDeps = {}): Promise<string> {
  const plan = await routerPlan(flags, deps);
  const backend = flags.iptables ? 'iptables' : 'nft';
  if (flags.undo) return undoScript(plan, backend);
  if (flags.rulesOnly) return backend === 'nft' ? nftRules(plan) : iptablesRules(plan);
  return applyScript(plan, backend);
}
