import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { routerPlan, routerSetupText, type RouterSetupFlags } from '../src/router-setup.js';

// The rule set's meaning is checked by the kernel in test/system/router-netns.sh (nft -c, then
// loaded in network namespaces and driven with curl); here: the flags, and what must (not) be in it.

const base = (over: Partial<RouterSetupFlags> = {}): RouterSetupFlags => ({
  lan: 'br-lan',
  redirect: '12345',
  server: ['203.0.113.5'],
  uplink: [],
  bypass: [],
  bypassDomain: [],
  bypassDevice: [],
  ...over,
});
const deps = { resolve: async (h: string) => (h === 'vps.example' ? ['198.51.100.20', '2001:db8::20'] : Promise.reject(new Error('ENOTFOUND'))), ifaceAddresses: (i: string) => (i === 'eth0' ? ['192.168.1.20'] : []) };

async function usage(flags: RouterSetupFlags): Promise<string> {
  try {
    await routerPlan(flags, deps);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('expected a usage error');
}

describe('router-setup flags', () => {
  it('refuses what would break the rules, naming the flag', async () => {
    expect(await usage(base({ lan: undefined }))).toMatch(/^--lan: .*required/);
    expect(await usage(base({ redirect: undefined }))).toMatch(/^--redirect: .*one of the two/);
    expect(await usage(base({ tproxy: '12346' }))).toMatch(/^--redirect: .*one of the two/);
    expect(await usage(base({ redirect: '70000' }))).toMatch(/^--redirect: /);
    expect(await usage(base({ dns: '12345' }))).toMatch(/^--dns: must differ/);
    // Anything printed into shell or nft text is checked strictly: no quotes, spaces, semicolons.
    expect(await usage(base({ lan: 'br"; reboot' }))).toMatch(/^--lan: .*not an interface name/);
    expect(await usage(base({ uplink: ['eth0'] }))).toMatch(/^--uplink: expected IFACE=GATEWAY/);
    expect(await usage(base({ uplink: ['eth0=$(id)'] }))).toMatch(/^--uplink: gateway .* not an IPv4/);
    expect(await usage(base({ uplink: ['br-lan=192.168.1.1'] }))).toMatch(/^--uplink: br-lan is the LAN/);
    expect(await usage(base({ uplink: ['eth0=192.168.1.1', 'eth0=192.168.1.2'] }))).toMatch(/^--uplink: each interface once/);
    expect(await usage(base({ bypass: ['10.0.0.0/33'] }))).toMatch(/^--bypass: .*not an IP address or CIDR/);
    expect(await usage(base({ bypass: ['example.com'] }))).toMatch(/^--bypass: /);
    expect(await usage(base({ bypassDomain: ['exa mple.com'] }))).toMatch(/^--bypass-domain: /);
    expect(await usage(base({ bypassDomain: ['-bad.com'] }))).toMatch(/^--bypass-domain: /);
    expect(await usage(base({ bypassDevice: ['aa:bb:cc:dd:ee'] }))).toMatch(/^--bypass-device: /);
    expect(await usage(base({ bypassVia: 'wlan0', uplink: ['eth0=192.168.1.1'] }))).toMatch(/^--bypass-via: wlan0 is not one of the --uplink/);
    expect(await usage(base({ iptables: true, bypassDomain: ['netflix.com'] }))).toMatch(/^--iptables: .*need nftables/);
    expect(await usage(base({ server: ['nowhere.invalid'] }))).toMatch(/^--server: cannot resolve "nowhere.invalid"/);
  });

  it('resolves the server (HOST, HOST:PORT, [v6]:PORT) and reads the uplinks’ addresses', async () => {
    const plan = await routerPlan(base({ server: ['vps.example:7000', '[2001:db8::5]:7000', '192.0.2.9'], uplink: ['eth0=192.168.1.1', 'wwan0=10.64.0.1'] }), deps);
    expect(plan.servers).toEqual(['198.51.100.20', '2001:db8::20', '2001:db8::5', '192.0.2.9']);
    expect(plan.uplinks).toEqual([
      { iface: 'eth0', gateway: '192.168.1.1', sources: ['192.168.1.20'] },
      { iface: 'wwan0', gateway: '10.64.0.1', sources: [] },
    ]);
    expect(plan.bypassVia).toBeUndefined(); // nothing bypassed
  });
});

describe('router-setup output', () => {
  const full = base({
    dns: '5353',
    server: ['203.0.113.5', '2001:db8::5'],
    uplink: ['eth0=192.168.1.1', 'wwan0=10.64.0.1'],
    rejectQuic: true,
    bypass: ['198.51.100.0/24'],
    bypassDomain: ['netflix.com'],
    bypassDevice: ['192.168.8.50', 'AA:BB:CC:DD:EE:FF'],
    bypassVia: 'wwan0',
  });

  it('nft: DNS redirected before the local/server exceptions, TCP last; servers and bypass in sets', async () => {
    const nft = await routerSetupText({ ...full, rulesOnly: true }, deps);
    const pre = nft.slice(nft.indexOf('chain prerouting'), nft.indexOf('chain input'));
    const order = ['iifname != "br-lan" return', 'ct mark 0x706c return', 'udp dport 53 redirect to :5353', 'tcp dport 53 redirect to :5353', 'fib daddr type local return', 'ip daddr @servers4 return', 'ip6 daddr @servers6 return', 'meta l4proto tcp redirect to :12345'];
    const at = order.map((r) => pre.indexOf(r));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((x, y) => x - y)).toEqual(at);
    expect(nft).toMatch(/set servers4 \{[^}]*elements = \{ 203\.0\.113\.5 \}/);
    expect(nft).toMatch(/set servers6 \{[^}]*elements = \{ 2001:db8::5 \}/);
    expect(nft).toMatch(/set bypass_net4 \{[^}]*elements = \{ 198\.51\.100\.0\/24 \}/);
    expect(nft).toMatch(/set bypass_mac \{[^}]*elements = \{ aa:bb:cc:dd:ee:ff \}/);
    expect(nft).toMatch(/set bypass_dns4 \{[^}]*flags timeout;/);
    expect(nft).toContain('iifname "br-lan" ct mark != 0x706c udp dport 443 reject');
    expect(nft).toContain('tcp dport 12345 drop');
    expect(nft).toContain('ct mark 0x706c oifname { "eth0", "wwan0" } masquerade');
  });

  it('without --reject-quic, --dns or uplinks, those rules are absent', async () => {
    const nft = await routerSetupText({ ...base(), rulesOnly: true }, deps);
    expect(nft).not.toMatch(/dport 53|udp dport 443|masquerade/);
    expect(nft).toContain('meta l4proto tcp redirect to :12345');
  });

  it('the script: rules, then per-uplink tables and rules, the bypass mark routed by its uplink; --undo removes each', async () => {
    const script = await routerSetupText(full, deps);
    expect(script).toMatch(/^#!\/bin\/sh\n/);
    expect(script).toContain("nft -f - <<'PLAIT_NFT'\n");
    const adds = script.split('\n').filter((l) => l.startsWith('ip rule add '));
    expect(adds).toEqual([
      'ip rule add oif eth0 table 101 priority 1000',
      'ip rule add from 192.168.1.20 table 101 priority 1000',
      'ip rule add oif wwan0 table 102 priority 1001',
      'ip rule add fwmark 0x706c table 102 priority 990',
    ]);
    expect(script).toContain('ip route replace default via 192.168.1.1 dev eth0 table 101');
    const undo = await routerSetupText({ ...full, undo: true }, deps);
    expect(undo).toContain('nft delete table inet plait');
    for (const add of adds) expect(undo).toContain(add.replace('ip rule add', 'ip rule del'));
    expect(undo).toContain('ip route flush table 101');
    expect(undo).toContain('ip route flush table 102');
  });

  it('iptables: the same decisions in its own chains, and the undo unhooks and deletes them', async () => {
    const flags = { ...full, bypassDomain: [], bypass: ['198.51.100.0/24'], server: ['203.0.113.5'], iptables: true };
    const rules = await routerSetupText({ ...flags, rulesOnly: true }, deps);
    expect(rules.split('\n').filter((l) => l === 'COMMIT')).toHaveLength(3);
    expect(rules).toContain('-A PLAIT_PRE -p udp --dport 53 -j REDIRECT --to-ports 5353');
    expect(rules).toContain('-A PLAIT_PRE -d 203.0.113.5 -j RETURN');
    expect(rules.indexOf('--dst-type LOCAL')).toBeLessThan(rules.indexOf('-p tcp -j REDIRECT --to-ports 12345'));
    expect(rules).toContain('-A PLAIT_MARK -m conntrack --ctstate NEW -m mac --mac-source aa:bb:cc:dd:ee:ff -j CONNMARK --set-mark 0x706c');
    const undo = await routerSetupText({ ...flags, undo: true }, deps);
    expect(undo).toContain('iptables -t nat -D PREROUTING -i br-lan -j PLAIT_PRE');
    expect(undo).toContain('iptables -t nat -X PLAIT_PRE');
  });
});

describe('router-setup --tproxy', () => {
  it('marks and TPROXYs LAN TCP in a mangle chain (no NAT redirect), routes the mark locally, and undoes it', async () => {
    const flags = base({ redirect: undefined, tproxy: '12346', dns: '5353' });
    const nft = await routerSetupText({ ...flags, rulesOnly: true }, deps);
    expect(nft).not.toContain('redirect to :12346');
    expect(nft).toContain('udp dport 53 redirect to :5353'); // DNS still by REDIRECT
    const chain = nft.slice(nft.indexOf('chain transparent'));
    const order = ['ct mark 0x706c return', 'fib daddr type local return', 'ip daddr @servers4 return', 'socket transparent 1 meta mark set 0x706d accept', 'tproxy ip to :12346 meta mark set 0x706d accept'];
    const at = order.map((r) => chain.indexOf(r));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((x, y) => x - y)).toEqual(at);
    const script = await routerSetupText(flags, deps);
    expect(script).toContain('ip route replace local 0.0.0.0/0 dev lo table 100');
    expect(script).toContain('ip rule add fwmark 0x706d table 100 priority 980');
    const undo = await routerSetupText({ ...flags, undo: true }, deps);
    expect(undo).toContain('ip rule del fwmark 0x706d table 100 priority 980');
    expect(undo).toContain('ip route flush table 100');
    const ipt = await routerSetupText({ ...flags, iptables: true, rulesOnly: true }, deps);
    expect(ipt).toContain('-A PLAIT_TPROXY -p tcp -j TPROXY --on-port 12346 --tproxy-mark 0x706d/0xffffffff');
    expect(ipt).not.toContain('REDIRECT --to-ports 12346');
  });
});
