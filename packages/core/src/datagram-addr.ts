/**
 * DATAGRAM addresses (PROTOCOL.md 6.7) between their wire form (SOCKS5's
 * address types: 4 or 16 raw bytes, or a name) and text. Pure: used by the
 * client's SOCKS5 UDP relay and the server's UDP sockets alike.
 */
import { Atyp, type DatagramAtyp } from './frames.js';

/** RFC 5952 text form of a 16-byte IPv6 address. */
export function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // Longest run of zero groups (length >= 2) becomes "::".
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The 4 bytes of a dotted-quad IPv4 address, or undefined. */
export function parseIPv4(s: string): Uint8Array | undefined {
  if (!V4.test(s)) return undefined;
  return new Uint8Array(s.split('.').map(Number));
}

/** The 16 bytes of an IPv6 address (zone dropped, embedded IPv4 allowed), or undefined. */
export function parseIPv6(input: string): Uint8Array | undefined {
  const zone = input.indexOf('%');
  const s = zone >= 0 ? input.slice(0, zone) : input;
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.length > 45) return undefined;
  const groupsOf = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const parts = part.split(':');
    for (let i = 0; i < parts.length; i++) {
      const g = parts[i]!;
      if (i === parts.length - 1 && g.includes('.')) {
        const v4 = parseIPv4(g);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) out.push(parseInt(g, 16));
      else return undefined;
    }
    return out;
  };
  const dbl = s.indexOf('::');
  let groups: number[] | undefined;
  if (dbl < 0) groups = groupsOf(s);
  else {
    if (s.indexOf('::', dbl + 1) >= 0) return undefined;
    const head = groupsOf(s.slice(0, dbl));
    const tail = groupsOf(s.slice(dbl + 2));
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  if (!groups || groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >>> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Wire form of an IP literal (IPv4-mapped IPv6 becomes IPv4), or undefined if `host` is not one. */
export function ipToAddr(host: string): { atyp: DatagramAtyp; addr: Uint8Array } | undefined {
  const v4 = parseIPv4(host);
  if (v4) return { atyp: Atyp.IPV4, addr: v4 };
  const v6 = parseIPv6(host);
  if (!v6) return undefined;
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) return { atyp: Atyp.IPV4, addr: v6.slice(12) };
  return { atyp: Atyp.IPV6, addr: v6 };
}

/** Printable ASCII without spaces: anything else cannot be a host name the server could resolve. */
export function isPlausibleName(bytes: Uint8Array): boolean {
  if (bytes.length === 0) return false;
  for (const b of bytes) if (b <= 0x20 || b >= 0x7f) return false;
  return true;
}

/** Text of a wire address: dotted quad, RFC 5952, or the name as Latin-1 (SOCKS5 names are bytes). */
export function addrToText(atyp: DatagramAtyp, addr: Uint8Array): string {
  switch (atyp) {
    case Atyp.IPV4:
      return Array.from(addr).join('.');
    case Atyp.IPV6:
      return formatIPv6(addr);
    case Atyp.DOMAIN:
      return String.fromCharCode(...addr);
    case Atyp.RESOLVER:
      return '';
  }
}
