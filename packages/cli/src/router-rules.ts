/**
 * The rule set `plait router-setup` prints: a pure function of a checked
 * plan (no I/O here), so tests can compare it and load it with `nft -c`.
 *
 * What the rules do, for traffic arriving on the LAN interface:
 *  1. mark bypassed connections (by device: source address or MAC; by
 *     destination: CIDR, or an address learned from a bypassed domain's DNS
 *     answer) with a conntrack mark, copied to every packet, so policy routing
 *     sends them straight out the bypass uplink and they are never redirected;
 *  2. redirect DNS (UDP and TCP 53) to the client's `--dns` port;
 *  3. leave alone traffic to the router's own addresses and to the plait
 *     server (redirecting the client's own server would loop);
 *  4. redirect every other TCP connection to the client's `--redirect` port;
 *  5. optionally reject forwarded UDP 443 so browsers fall back from QUIC to
 *     (bonded) TCP at once instead of after a timeout;
 *  6. drop connections to plait's ports that do not come from the LAN (the
 *     transparent listeners have no authentication);
 *  7. masquerade bypassed connections leaving by an uplink.
 * Plus per-uplink policy routing (one table per uplink, chosen by the
 * socket's interface or source address, as in the README's "Bonding real
 * links"), and the commands that undo all of it.
 */

export interface Uplink {
  iface: string;
  gateway: string;
  /** The uplink's current IPv4 addresses (for `ip rule from`); may be empty (DHCP not up yet). */
  sources: string[];
}

export interface RouterPlan {
  lan: string;
  /** How LAN TCP reaches the client: `plait client --redirect` (NAT REDIRECT) or `--tproxy` (TPROXY). */
  mode: 'redirect' | 'tproxy';
  /** The port of that listener. */
  port: number;
  dnsPort: number | undefined;
  /** The plait server's addresses (IPv4 and IPv6 literals). */
  servers: string[];
  uplinks: Uplink[];
  rejectQuic: boolean;
  /** Destination CIDRs (or single addresses) that go out directly. */
  bypassNets: string[];
  /** Domains whose addresses (learned by `plait client --bypass-domain`) go out directly. */
  bypassDomains: string[];
  /** LAN devices (IPv4/IPv6 address or CIDR) that go out directly. */
  bypassSources: string[];
  /** LAN devices by MAC address. */
  bypassMacs: string[];
  /** The uplink bypassed traffic leaves by; undefined: the main routing table decides. */
  bypassVia: string | undefined;
}

/** The nftables table everything lives in; `plait client --bypass-domain` adds to its sets. */
export const NFT_TABLE = 'inet plait';
/** Sets of addresses learned from bypassed domains' DNS answers (elements with timeouts). */
export const NFT_BYPASS_DNS_SETS = { v4: 'bypass_dns4', v6: 'bypass_dns6' } as const;
/** Conntrack / packet mark of bypassed connections, and the `ip rule` priority that routes it. */
export const BYPASS_MARK = 0x706c;
/** Packet mark of TPROXY'd packets, routed to the local machine by TPROXY_TABLE. */
export const TPROXY_MARK = 0x706d;
const TPROXY_TABLE = 100;
const TPROXY_RULE_PRIORITY = 980;
const FIRST_TABLE = 101;
const RULE_PRIORITY = 1000;
const MARK_RULE_PRIORITY = 990;

const hex = (n: number): string => `0x${n.toString(16)}`;
const isV6 = (a: string): boolean => a.includes(':');
const tableOf = (plan: RouterPlan, iface: string): number => FIRST_TABLE + plan.uplinks.findIndex((u) => u.iface === iface);

function nftSet(name: string, type: string, flags: string[], elements: string[], extra = ''): string[] {
  const body = [`    type ${type};`];
  if (flags.length > 0) body.push(`    flags ${flags.join(', ')};`);
  if (extra) body.push(`    ${extra}`);
  if (elements.length > 0) body.push(`    elements = { ${elements.join(', ')} }`);
  return [`  set ${name} {`, ...body, '  }'];
}

/** The nftables rule set (`nft -f`): one table, created afresh each time. */
export function nftRules(plan: RouterPlan): string {
  const lan = `"${plan.lan}"`;
  const mark = hex(BYPASS_MARK);
  const v4 = (l: string[]): string[] => l.filter((a) => !isV6(a));
  const v6 = (l: string[]): string[] => l.filter(isV6);
  const out: string[] = [
    `# plait router-setup: LAN ${plan.lan}; TCP -> :${plan.port} (${plan.mode})${plan.dnsPort ? `, DNS -> :${plan.dnsPort}` : ''}`,
    // Declaring and then deleting the table makes loading the file replace the old one, on first use too.
    `table ${NFT_TABLE}`,
    `delete table ${NFT_TABLE}`,
    `table ${NFT_TABLE} {`,
    ...nftSet('servers4', 'ipv4_addr', ['interval'], v4(plan.servers)),
    ...nftSet('servers6', 'ipv6_addr', ['interval'], v6(plan.servers)),
    ...nftSet('bypass_net4', 'ipv4_addr', ['interval'], v4(plan.bypassNets)),
    ...nftSet('bypass_net6', 'ipv6_addr', ['interval'], v6(plan.bypassNets)),
    ...nftSet(NFT_BYPASS_DNS_SETS.v4, 'ipv4_addr', ['timeout'], [], 'size 65536;'),
    ...nftSet(NFT_BYPASS_DNS_SETS.v6, 'ipv6_addr', ['timeout'], [], 'size 65536;'),
    ...nftSet('bypass_src4', 'ipv4_addr', ['interval'], v4(plan.bypassSources)),
    ...nftSet('bypass_src6', 'ipv6_addr', ['interval'], v6(plan.bypassSources)),
    ...nftSet('bypass_mac', 'ether_addr', [], plan.bypassMacs),
    '',
    '  # Bypass: marked on the first packet, the mark kept by conntrack and copied to every packet for routing.',
    '  chain bypass {',
    '    type filter hook prerouting priority mangle; policy accept;',
    `    iifname != ${lan} return`,
    `    ct state new ip saddr @bypass_src4 ct mark set ${mark}`,
    `    ct state new ip6 saddr @bypass_src6 ct mark set ${mark}`,
    `    ct state new ether saddr @bypass_mac ct mark set ${mark}`,
    `    ct state new ip daddr @bypass_net4 ct mark set ${mark}`,
    `    ct state new ip6 daddr @bypass_net6 ct mark set ${mark}`,
    `    ct state new ip daddr @${NFT_BYPASS_DNS_SETS.v4} ct mark set ${mark}`,
    `    ct state new ip6 daddr @${NFT_BYPASS_DNS_SETS.v6} ct mark set ${mark}`,
    '    meta mark set ct mark',
    '  }',
    '',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    iifname != ${lan} return`,
    `    ct mark ${mark} return`,
  ];
  if (plan.dnsPort !== undefined) {
    out.push(`    udp dport 53 redirect to :${plan.dnsPort}`, `    tcp dport 53 redirect to :${plan.dnsPort}`);
  }
  const exceptions = ['    fib daddr type local return', '    ip daddr @servers4 return', '    ip6 daddr @servers6 return'];
  if (plan.mode === 'redirect') out.push(...exceptions, `    meta l4proto tcp redirect to :${plan.port}`);
  out.push('  }', '');
  if (plan.mode === 'tproxy') {
    const tmark = hex(TPROXY_MARK);
    out.push(
      '  # TPROXY: the packet keeps its destination; the mark routes it to this machine (ip rule below).',
      '  chain transparent {',
      '    type filter hook prerouting priority mangle + 10; policy accept;',
      `    iifname != ${lan} return`,
      `    ct mark ${mark} return`,
      ...exceptions,
      `    meta l4proto tcp socket transparent 1 meta mark set ${tmark} accept`,
      `    meta nfproto ipv4 meta l4proto tcp tproxy ip to :${plan.port} meta mark set ${tmark} accept`,
      `    meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :${plan.port} meta mark set ${tmark} accept`,
      '  }',
      '',
    );
  }
  out.push(
    "  # plait's transparent ports have no authentication: only the LAN (and this machine) may reach them.",
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname { ${lan}, "lo" } return`,
    `    tcp dport ${plan.port} drop`,
  );
  if (plan.dnsPort !== undefined) out.push(`    udp dport ${plan.dnsPort} drop`, `    tcp dport ${plan.dnsPort} drop`);
  out.push('  }');
  if (plan.rejectQuic) {
    out.push(
      '',
      '  # QUIC is UDP, which is not bonded: refuse it so browsers use TCP at once.',
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    iifname ${lan} ct mark != ${mark} udp dport 443 reject`,
      '  }',
    );
  }
  if (plan.uplinks.length > 0) {
    out.push(
      '',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    ct mark ${mark} oifname { ${plan.uplinks.map((u) => `"${u.iface}"`).join(', ')} } masquerade`,
      '  }',
    );
  }
  out.push('}');
  return out.join('\n') + '\n';
}

/** The iptables variant (IPv4; `iptables-restore --noflush`): its own chains, hooked into the built-in ones. */
export function iptablesRules(plan: RouterPlan): string {
  const mark = hex(BYPASS_MARK);
  const v4 = (l: string[]): string[] => l.filter((a) => !isV6(a));
  const setMark = `-m conntrack --ctstate NEW`;
  const out: string[] = [`# plait router-setup (iptables, IPv4): LAN ${plan.lan}`, '*mangle', ':PLAIT_MARK - [0:0]', `-A PREROUTING -i ${plan.lan} -j PLAIT_MARK`];
  for (const s of v4(plan.bypassSources)) out.push(`-A PLAIT_MARK ${setMark} -s ${s} -j CONNMARK --set-mark ${mark}`);
  for (const m of plan.bypassMacs) out.push(`-A PLAIT_MARK ${setMark} -m mac --mac-source ${m} -j CONNMARK --set-mark ${mark}`);
  for (const d of v4(plan.bypassNets)) out.push(`-A PLAIT_MARK ${setMark} -d ${d} -j CONNMARK --set-mark ${mark}`);
  out.push('-A PLAIT_MARK -j CONNMARK --restore-mark');
  if (plan.mode === 'tproxy') {
    const tmark = `${hex(TPROXY_MARK)}/0xffffffff`;
    out.push(':PLAIT_TPROXY - [0:0]', `-A PREROUTING -i ${plan.lan} -j PLAIT_TPROXY`, `-A PLAIT_TPROXY -m connmark --mark ${mark} -j RETURN`, '-A PLAIT_TPROXY -m addrtype --dst-type LOCAL -j RETURN');
    for (const s of v4(plan.servers)) out.push(`-A PLAIT_TPROXY -d ${s} -j RETURN`);
    out.push(`-A PLAIT_TPROXY -p tcp -m socket --transparent -j MARK --set-mark ${tmark}`, `-A PLAIT_TPROXY -m mark --mark ${tmark} -j ACCEPT`);
    out.push(`-A PLAIT_TPROXY -p tcp -j TPROXY --on-port ${plan.port} --tproxy-mark ${tmark}`);
  }
  out.push('COMMIT', '*nat', ':PLAIT_PRE - [0:0]', `-A PREROUTING -i ${plan.lan} -j PLAIT_PRE`);
  out.push(`-A PLAIT_PRE -m connmark --mark ${mark} -j RETURN`);
  if (plan.dnsPort !== undefined) {
    out.push(`-A PLAIT_PRE -p udp --dport 53 -j REDIRECT --to-ports ${plan.dnsPort}`, `-A PLAIT_PRE -p tcp --dport 53 -j REDIRECT --to-ports ${plan.dnsPort}`);
  }
  if (plan.mode === 'redirect') {
    out.push('-A PLAIT_PRE -m addrtype --dst-type LOCAL -j RETURN');
    for (const s of v4(plan.servers)) out.push(`-A PLAIT_PRE -d ${s} -j RETURN`);
    out.push(`-A PLAIT_PRE -p tcp -j REDIRECT --to-ports ${plan.port}`);
  }
  if (plan.uplinks.length > 0) {
    out.push(':PLAIT_POST - [0:0]', '-A POSTROUTING -j PLAIT_POST');
    for (const u of plan.uplinks) out.push(`-A PLAIT_POST -o ${u.iface} -m connmark --mark ${mark} -j MASQUERADE`);
  }
  out.push('COMMIT', '*filter', ':PLAIT_IN - [0:0]', '-A INPUT -j PLAIT_IN', `-A PLAIT_IN -i ${plan.lan} -j RETURN`, '-A PLAIT_IN -i lo -j RETURN');
  out.push(`-A PLAIT_IN -p tcp --dport ${plan.port} -j DROP`);
  if (plan.dnsPort !== undefined) out.push(`-A PLAIT_IN -p udp --dport ${plan.dnsPort} -j DROP`, `-A PLAIT_IN -p tcp --dport ${plan.dnsPort} -j DROP`);
  if (plan.rejectQuic) {
    out.push(':PLAIT_FWD - [0:0]', '-A FORWARD -j PLAIT_FWD', `-A PLAIT_FWD -i ${plan.lan} -m connmark ! --mark ${mark} -p udp --dport 443 -j REJECT`);
  }
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

/** `ip rule` / `ip route` commands for the uplinks and the bypass mark. */
function routingCommands(plan: RouterPlan): { apply: string[]; undo: string[] } {
  const apply: string[] = [];
  const undo: string[] = [];
  // Deleting first makes running the script again leave one copy of each rule, not two.
  const rule = (spec: string): void => {
    apply.push(`ip rule del ${spec} 2>/dev/null || true`, `ip rule add ${spec}`);
    undo.push(`ip rule del ${spec}`);
  };
  plan.uplinks.forEach((u, i) => {
    const table = FIRST_TABLE + i;
    const prio = RULE_PRIORITY + i;
    apply.push(`ip route replace default via ${u.gateway} dev ${u.iface} table ${table}`);
    // oif: sockets bound to the interface (plait client --via, with koffi); from: bound by source address.
    rule(`oif ${u.iface} table ${table} priority ${prio}`);
    for (const src of u.sources) rule(`from ${src} table ${table} priority ${prio}`);
    undo.push(`ip route flush table ${table}`);
  });
  if (plan.mode === 'tproxy') {
    apply.push(`ip route replace local 0.0.0.0/0 dev lo table ${TPROXY_TABLE}`, `ip -6 route replace local ::/0 dev lo table ${TPROXY_TABLE} 2>/dev/null || true`);
    rule(`fwmark ${hex(TPROXY_MARK)} table ${TPROXY_TABLE} priority ${TPROXY_RULE_PRIORITY}`);
    apply.push(`ip -6 rule del fwmark ${hex(TPROXY_MARK)} table ${TPROXY_TABLE} priority ${TPROXY_RULE_PRIORITY} 2>/dev/null || true`);
    apply.push(`ip -6 rule add fwmark ${hex(TPROXY_MARK)} table ${TPROXY_TABLE} priority ${TPROXY_RULE_PRIORITY} 2>/dev/null || true`);
    undo.push(`ip -6 rule del fwmark ${hex(TPROXY_MARK)} table ${TPROXY_TABLE} priority ${TPROXY_RULE_PRIORITY}`, `ip route flush table ${TPROXY_TABLE}`, `ip -6 route flush table ${TPROXY_TABLE}`);
  }
  if (plan.bypassVia !== undefined) {
    const table = tableOf(plan, plan.bypassVia);
    rule(`fwmark ${hex(BYPASS_MARK)} table ${table} priority ${MARK_RULE_PRIORITY}`);
  }
  return { apply, undo };
}

export type Backend = 'nft' | 'iptables';

/** The complete set-up as a shell script. */
export function applyScript(plan: RouterPlan, backend: Backend): string {
  const routes = routingCommands(plan);
  const lines = [
    '#!/bin/sh',
    '# Generated by plait router-setup. Undo with the same command and --undo.',
    'set -e',
    backend === 'nft' ? "nft -f - <<'PLAIT_NFT'" : "iptables-restore --noflush <<'PLAIT_IPT'",
    (backend === 'nft' ? nftRules(plan) : iptablesRules(plan)).trimEnd(),
    backend === 'nft' ? 'PLAIT_NFT' : 'PLAIT_IPT',
    ...routes.apply,
  ];
  // Bypassed connections are forwarded by the kernel; everything else is plait's.
  if (plan.bypassNets.length + plan.bypassDomains.length + plan.bypassSources.length + plan.bypassMacs.length > 0) {
    lines.push('# Bypassed traffic is routed by the kernel, so forwarding must be on for it.', 'sysctl -qw net.ipv4.ip_forward=1');
  }
  return lines.join('\n') + '\n';
}

/** Commands that remove everything applyScript added (each may fail harmlessly if already gone). */
export function undoScript(plan: RouterPlan, backend: Backend): string {
  const routes = routingCommands(plan);
  const lines = ['#!/bin/sh', '# Generated by plait router-setup --undo.'];
  if (backend === 'nft') lines.push(`nft delete table ${NFT_TABLE} 2>/dev/null`);
  else {
    const hooks: [string, string, string, string][] = [
      ['mangle', 'PREROUTING', 'PLAIT_MARK', `-i ${plan.lan} `],
      ['mangle', 'PREROUTING', 'PLAIT_TPROXY', `-i ${plan.lan} `],
      ['nat', 'PREROUTING', 'PLAIT_PRE', `-i ${plan.lan} `],
      ['nat', 'POSTROUTING', 'PLAIT_POST', ''],
      ['filter', 'INPUT', 'PLAIT_IN', ''],
      ['filter', 'FORWARD', 'PLAIT_FWD', ''],
    ];
    for (const [table, builtin, chain, match] of hooks) {
      lines.push(`iptables -t ${table} -D ${builtin} ${match}-j ${chain} 2>/dev/null; iptables -t ${table} -F ${chain} 2>/dev/null; iptables -t ${table} -X ${chain} 2>/dev/null`);
    }
  }
  for (const c of routes.undo) lines.push(`${c} 2>/dev/null`);
  lines.push('true');
  return lines.join('\n') + '\n';
}
