import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { EgressPolicy, formatIp, parseCidr, parseIp } from '../src/egress-policy.js';

describe('EgressPolicy defaults', () => {
  const policy = new EgressPolicy({ ownAddresses: [] });

  const denied = [
    '0.0.0.0',
    '0.1.2.3',
    '10.0.0.1',
    '10.255.255.255',
    '100.64.0.1',
    '100.127.255.254',
    '127.0.0.1',
    '127.255.255.254',
    '169.254.169.254',
    '172.16.0.1',
    '172.31.255.255',
    '192.0.0.8',
    '192.168.1.1',
    '198.18.0.1',
    '198.19.255.255',
    '224.0.0.1',
    '239.255.255.250',
    '240.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'fe80::1%eth0',
    'febf:ffff::1',
    'ff02::1',
    'ff0e::1',
    // IPv4-mapped, in dotted and hex spellings, and case variants.
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::FFFF:7F00:0001',
    '0:0:0:0:0:ffff:7f00:1',
    '::ffff:10.1.2.3',
    '::ffff:a9fe:a9fe',
    '::ffff:0.0.0.0',
    // IPv4-compatible (deprecated) and SIIT-translated forms.
    '::127.0.0.1',
    '::7f00:1',
    '::a00:1',
    '::ffff:0:7f00:1',
    // NAT64 well-known prefix embedding a denied IPv4 address.
    '64:ff9b::127.0.0.1',
    '64:ff9b::7f00:1',
    '64:ff9b::a9fe:a9fe',
    '64:ff9b::c0a8:101',
    // 6to4 embedding a denied IPv4 address.
    '2002:7f00:1::',
    '2002:c0a8:101::1',
  ];
  for (const a of denied) {
    it(`denies ${a}`, () => {
      const v = policy.check(a);
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.reason.length).toBeGreaterThan(0);
    });
  }

  const allowed = [
    '1.1.1.1',
    '8.8.8.8',
    '9.255.255.255',
    '11.0.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '126.255.255.255',
    '128.0.0.1',
    '169.253.255.255',
    '172.15.255.255',
    '172.32.0.0',
    '192.0.1.0',
    '192.167.255.255',
    '192.169.0.0',
    '198.17.255.255',
    '198.20.0.0',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '2001:4860:4860::8888',
    '::2:0:0:1',
    'fbff:ffff::1',
    'fe00::1',
    '::ffff:8.8.8.8',
    '::ffff:808:808',
    '64:ff9b::8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ];
  for (const a of allowed) {
    it(`allows ${a}`, () => expect(policy.check(a)).toEqual({ ok: true }));
  }

  for (const a of ['example.com', '', '127.1', '[::1]', '1.2.3.4.5', '::ffff:1.2.3']) {
    it(`refuses non-address ${JSON.stringify(a)}`, () => {
      const v = policy.check(a);
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(/not an IP address/);
    });
  }

  it('explains denials with the range and the embedded address', () => {
    const v = policy.check('::ffff:7f00:1');
    expect(v).toEqual({ ok: false, reason: '127.0.0.1 is loopback (127.0.0.0/8)' });
    const n = policy.check('64:ff9b::a00:1');
    expect(n).toEqual({ ok: false, reason: '10.0.0.1 (embedded in 64:ff9b::a00:1) is private (10.0.0.0/8)' });
  });
});

describe('EgressPolicy own addresses', () => {
  it('denies given own addresses in any spelling, and only those', () => {
    const p = new EgressPolicy({ ownAddresses: ['203.0.113.10', '2001:db8::10'] });
    expect(p.check('203.0.113.10').ok).toBe(false);
    expect(p.check('::ffff:203.0.113.10').ok).toBe(false);
    expect(p.check('2001:db8:0:0:0:0:0:10').ok).toBe(false);
    expect(p.check('203.0.113.11').ok).toBe(true);
    expect(p.check('2001:db8::11').ok).toBe(true);
    const v = p.check('203.0.113.10');
    if (!v.ok) expect(v.reason).toMatch(/this server/);
  });

  it("denies every address of this machine's interfaces by default", () => {
    const p = new EgressPolicy();
    const mine = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .map((i) => i.address);
    expect(mine.length).toBeGreaterThan(0);
    for (const a of mine) expect(p.check(a).ok, a).toBe(false);
  });

  it('rejects an own address that is not an address', () => {
    expect(() => new EgressPolicy({ ownAddresses: ['nope'] })).toThrow(/invalid own address "nope"/);
  });
});

describe('EgressPolicy allowPrivate and allow', () => {
  it('allowPrivate opens private, loopback, link-local and own addresses, but not reserved ranges', () => {
    const p = new EgressPolicy({ allowPrivate: true, ownAddresses: ['203.0.113.10'] });
    for (const a of ['10.1.1.1', '127.0.0.1', '::ffff:127.0.0.1', '169.254.1.1', '172.16.5.5', '192.168.0.1', '100.64.1.1', '198.18.0.1', '::1', 'fd00::1', 'fe80::1', '64:ff9b::7f00:1', '203.0.113.10']) {
      expect(p.check(a), a).toEqual({ ok: true });
    }
    for (const a of ['0.0.0.0', '224.0.0.1', '255.255.255.255', '240.0.0.1', '::', 'ff02::1', '192.0.0.1']) {
      expect(p.check(a).ok, a).toBe(false);
    }
  });

  it('allow opens exactly the listed ranges, in mapped spellings too', () => {
    const p = new EgressPolicy({ allow: ['10.1.0.0/16', '127.0.0.1', 'fd00:1::/32'], ownAddresses: [] });
    expect(p.check('10.1.2.3').ok).toBe(true);
    expect(p.check('::ffff:10.1.2.3').ok).toBe(true);
    expect(p.check('::ffff:a01:203').ok).toBe(true);
    expect(p.check('64:ff9b::10.1.2.3').ok).toBe(true);
    expect(p.check('10.2.0.1').ok).toBe(false);
    expect(p.check('127.0.0.1').ok).toBe(true);
    expect(p.check('127.0.0.2').ok).toBe(false);
    expect(p.check('fd00:1:ffff::1').ok).toBe(true);
    expect(p.check('fd00:2::1').ok).toBe(false);
  });

  it('allow can open an own address and a reserved range explicitly', () => {
    const p = new EgressPolicy({ allow: ['203.0.113.10/32', '224.0.0.0/4'], ownAddresses: ['203.0.113.10'] });
    expect(p.check('203.0.113.10').ok).toBe(true);
    expect(p.check('224.1.2.3').ok).toBe(true);
  });

  it('allowing a NAT64 prefix does not open the denied IPv4 addresses embedded in it', () => {
    const p = new EgressPolicy({ allow: ['64:ff9b::/96'], ownAddresses: [] });
    expect(p.check('64:ff9b::7f00:1').ok).toBe(false);
    expect(p.check('64:ff9b::808:808').ok).toBe(true);
  });

  it('rejects a bad allow entry at construction', () => {
    expect(() => new EgressPolicy({ allow: ['10.0.0.0/33'] })).toThrow(/10\.0\.0\.0\/33/);
  });
});

describe('parseCidr', () => {
  const ok: [string, 4 | 6, number, string][] = [
    ['10.0.0.0/8', 4, 8, '10.0.0.0/8'],
    ['0.0.0.0/0', 4, 0, '0.0.0.0/0'],
    ['192.0.2.7', 4, 32, '192.0.2.7/32'],
    ['192.0.2.7/32', 4, 32, '192.0.2.7/32'],
    [' 172.16.0.0/12 ', 4, 12, '172.16.0.0/12'],
    ['::/0', 6, 0, '::/0'],
    ['::1', 6, 128, '::1/128'],
    ['2001:DB8::/32', 6, 32, '2001:db8::/32'],
    ['fe80::/10', 6, 10, 'fe80::/10'],
    ['::ffff:10.0.0.0/104', 6, 104, '10.0.0.0/104'],
  ];
  for (const [s, family, prefix, text] of ok) {
    it(`parses ${JSON.stringify(s)}`, () => {
      const c = parseCidr(s);
      expect({ family: c.family, prefix: c.prefix, text: c.text }).toEqual({ family, prefix, text });
    });
  }

  const bad: [string, RegExp][] = [
    ['', /not an IPv4 or IPv6 address/],
    ['10.0.0/8', /"10\.0\.0" is not an IPv4 or IPv6 address/],
    ['example.com/8', /not an IPv4 or IPv6 address/],
    ['10.0.0.0/', /prefix length must be a number from 0 to 32/],
    ['10.0.0.0/33', /from 0 to 32/],
    ['10.0.0.0/-1', /from 0 to 32/],
    ['10.0.0.0/8/8', /from 0 to 32/],
    ['10.0.0.0/ 8', /from 0 to 32/],
    ['::/129', /from 0 to 128/],
    ['10.0.0.1/8', /host bits are set; did you mean 10\.0\.0\.0\/8\?/],
    ['2001:db8::1/32', /did you mean 2001:db8::\/32\?/],
    ['fe80::1%eth0/64', /not an IPv4 or IPv6 address/],
  ];
  for (const [s, message] of bad) {
    it(`rejects ${JSON.stringify(s)}`, () => {
      expect(() => parseCidr(s)).toThrow(message);
      expect(() => parseCidr(s)).toThrow(/^invalid CIDR/);
    });
  }
});

describe('parseIp / formatIp', () => {
  const cases: [string, string][] = [
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:0:3:4:5:6:7:8', '1:0:3:4:5:6:7:8'],
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
  ];
  for (const [input, text] of cases) {
    it(`${input} -> ${text}`, () => {
      const n = parseIp(input);
      expect(n).not.toBeNull();
      if (n !== null) expect(formatIp(n)).toBe(text);
    });
  }
  it('maps IPv4 to ::ffff:0:0/96', () => {
    expect(parseIp('1.2.3.4')).toBe(0xffff01020304n);
    expect(parseIp('::ffff:1.2.3.4')).toBe(parseIp('1.2.3.4'));
  });
});
