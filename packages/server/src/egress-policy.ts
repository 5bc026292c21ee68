import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

/*
 * Addresses are handled as 128-bit integers in IPv6 space, with IPv4 as its
 * IPv4-mapped form ::ffff:a.b.c.d. That makes "127.0.0.1" and
 * "::ffff:7f00:1" the same number, so no spelling slips past a rule.
 * (node:net BlockList treats them as different addresses.)
 */

const V4_MAPPED = 0xffffn << 32n;
const ALL_ONES = (1n << 128n) - 1n;
const LOW32 = 0xffffffffn;

export interface Cidr {
  readonly family: 4 | 6;
  /** Prefix length as written (0-32 for IPv4, 0-128 for IPv6). */
  readonly prefix: number;
  /** Canonical text, e.g. "10.0.0.0/8". */
  readonly text: string;
  /** Network in 128-bit space (IPv4 mapped). */
  readonly net: bigint;
  /** Prefix length in 128-bit space. */
  readonly bits: number;
}

export type EgressVerdict = { ok: true } | { ok: false; reason: string };

export interface EgressPolicyOptions {
  /** Open the private, loopback and link-local ranges and the server's own addresses. */
  allowPrivate?: boolean;
  /** CIDRs (or single addresses) to allow even if a default rule denies them. */
  allow?: string[];
  /** The server's own addresses, denied by default. Default: every address of os.networkInterfaces(). */
  ownAddresses?: string[];
}

function v4ToInt(s: string): bigint {
  let n = 0n;
  for (const part of s.split('.')) n = (n << 8n) | BigInt(Number(part));
  return n;
}

/** The address as a 128-bit integer, or null if it is not an IP address. A zone ("%eth0") is ignored. */
export function parseIp(input: string): bigint | null {
  const zone = input.indexOf('%');
  const s = zone >= 0 ? input.slice(0, zone) : input;
  if (isIPv4(s)) return V4_MAPPED | v4ToInt(s);
  if (!isIPv6(s)) return null;
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = Number(v4ToInt(g));
        groups.push(v4 >>> 16, v4 & 0xffff);
      } else {
        groups.push(parseInt(g, 16));
      }
    }
    return groups;
  };
  const dbl = s.indexOf('::');
  let groups: number[];
  if (dbl < 0) {
    groups = toGroups(s);
  } else {
    const head = toGroups(s.slice(0, dbl));
    const tail = toGroups(s.slice(dbl + 2));
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  if (groups.length !== 8) return null;
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

/** Text form: dotted quad for (mapped) IPv4, RFC 5952 otherwise. */
export function formatIp(n: bigint): string {
  if (n >> 32n === 0xffffn) {
    const v = Number(n & LOW32);
    return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff].join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

function mask(bits: number): bigint {
  return bits === 0 ? 0n : (ALL_ONES << BigInt(128 - bits)) & ALL_ONES;
}

/** Parses "a.b.c.d/n", "v6/n" or a single address (a host route). Throws an Error saying what is wrong. */
export function parseCidr(s: string): Cidr {
  const input = s.trim();
  const slash = input.indexOf('/');
  const addrText = slash < 0 ? input : input.slice(0, slash);
  const prefixText = slash < 0 ? undefined : input.slice(slash + 1);
  const addr = parseIp(addrText);
  if (addr === null || addrText.includes('%')) {
    throw new Error(`invalid CIDR "${s}": "${addrText}" is not an IPv4 or IPv6 address`);
  }
  const family: 4 | 6 = isIPv4(addrText) ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
      throw new Error(`invalid CIDR "${s}": prefix length must be a number from 0 to ${max}`);
    }
    prefix = Number(prefixText);
  }
  const bits = family === 4 ? 96 + prefix : prefix;
  const net = addr & mask(bits);
  if (net !== addr) {
    // Refused rather than silently widened: a typo in an allow list should not open a range.
    throw new Error(`invalid CIDR "${s}": host bits are set; did you mean ${formatIp(net)}/${prefix}?`);
  }
  return { family, prefix, text: `${formatIp(net)}/${prefix}`, net, bits };
}

function contains(c: Cidr, addr: bigint): boolean {
  return (addr & mask(c.bits)) === c.net;
}

interface Rule {
  cidr: Cidr;
  what: string;
}

function rules(list: [string, string][]): Rule[] {
  return list.map(([c, what]) => ({ cidr: parseCidr(c), what }));
}

/** Not routable as unicast destinations (or, like 0.0.0.0, reach this host); only `allow` opens them. */
const RESERVED = rules([
  ['0.0.0.0/8', '"this network"'],
  ['192.0.0.0/24', 'IETF protocol assignments'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['255.255.255.255/32', 'broadcast'],
  ['::/128', 'the unspecified address'],
  ['ff00::/8', 'multicast'],
]);

/** Internal networks; `allowPrivate` opens them. */
const PRIVATE = rules([
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'shared address space (CGNAT)'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['::1/128', 'loopback'],
  ['fc00::/7', 'unique local'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'site-local'],
]);

const V4_COMPATIBLE = parseCidr('::/96');
const V4_TRANSLATED = parseCidr('::ffff:0:0:0/96');
const NAT64 = parseCidr('64:ff9b::/96');
const SIX_TO_FOUR = parseCidr('2002::/16');

/**
 * Every address a connection to `addr` may actually reach: itself, plus the
 * IPv4 address embedded by the IPv6 transition formats (IPv4-compatible,
 * SIIT-translated, NAT64 well-known prefix, 6to4).
 */
function identities(addr: bigint): bigint[] {
  const out = [addr];
  if ((contains(V4_COMPATIBLE, addr) && addr > 1n) || contains(V4_TRANSLATED, addr) || contains(NAT64, addr)) {
    out.push(V4_MAPPED | (addr & LOW32));
  } else if (contains(SIX_TO_FOUR, addr)) {
    out.push(V4_MAPPED | ((addr >> 80n) & LOW32));
  }
  return out;
}

const OWN_REFRESH_MS = 60_000;

function interfaceAddresses(): bigint[] {
  const out: bigint[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) {
      const n = parseIp(info.address);
      if (n !== null) out.push(n);
    }
  }
  return out;
}

/**
 * Decides which addresses the server may connect to for a client. Default
 * deny for everything internal, so the proxy cannot be used to reach the
 * server's own network or services.
 */
export class EgressPolicy {
  private readonly allowPrivate: boolean;
  private readonly allow: Cidr[];
  private readonly fixedOwn: Set<bigint> | undefined;
  private own: Set<bigint> = new Set();
  private ownLoadedAt = -Infinity;

  constructor(opts: EgressPolicyOptions = {}) {
    this.allowPrivate = opts.allowPrivate ?? false;
    this.allow = (opts.allow ?? []).map(parseCidr);
    if (opts.ownAddresses) {
      this.fixedOwn = new Set(
        opts.ownAddresses.map((a) => {
          const n = parseIp(a);
          if (n === null) throw new Error(`invalid own address "${a}"`);
          return n;
        }),
      );
    }
  }

  /** Interfaces come and go (DHCP, VPNs), so the list is re-read now and then. */
  private ownAddresses(): Set<bigint> {
    if (this.fixedOwn) return this.fixedOwn;
    const now = Date.now();
    if (now - this.ownLoadedAt > OWN_REFRESH_MS) {
      this.own = new Set(interfaceAddresses());
      this.ownLoadedAt = now;
    }
    return this.own;
  }

  private denial(addr: bigint): string | null {
    for (const r of RESERVED) if (contains(r.cidr, addr)) return `${r.what} (${r.cidr.text})`;
    if (this.allowPrivate) return null;
    for (const r of PRIVATE) if (contains(r.cidr, addr)) return `${r.what} (${r.cidr.text})`;
    if (this.ownAddresses().has(addr)) return 'an address of this server';
    return null;
  }

  check(address: string): EgressVerdict {
    const addr = parseIp(address);
    if (addr === null) return { ok: false, reason: `"${address}" is not an IP address` };
    // Each identity must pass on its own: allowing 64:ff9b::/96 does not
    // open 64:ff9b::7f00:1, whose embedded 127.0.0.1 would still be denied.
    for (const id of identities(addr)) {
      const why = this.denial(id);
      if (why === null || this.allow.some((c) => contains(c, id))) continue;
      const shown = formatIp(id);
      const via = id === addr ? '' : ` (embedded in ${address})`;
      return { ok: false, reason: `${shown}${via} is ${why}` };
    }
    return { ok: true };
  }
}
