/**
 * Reads what a DNS answer says a name resolves to (RFC 1035 4.1): the
 * question's name, the CNAME chain from it, its A/AAAA addresses and the
 * smallest TTL among them. Used to learn the addresses of bypassed domains
 * from answers passing through `plait client --dns`. The message comes from
 * the network: every read is bounds-checked, compression pointers are
 * followed a bounded number of times, and at most MAX_RECORDS answers are
 * looked at; anything malformed gives undefined.
 */

export interface DnsLearned {
  /** The question's name, lower case, no trailing dot. */
  name: string;
  /** Names the question's name is an alias of (its CNAME chain), in order. */
  aliases: string[];
  /** IPv4 and IPv6 addresses of the name (or of the end of its chain). */
  addresses: string[];
  /** The smallest TTL among the records used (seconds). */
  ttlSeconds: number;
}

const HEADER = 12;
const MAX_RECORDS = 64;
const MAX_POINTERS = 16;
const MAX_NAME = 255;
const MAX_CHAIN = 8;
const TYPE_A = 1;
const TYPE_CNAME = 5;
const TYPE_AAAA = 28;
const CLASS_IN = 1;

/** A (possibly compressed) name at `off`: the name and where the record continues, or undefined. */
function readName(m: Uint8Array, off: number): { name: string; next: number } | undefined {
  const labels: string[] = [];
  let length = 0;
  let pos = off;
  let next = -1;
  for (let pointers = 0; ; ) {
    if (pos >= m.length) return undefined;
    const len = m[pos]!;
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= m.length || ++pointers > MAX_POINTERS) return undefined;
      if (next < 0) next = pos + 2;
      pos = ((len & 0x3f) << 8) | m[pos + 1]!;
      continue;
    }
    if ((len & 0xc0) !== 0 || pos + 1 + len > m.length) return undefined;
    length += len + 1;
    if (length > MAX_NAME) return undefined;
    let label = '';
    for (let i = pos + 1; i <= pos + len; i++) label += String.fromCharCode(m[i]!);
    labels.push(label.toLowerCase());
    pos += 1 + len;
  }
  return { name: labels.join('.'), next };
}

function ipv6Text(b: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** What a successful answer to one question says; undefined for queries, errors, and malformed messages. */
export function parseDnsAnswer(m: Uint8Array): DnsLearned | undefined {
  if (m.length < HEADER) return undefined;
  const flags = (m[2]! << 8) | m[3]!;
  const isResponse = (flags & 0x8000) !== 0;
  const rcode = flags & 0x000f;
  const qdcount = (m[4]! << 8) | m[5]!;
  const ancount = (m[6]! << 8) | m[7]!;
  if (!isResponse || rcode !== 0 || qdcount !== 1 || ancount === 0) return undefined;
  const q = readName(m, HEADER);
  if (!q || q.next + 4 > m.length) return undefined;
  let pos = q.next + 4; // QTYPE, QCLASS
  const cnames = new Map<string, string>();
  const records: { owner: string; address: string; ttl: number }[] = [];
  const ttls = new Map<string, number>();
  for (let i = 0; i < Math.min(ancount, MAX_RECORDS); i++) {
    const owner = readName(m, pos);
    if (!owner || owner.next + 10 > m.length) return undefined;
    const p = owner.next;
    const type = (m[p]! << 8) | m[p + 1]!;
    const cls = (m[p + 2]! << 8) | m[p + 3]!;
    const ttl = ((m[p + 4]! << 24) >>> 0) + ((m[p + 5]! << 16) | (m[p + 6]! << 8) | m[p + 7]!);
    const rdlen = (m[p + 8]! << 8) | m[p + 9]!;
    const rdata = p + 10;
    if (rdata + rdlen > m.length) return undefined;
    pos = rdata + rdlen;
    if (cls !== CLASS_IN) continue;
    if (type === TYPE_A && rdlen === 4) {
      records.push({ owner: owner.name, address: `${m[rdata]}.${m[rdata + 1]}.${m[rdata + 2]}.${m[rdata + 3]}`, ttl });
    } else if (type === TYPE_AAAA && rdlen === 16) {
      records.push({ owner: owner.name, address: ipv6Text(m.subarray(rdata, rdata + 16)), ttl });
    } else if (type === TYPE_CNAME) {
      const target = readName(m, rdata);
      if (!target) return undefined;
      cnames.set(owner.name, target.name);
      ttls.set(owner.name, ttl);
    }
  }
  // Follow the chain from the question's name; only its records count (not unrelated extras).
  const chain = [q.name];
  let ttl = Number.POSITIVE_INFINITY;
  for (let name = q.name; cnames.has(name) && chain.length <= MAX_CHAIN; ) {
    ttl = Math.min(ttl, ttls.get(name) ?? ttl);
    name = cnames.get(name)!;
    if (chain.includes(name)) break; // a CNAME loop
    chain.push(name);
  }
  const owners = new Set(chain);
  const addresses: string[] = [];
  for (const r of records) {
    if (!owners.has(r.owner) || addresses.includes(r.address)) continue;
    addresses.push(r.address);
    ttl = Math.min(ttl, r.ttl);
  }
  if (addresses.length === 0) return undefined;
  return { name: q.name, aliases: chain.slice(1), addresses, ttlSeconds: ttl };
}
