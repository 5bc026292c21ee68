/**
 * UDP and DNS through the real CLI, on loopback: a SOCKS5 UDP ASSOCIATE
 * client (written here, RFC 1928 section 7, with RFC 1929 auth) talking to
 * a UDP echo server, and `--dns` answering from a tiny fake resolver that the
 * server was told to use with --dns-upstream.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectTcp, killAll, readExact, runPlait, sleep, startClient, startServer, waitUntil, type ClientHandle, type ServerHandle } from './cli-helpers.js';

const cleanup: (() => void)[] = [];
let server: ServerHandle;
let client: ClientHandle;
let echoPort: number;
let dnsUpstreamPort: number;
let dnsPort: number;
const upstreamSeen: { udp: number; tcp: number } = { udp: 0, tcp: 0 };

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  cleanup.push(() => s.close());
  return s;
}

/** An answer to `q` (same ID and question) with one A record 192.0.2.53, padded to `pad` extra bytes of TXT-ish junk. */
function dnsAnswer(q: Buffer): Buffer {
  const h = Buffer.from(q.subarray(0, 12));
  h[2] = 0x81; // QR, RD
  h[3] = 0x80; // RA, NOERROR
  h.writeUInt16BE(1, 6); // ANCOUNT
  const question = q.subarray(12);
  const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 53]);
  return Buffer.concat([h, question, rr]);
}

function dnsQuery(id: number, name: string): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h[2] = 0x01; // RD
  h.writeUInt16BE(1, 4); // QDCOUNT
  return Buffer.concat([h, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

beforeAll(async () => {
  const echo = await udpSocket();
  echo.on('message', (m, r) => echo.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
  echoPort = echo.address().port;
  // The fake resolver, on UDP and TCP at one port.
  const tcp = net.createServer((s) => {
    let b = Buffer.alloc(0);
    s.on('data', (c) => {
      b = Buffer.concat([b, c]);
      while (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) {
        upstreamSeen.tcp++;
        const a = dnsAnswer(b.subarray(2, 2 + b.readUInt16BE(0)));
        b = b.subarray(2 + b.readUInt16BE(0));
        s.write(Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]));
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
  cleanup.push(() => tcp.close());
  dnsUpstreamPort = (tcp.address() as net.AddressInfo).port;
  // The same port number for UDP (free for UDP on an idle loopback; a clash fails loudly here).
  const up = dgram.createSocket('udp4');
  await new Promise<void>((r, j) => {
    up.once('error', j);
    up.bind(dnsUpstreamPort, '127.0.0.1', () => r());
  });
  cleanup.push(() => up.close());
  up.on('message', (m, r) => {
    upstreamSeen.udp++;
    up.send(dnsAnswer(m), r.port, r.address);
  });

  const secret = randomBytes(32).toString('base64url');
  server = await startServer({ secret, allowPrivate: true, extraArgs: ['--dns-upstream', `127.0.0.1:${dnsUpstreamPort}`] });
  client = await startClient({
    secret,
    servers: [server.addr],
    binds: ['127.0.0.1', '127.0.0.2'],
    socks: true,
    extraArgs: ['--proxy-auth', 'alice:sesame', '--dns', '127.0.0.1:0'],
  });
  const line = client.logLines().find((l) => l.msg === 'DNS (UDP and TCP) listening');
  dnsPort = Number(String(line?.dns).split(':').pop());
  expect(dnsPort).toBeGreaterThan(0);
}, 60_000);

afterAll(async () => {
  if (client?.proc.exited) console.error(`plait client exited:\n${client.proc.dump()}`);
  if (server?.proc.exited) console.error(`plait server exited:\n${server.proc.dump()}`);
  for (const f of cleanup.splice(0)) f();
  await killAll();
});

/** SOCKS5 greeting + RFC 1929 auth + UDP ASSOCIATE; returns the control socket and the relay's address. */
async function associate(user = 'alice', pass = 'sesame'): Promise<{ ctl: net.Socket; relayPort: number; rep: number }> {
  const ctl = await connectTcp(client.socksPort!);
  ctl.write(Buffer.from([5, 1, 2]));
  expect([...(await readExact(ctl, 2))]).toEqual([5, 2]);
  ctl.write(Buffer.concat([Buffer.from([1, user.length]), Buffer.from(user), Buffer.from([pass.length]), Buffer.from(pass)]));
  const auth = await readExact(ctl, 2);
  if (auth[1] !== 0) return { ctl, relayPort: 0, rep: -1 };
  ctl.resume();
  ctl.write(Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
  const reply = await readExact(ctl, 10);
  return { ctl, relayPort: reply.readUInt16BE(8), rep: reply[1]! };
}

function udpRequest(atyp: number, addr: Buffer, port: number, data: Buffer, frag = 0): Buffer {
  const head = atyp === 3 ? Buffer.concat([Buffer.from([0, 0, frag, 3, addr.length]), addr]) : Buffer.concat([Buffer.from([0, 0, frag, atyp]), addr]);
  return Buffer.concat([head, Buffer.from([port >> 8, port & 0xff]), data]);
}

function collectReplies(s: dgram.Socket): Buffer[] {
  const got: Buffer[] = [];
  s.on('message', (m) => got.push(m));
  return got;
}

describe('SOCKS5 UDP ASSOCIATE through the session', () => {
  it('round-trips datagrams to IPv4, IPv4-mapped IPv6 and domain targets, with the source in each reply', async () => {
    const { ctl, relayPort, rep } = await associate();
    expect(rep).toBe(0);
    expect(relayPort).toBeGreaterThan(0);
    const me = await udpSocket();
    const got = collectReplies(me);
    const v4 = Buffer.from([127, 0, 0, 1]);
    const mapped = Buffer.from('00000000000000000000ffff7f000001', 'hex');
    const N = 60;
    for (let i = 0; i < N; i++) {
      const target = i % 3 === 0 ? udpRequest(1, v4, echoPort, Buffer.from(`v4-${i}`)) : i % 3 === 1 ? udpRequest(4, mapped, echoPort, Buffer.from(`v6-${i}`)) : udpRequest(3, Buffer.from('localhost'), echoPort, Buffer.from(`dn-${i}`));
      me.send(target, relayPort, '127.0.0.1');
      await sleep(2);
    }
    // Loss is allowed for datagrams, but loopback should lose (almost) none.
    await waitUntil('echo replies', () => got.length >= N * 0.9 || undefined, 15_000);
    for (const m of got) {
      // RSV RSV FRAG ATYP=1 127.0.0.1 echoPort
      expect([...m.subarray(0, 8)]).toEqual([0, 0, 0, 1, 127, 0, 0, 1]);
      expect(m.readUInt16BE(8)).toBe(echoPort);
      expect(m.subarray(10).toString()).toMatch(/^echo:(v4|v6|dn)-\d+$/);
    }
    ctl.destroy();
  }, 30_000);

  it('needs the same credentials as TCP, drops fragments, strangers, malformed and oversize datagrams with a count, and ends with the TCP connection', async () => {
    const wrong = await associate('alice', 'wrong');
    expect(wrong.rep).toBe(-1);
    wrong.ctl.destroy();

    const { ctl, relayPort } = await associate();
    const me = await udpSocket();
    const got = collectReplies(me);
    const v4 = Buffer.from([127, 0, 0, 1]);
    me.send(udpRequest(1, v4, echoPort, Buffer.from('first')), relayPort, '127.0.0.1');
    await waitUntil('the first reply', () => got.length === 1 || undefined);
    // A stranger (another port of the same host, after the client's port was fixed) and a fragment.
    const stranger = await udpSocket();
    const strangerGot = collectReplies(stranger);
    stranger.send(udpRequest(1, v4, echoPort, Buffer.from('stranger')), relayPort, '127.0.0.1');
    me.send(udpRequest(1, v4, echoPort, Buffer.from('frag'), 1), relayPort, '127.0.0.1');
    me.send(Buffer.from([0, 0, 0, 9, 1, 2]), relayPort, '127.0.0.1');
    // Above the 16 KiB datagram payload limit: dropped by the client's session, counted.
    me.send(udpRequest(1, v4, echoPort, Buffer.alloc(20_000, 1)), relayPort, '127.0.0.1');
    await waitUntil('the drops to be counted', async () => {
      const st = await client.stats();
      const c = st.counters ?? {};
      const sc = st.sessions[0]?.counters ?? {};
      return (c.socksUdpDroppedForeign ?? 0) >= 1 && (c.socksUdpDroppedFrag ?? 0) >= 1 && (c.socksUdpDroppedMalformed ?? 0) >= 1 && (sc.datagramsDroppedTooLarge ?? 0) >= 1;
    });
    await sleep(200);
    expect(got.length).toBe(1);
    expect(strangerGot).toEqual([]);

    // The association lives as long as its TCP connection.
    ctl.destroy();
    await sleep(300);
    me.send(udpRequest(1, v4, echoPort, Buffer.from('after')), relayPort, '127.0.0.1');
    await sleep(500);
    expect(got.length).toBe(1);
    const sst = await server.stats();
    expect((sst.counters ?? {}).udpFlowsOpened).toBeGreaterThanOrEqual(2);
  }, 30_000);
});

describe('--dns through the session', () => {
  it('answers over UDP with the client\'s own ID, via the server\'s --dns-upstream', async () => {
    const me = await udpSocket();
    const got = collectReplies(me);
    const ids = [0x1234, 0xbeef, 7];
    for (const id of ids) me.send(dnsQuery(id, `host${id}.example`), dnsPort, '127.0.0.1');
    await waitUntil('three answers', () => got.length === 3 || undefined);
    expect(got.map((m) => m.readUInt16BE(0)).sort()).toEqual([...ids].sort());
    for (const m of got) {
      expect(m[2]! & 0x80).toBe(0x80);
      expect([...m.subarray(m.length - 4)]).toEqual([192, 0, 2, 53]);
    }
    expect(upstreamSeen.udp).toBeGreaterThanOrEqual(3);
  }, 20_000);

  it('answers over TCP (length-prefixed, pipelined) and refuses a bad length prefix', async () => {
    const before = upstreamSeen.tcp;
    const s = await connectTcp(dnsPort);
    const q1 = dnsQuery(0x0101, 'a.example');
    const q2 = dnsQuery(0x0202, 'b.example');
    const framed = (q: Buffer): Buffer => Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
    s.write(Buffer.concat([framed(q1), framed(q2)]));
    const answers: number[] = [];
    for (let i = 0; i < 2; i++) {
      const len = (await readExact(s, 2)).readUInt16BE(0);
      const a = await readExact(s, len);
      answers.push(a.readUInt16BE(0));
      expect([...a.subarray(a.length - 4)]).toEqual([192, 0, 2, 53]);
    }
    expect(answers.sort()).toEqual([0x0101, 0x0202]);
    // The server asked the resolver over TCP too.
    expect(upstreamSeen.tcp - before).toBe(2);
    s.destroy();

    // A query followed at once by FIN still gets its answer, then the connection closes.
    const once = await connectTcp(dnsPort);
    once.end(framed(dnsQuery(0x0303, 'c.example')));
    const len = (await readExact(once, 2)).readUInt16BE(0);
    expect((await readExact(once, len)).readUInt16BE(0)).toBe(0x0303);
    once.destroy();

    const bad = await connectTcp(dnsPort);
    // The forwarder hangs up (our side is half-open: its FIN is enough).
    const closed = new Promise<void>((r) => {
      bad.once('end', () => r());
      bad.once('close', () => r());
    });
    bad.on('error', () => undefined);
    bad.resume();
    bad.write(Buffer.from([0, 5, 1, 2, 3, 4, 5]));
    await closed;
    const c = (await client.stats()).counters ?? {};
    expect(c.dnsDroppedMalformed).toBeGreaterThanOrEqual(1);
    expect(c.dnsAnswers).toBeGreaterThanOrEqual(6);
  }, 20_000);
});

describe('UDP and DNS flags', () => {
  it('a bad --dns-upstream or --udp-idle-timeout exits 2 with one line naming the flag', async () => {
    const secret = randomBytes(32).toString('base64url');
    for (const [flag, value] of [
      ['--dns-upstream', 'resolver.example:53'],
      ['--dns-upstream', '127.0.0.1:0'],
      ['--udp-idle-timeout', '0'],
    ] as const) {
      const r = await runPlait(['server', '--listen', '127.0.0.1:0', '--secret', secret, flag, value]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(flag);
    }
    const r = await runPlait(['client', '--server', '127.0.0.1:1', '--secret', secret, '--dns', 'nonsense']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('--dns');
  }, 30_000);
});
