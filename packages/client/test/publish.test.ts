/**
 * Published ports (--publish, PROTOCOL.md 7.1) between a real PlaitServer
 * and PlaitClient on loopback: the server's allow rule (the user's list; the
 * anonymous user's --allow-publish), ports held by another user, takeover by
 * a newer session of the same user, withdrawal on reload, listeners closed
 * when a user is revoked or a session ends, and the connection cap.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { connectSession, deriveSecretKeys, ErrorCode, generateIdentity, identityFromPrivate, makeConfig, PlaitError, PublishCode, realClock, type ClientUser, type Session } from '@plait/core';
import { SocketChannel } from '@plait/node';
import { PlaitServer, UserDirectory, type PublishServerOptions, type ServerUser } from '@plait/server';
import { freeFixedPort, startEchoServer, type EchoServer } from '@plait/testkit';
import { PlaitClient } from '../src/client.js';
import { parsePublishSpec, type PublishSpec } from '../src/publish.js';
import { echoRoundTrip, sha, waitFor } from './socket-helpers.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const identityRaw = generateIdentity().privateRaw;
const identity = identityFromPrivate(identityRaw);
const serverKey = identity.publicKey;
const secrets: Record<string, string> = { alice: 'alice-secret-0123456789abcdef', bob: 'bob-secret-0123456789abcdefgh', mallory: 'mallory-secret-0123456789abcd' };
const anonymous = deriveSecretKeys('anonymous-secret-0123456789abc');

/** Ports for publications: below the ephemeral range, so no outgoing connection on the machine takes one meanwhile. */
const handedOut = new Set<number>();
async function freePort(): Promise<number> {
  for (;;) {
    const p = await freeFixedPort();
    if (handedOut.has(p)) continue; // never the same port twice in this file
    handedOut.add(p);
    return p;
  }
}

function table(lists: Record<string, number[]>): Map<string, ServerUser> {
  return new Map(Object.entries(lists).map(([name, publish]) => [name, { keys: deriveSecretKeys(secrets[name]!), revoked: false, publish }]));
}

async function startServer(lists: Record<string, number[]>, publish: PublishServerOptions = {}, graceMs = 30_000) {
  const users = new UserDirectory(identity, table(lists));
  const server = new PlaitServer({
    listen: { host: '127.0.0.1', port: 0 },
    graceMs,
    secretKeys: anonymous,
    users,
    publish: { bindHost: '127.0.0.1', ...publish },
  });
  const addr = await server.listen();
  cleanups.push(() => server.close());
  return { server, users, port: addr.port };
}

async function startClient(serverPort: number, user: string | undefined, publish: PublishSpec[]): Promise<PlaitClient> {
  const who: ClientUser | undefined = user === undefined ? undefined : { name: user, serverKey };
  const client = new PlaitClient({
    servers: [{ host: '127.0.0.1', port: serverPort }],
    secretKeys: user === undefined ? anonymous : deriveSecretKeys(secrets[user]!),
    ...(who ? { user: who } : {}),
    sources: { binds: ['127.0.0.1'], vias: [], backups: [] },
    publish,
  });
  cleanups.push(() => client.close());
  await client.start();
  return client;
}

const stateOf = (c: PlaitClient, port: number) => c.stats().publications?.find((p) => p.serverPort === port);

async function waitState(c: PlaitClient, port: number, state: string): Promise<void> {
  await waitFor(() => stateOf(c, port)?.state === state, `publication ${port} ${state} (is ${JSON.stringify(stateOf(c, port))})`);
}

/** Connect to a published port and echo `data` through it (the echo server is on the client's side). */
async function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((res, rej) => {
    s.once('connect', () => res());
    s.once('error', rej);
  });
  try {
    return await echoRoundTrip(s, data);
  } finally {
    s.destroy();
  }
}

/** Resolves with the error code of a connection attempt that fails (ECONNREFUSED once nothing listens). */
function connectError(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

async function echo(): Promise<EchoServer> {
  const e = await startEchoServer();
  cleanups.push(() => e.close());
  return e;
}

describe('parsePublishSpec', () => {
  it('SERVERPORT:HOST:PORT with a name, IPv4 or [IPv6] host', () => {
    expect(parsePublishSpec('8080:nas.lan:80')).toEqual({ serverPort: 8080, target: { host: 'nas.lan', port: 80 } });
    expect(parsePublishSpec('2222:192.168.1.5:22')).toEqual({ serverPort: 2222, target: { host: '192.168.1.5', port: 22 } });
    expect(parsePublishSpec('8443:[fd00::5]:443')).toEqual({ serverPort: 8443, target: { host: 'fd00::5', port: 443 } });
  });

  it('refuses what is not one, naming the part', () => {
    expect(() => parsePublishSpec('8080:80')).toThrow(/expected SERVERPORT:HOST:PORT/);
    expect(() => parsePublishSpec('0:nas:80')).toThrow(/server port "0"/);
    expect(() => parsePublishSpec('8080:nas:70000')).toThrow(/target port "70000"/);
    expect(() => parsePublishSpec('8080:[nas]:80')).toThrow(/not a bracketed IPv6/);
    expect(() => parsePublishSpec('1:2:3:4')).toThrow(/expected SERVERPORT:HOST:PORT/);
  });
});

describe('published ports', () => {
  it("reaches a host on the client's side through the user's listed port; an unlisted port and another user's port are refused", async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const env = await startServer({ alice: [p1], bob: [p2] });
    const target = await echo();
    const alice = await startClient(env.port, 'alice', [
      { serverPort: p1, target: { host: '127.0.0.1', port: target.port } },
      { serverPort: p3, target: { host: '127.0.0.1', port: target.port } },
      { serverPort: p2, target: { host: '127.0.0.1', port: target.port } },
    ]);
    await waitState(alice, p1, 'open');
    await waitState(alice, p3, 'refused');
    await waitState(alice, p2, 'refused');
    expect(stateOf(alice, p3)?.code).toBe('NOT_ALLOWED');
    expect(stateOf(alice, p2)?.code).toBe('NOT_ALLOWED');
    expect(env.server.publisher.listening).toEqual([p1]);
    expect(await connectError(p3)).toBe('ECONNREFUSED');

    const data = randomBytes(600_000);
    expect(sha(await roundTrip(p1, data))).toBe(sha(data));
    await waitFor(() => (stateOf(alice, p1)?.connectionsTotal ?? 0) === 1 && stateOf(alice, p1)?.connections === 0, 'the connection counted and closed on the client');
    expect(stateOf(alice, p1)?.bytesIn).toBe(data.length);
    const row = env.server.publications().find((p) => p.port === p1)!;
    expect(row).toMatchObject({ user: 'alice', state: 'open', connectionsTotal: 1 });
    expect(row.bytesIn).toBe(data.length);
    expect(env.server.counters.publishRefused).toBe(2);
    // Inbound bytes are the user's bytes (figures and caps).
    expect(env.server.userFigures()!.find((u) => u.user === 'alice')!.bytesDown).toBeGreaterThanOrEqual(data.length);
  });

  it('a port listed for two users (an operator mistake) goes to the first; the other user hears IN_USE', async () => {
    const p = await freePort();
    const env = await startServer({ alice: [p], mallory: [p] });
    const target = await echo();
    const alice = await startClient(env.port, 'alice', [{ serverPort: p, target: { host: '127.0.0.1', port: target.port } }]);
    await waitState(alice, p, 'open');
    const mallory = await startClient(env.port, 'mallory', [{ serverPort: p, target: { host: '127.0.0.1', port: 9 } }]);
    await waitState(mallory, p, 'refused');
    expect(stateOf(mallory, p)?.code).toBe('IN_USE');
    // Alice still gets the connections.
    const data = randomBytes(10_000);
    expect(sha(await roundTrip(p, data))).toBe(sha(data));
  });

  it('a port another program holds is IN_USE, not a crash and not a retry loop', async () => {
    const busy = net.createServer();
    const p = await new Promise<number>((r) => busy.listen(0, '127.0.0.1', () => r((busy.address() as net.AddressInfo).port)));
    cleanups.push(() => new Promise<void>((r) => busy.close(() => r())));
    const env = await startServer({ alice: [p] });
    const alice = await startClient(env.port, 'alice', [{ serverPort: p, target: { host: '127.0.0.1', port: 9 } }]);
    await waitState(alice, p, 'refused');
    expect(stateOf(alice, p)).toMatchObject({ code: 'IN_USE' });
    expect(env.server.counters.publishRefused).toBe(1);
    expect(alice.currentSession?.isClosed).toBe(false);
  });

  it('a newer session of the same user takes the port over; the older one hears TAKEN and does not take it back', async () => {
    const p = await freePort();
    const env = await startServer({ alice: [p] });
    const first = await echo();
    const second = await echo();
    const a1 = await startClient(env.port, 'alice', [{ serverPort: p, target: { host: '127.0.0.1', port: first.port } }]);
    await waitState(a1, p, 'open');
    const a2 = await startClient(env.port, 'alice', [{ serverPort: p, target: { host: '127.0.0.1', port: second.port } }]);
    await waitState(a2, p, 'open');
    await waitState(a1, p, 'taken');
    const data = randomBytes(1000);
    expect(sha(await roundTrip(p, data))).toBe(sha(data));
    expect(second.connections).toBe(1);
    expect(first.connections).toBe(0);
    // The older session asking again (a resent `pub`) is told TAKEN, and the port stays with the newer one.
    a1.currentSession!.requestPublish(p);
    await new Promise((r) => setTimeout(r, 100));
    expect(env.server.publications().filter((x) => x.port === p).map((x) => x.state).sort()).toEqual(['open', 'taken']);
    expect(sha(await roundTrip(p, data))).toBe(sha(data));
    expect(second.connections).toBe(2);
  });

  it("revoking a user closes its listener at once (connections reset) and frees the port; a reload that drops a port withdraws it", async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const env = await startServer({ alice: [p1], bob: [p2] });
    const target = await echo();
    const alice = await startClient(env.port, 'alice', [{ serverPort: p1, target: { host: '127.0.0.1', port: target.port } }]);
    const bob = await startClient(env.port, 'bob', [{ serverPort: p2, target: { host: '127.0.0.1', port: target.port } }]);
    await waitState(alice, p1, 'open');
    await waitState(bob, p2, 'open');
    // A connection in progress through alice's port.
    const live = net.connect({ host: '127.0.0.1', port: p1 });
    let liveClosed = false;
    let liveError = '';
    // Reading, as a real client does: a socket nobody reads from may never notice the reset.
    live.on('data', () => undefined);
    live.on('error', (e: NodeJS.ErrnoException) => void (liveError = e.code ?? e.message));
    live.on('close', () => void (liveClosed = true));
    live.write('hello');
    await waitFor(() => (stateOf(alice, p1)?.connections ?? 0) === 1, 'the connection carried in');

    // SIGHUP after removing alice: what run-server does.
    env.users.replace(identity, table({ bob: [p2] }));
    env.server.acceptor.revokeSessions((u) => u === 'alice');
    env.server.reviewPublications();
    await waitFor(() => liveClosed, "alice's connection reset");
    // The server resets it (SO_LINGER 0); the peer mostly reads ECONNRESET, now and then (seen about
    // once in 40 runs on loopback) a plain end of stream. Either way the connection is gone.
    expect(['ECONNRESET', '']).toContain(liveError);
    expect(await connectError(p1)).toBe('ECONNREFUSED');
    expect(env.server.publisher.listening).toEqual([p2]);

    // Bob stays, but a reload that takes p2 from his list withdraws it.
    env.users.replace(identity, table({ bob: [] }));
    expect(env.server.reviewPublications()).toBe(1);
    await waitState(bob, p2, 'refused');
    expect(stateOf(bob, p2)?.code).toBe('NOT_ALLOWED');
    expect(await connectError(p2)).toBe('ECONNREFUSED');
    expect(bob.currentSession?.isClosed).toBe(false);
  });

  it('the session ending (client gone, its grace over) closes the listener and frees the port', async () => {
    const p = await freePort();
    // The client vanishes with its links: the server keeps the session for its grace (short here), then ends it.
    const env = await startServer({ alice: [p] }, {}, 300);
    const alice = await startClient(env.port, 'alice', [{ serverPort: p, target: { host: '127.0.0.1', port: 9 } }]);
    await waitState(alice, p, 'open');
    alice.close();
    await waitFor(() => env.server.sessions().length === 0, 'the server session ended');
    expect(await connectError(p)).toBe('ECONNREFUSED');
    expect(env.server.publisher.listening).toEqual([]);
  });

  it('a new session (the server ended the old one) publishes the ports again by itself', async () => {
    const p = await freePort();
    const env = await startServer({ alice: [p] });
    const target = await echo();
    const alice = await startClient(env.port, 'alice', [{ serverPort: p, target: { host: '127.0.0.1', port: target.port } }]);
    await waitState(alice, p, 'open');
    const before = alice.currentSession;
    env.server.sessions()[0]!.close(new PlaitError(ErrorCode.INTERNAL, 'test: session ended by the server'));
    await waitFor(() => alice.currentSession !== undefined && alice.currentSession !== before, 'a new session');
    await waitState(alice, p, 'open');
    expect(alice.counters.sessions).toBe(2);
    const data = randomBytes(50_000);
    expect(sha(await roundTrip(p, data))).toBe(sha(data));
  });

  it('the anonymous --secret user publishes nothing unless --allow-publish lists the port', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const env = await startServer({}, { anonymousPorts: [p1] });
    const target = await echo();
    const c = await startClient(env.port, undefined, [
      { serverPort: p1, target: { host: '127.0.0.1', port: target.port } },
      { serverPort: p2, target: { host: '127.0.0.1', port: target.port } },
    ]);
    await waitState(c, p1, 'open');
    await waitState(c, p2, 'refused');
    expect(stateOf(c, p2)?.reason).toMatch(/--allow-publish/);
  });

  it('connections over --publish-max-conns are reset at once; a dead target resets the connection', async () => {
    const p = await freePort();
    const env = await startServer({ alice: [p] }, { maxConnections: 2 });
    // A target that accepts and holds connections open.
    const held: net.Socket[] = [];
    const hold = net.createServer((s) => held.push(s));
    const hp = await new Promise<number>((r) => hold.listen(0, '127.0.0.1', () => r((hold.address() as net.AddressInfo).port)));
    cleanups.push(() => new Promise<void>((r) => (held.forEach((s) => s.destroy()), hold.close(() => r()))));
    const alice = await startClient(env.port, 'alice', [{ serverPort: p, target: { host: '127.0.0.1', port: hp } }]);
    await waitState(alice, p, 'open');
    const conns = [net.connect({ host: '127.0.0.1', port: p }), net.connect({ host: '127.0.0.1', port: p })];
    for (const c of conns) c.on('error', () => undefined);
    cleanups.push(() => conns.forEach((c) => c.destroy()));
    await waitFor(() => held.length === 2, 'two connections reach the target');
    const third = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: p });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.on('close', () => resolve('closed'));
      s.resume(); // reading, so a reset is seen whatever arrived before it
    });
    expect(['ECONNRESET', 'closed']).toContain(third);
    expect(env.server.counters.inboundRefused).toBe(1);
    expect(held.length).toBe(2);

    // The target going away: new connections are reset (the client's connect fails).
    held.forEach((s) => s.destroy());
    await new Promise<void>((r) => hold.close(() => r()));
    await waitFor(() => env.server.publications()[0]?.connections === 0, 'the held connections closed');
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: p });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.on('close', () => resolve('closed'));
      s.resume(); // reading, so a reset is seen whatever arrived before it
    });
    expect(['ECONNRESET', 'closed']).toContain(refused);
    await waitFor(() => (stateOf(alice, p)?.connectionsFailed ?? 0) >= 1, 'the failed target counted');
    expect(PublishCode.OPEN).toBe(0);
  });
});

/** A bare client session (anonymous secret) that does what the test says, not what PlaitClient would. */
async function rawSession(serverPort: number): Promise<{ session: Session; states: [number, number][] }> {
  const sock = net.connect({ host: '127.0.0.1', port: serverPort });
  await new Promise<void>((res, rej) => {
    sock.once('connect', () => res());
    sock.once('error', rej);
  });
  const { session } = await connectSession(new SocketChannel(sock), { secretKeys: anonymous, config: makeConfig(), clock: realClock });
  cleanups.push(() => session.close());
  const states: [number, number][] = [];
  session.setEvents({ publishState: (p, c) => states.push([p, c]) });
  return { session, states };
}

describe('published ports against a client that misbehaves', () => {
  it('an inbound connection the client never connects is reset after the accept timeout', async () => {
    const p = await freePort();
    const env = await startServer({}, { anonymousPorts: [p], acceptTimeoutMs: 300 });
    const { session, states } = await rawSession(env.port);
    const seen: number[] = [];
    // Takes the stream and never answers (no accept, no reset).
    session.setEvents({ publishState: (port, c) => states.push([port, c]), inbound: (s) => seen.push(s.id) });
    session.requestPublish(p);
    await waitFor(() => states.length === 1, 'the answer');
    expect(states).toEqual([[p, PublishCode.OPEN]]);
    const outcome = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: p });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.on('close', () => resolve('closed'));
      s.resume(); // reading, so a reset is seen whatever arrived before it
      s.write('GET / HTTP/1.0\r\n\r\n');
    });
    expect(['ECONNRESET', 'closed']).toContain(outcome);
    expect(seen).toHaveLength(1);
    expect(env.server.counters.inboundTimeouts).toBe(1);
    await waitFor(() => env.server.publications()[0]?.connections === 0, 'the server side closed too');
    expect(env.server.publications()[0]).toMatchObject({ connections: 0, connectionsTotal: 1 });
  });

  it('asking for port after port: refusals are answered 64 times, then ignored; the session goes on', async () => {
    const env = await startServer({}, { anonymousPorts: [] });
    const { session, states } = await rawSession(env.port);
    for (let port = 1000; port < 1200; port++) session.requestPublish(port);
    await waitFor(() => env.server.counters.publishRefused === 200, 'every request seen');
    await waitFor(() => states.length === 64, '64 answers');
    await new Promise((r) => setTimeout(r, 100));
    expect(states.length).toBe(64);
    expect(states.every(([, c]) => c === PublishCode.NOT_ALLOWED)).toBe(true);
    expect(env.server.counters.publishRefusalsIgnored).toBe(136);
    expect(session.isClosed).toBe(false);
  });

  it('at most 16 publications per session: the 17th is LIMIT', async () => {
    const ports: number[] = [];
    while (ports.length < 17) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const env = await startServer({}, { anonymousPorts: ports });
    const { session, states } = await rawSession(env.port);
    for (const p of ports) session.requestPublish(p);
    await waitFor(() => states.length === 17, '17 answers');
    expect(states.filter(([, c]) => c === PublishCode.OPEN)).toHaveLength(16);
    expect(states.filter(([, c]) => c === PublishCode.LIMIT)).toEqual([[ports[16], PublishCode.LIMIT]]);
    expect(env.server.publisher.listening).toHaveLength(16);
    // A repeated request (a resent `pub`) is answered with the state again, and binds nothing more.
    session.requestPublish(ports[0]!);
    await waitFor(() => states.length === 18, 'the repeat answered');
    expect(states[17]).toEqual([ports[0], PublishCode.OPEN]);
    // Repeats share the refusals' budget: 64 answers that change nothing, then silence.
    for (let i = 0; i < 100; i++) session.requestPublish(ports[0]!);
    // The server counts as it reads; its answers may still be on their way: wait for both.
    await waitFor(() => env.server.counters.publishRefusalsIgnored === 38 && states.length === 16 + 64, 'the rest ignored');
    await new Promise((r) => setTimeout(r, 100));
    expect(states.length).toBe(16 + 64);
    expect(session.isClosed).toBe(false);
  });
});
