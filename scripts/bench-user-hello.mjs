#!/usr/bin/env node
/**
 * What a HELLO costs a server with named users (PROTOCOL.md 3.2), with 10
 * and with 100,000 users in the table: a stranger's HELLO (an unknown name),
 * a wrong secret for a real name, and a valid HELLO (up to HELLO_ACK and the
 * session keys). In-process, one core, ServerHandshake from packages/core/dist;
 * HELLOs are made beforehand so only the server's work is timed. The figure
 * that matters is the ratio 100,000 / 10 in one run (should be ~1: O(1)).
 *
 * Usage: npx tsc -b && node scripts/bench-user-hello.mjs [--n 3000]
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const core = await import(pathToFileURL(resolve(root, 'packages/core/dist/index.js')).href);
const { ServerHandshake } = await import(pathToFileURL(resolve(root, 'packages/core/dist/handshake.js')).href);
const { HandshakeReader } = await import(pathToFileURL(resolve(root, 'packages/core/dist/handshake-messages.js')).href);
const { ReplayCache } = await import(pathToFileURL(resolve(root, 'packages/core/dist/replay-cache.js')).href);
const { deriveSecretKeys, generateIdentity, identityFromPrivate, makeConfig, realClock, startHello } = core;

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('n', 3000);
const config = makeConfig({});
const id = identityFromPrivate(generateIdentity().privateRaw);
const aliceKeys = deriveSecretKeys('alice-secret-0123456789abcdefgh');
const wrongKeys = deriveSecretKeys('wrong-secret-0123456789abcdefgh');

function table(size) {
  const m = new Map();
  m.set('alice', { keys: aliceKeys, revoked: false });
  // Derived keys for every user, as the server holds them after loading the file.
  for (let i = 0; m.size < size; i++) m.set(`user${i}`, { keys: deriveSecretKeys(`secret-of-user-${i}-0123456789`), revoked: false });
  return m;
}
function decode(bytes) {
  const r = new HandshakeReader();
  r.push(bytes);
  return r.next();
}
function hellos(keys, name) {
  const out = [];
  for (let i = 0; i < N; i++) out.push(decode(startHello(keys, { backup: false, addrId: 0 }, realClock, 0, { name, serverKey: id.publicKey }).message));
  return out;
}
function time(users, msgs, expect) {
  const replay = new ReplayCache(N * 2, 60_000, realClock);
  const usersView = { identity: id, find: (n) => users.get(n) };
  const t0 = process.hrtime.bigint();
  for (const m of msgs) {
    const hs = new ServerHandshake({ users: usersView, clock: realClock, config, replayCache: replay, lookupSession: () => undefined });
    const step = hs.onMessage(m);
    if (step.kind !== expect) throw new Error(`expected ${expect}, got ${step.kind} ${step.reason ?? ''}`);
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / msgs.length;
}

const kinds = [
  ['stranger (unknown name)', () => hellos(wrongKeys, 'mallory'), 'reject'],
  ['wrong secret, real name', () => hellos(wrongKeys, 'alice'), 'reject'],
  ['valid HELLO (to HELLO_ACK + keys)', () => hellos(aliceKeys, 'alice'), 'session'],
];
const small = table(10);
const big = table(100_000);
console.log(`| HELLO (${N} each, µs per HELLO, server side) | 10 users | 100,000 users | ratio |`);
console.log('|---|---|---|---|');
for (const [label, make, expect] of kinds) {
  // Warm up, then alternate so drift hits both sizes alike.
  time(small, make().slice(0, 200), expect);
  let a = 0;
  let b = 0;
  for (let rep = 0; rep < 2; rep++) {
    a += time(small, make(), expect);
    b += time(big, make(), expect);
  }
  console.log(`| ${label} | ${(a / 2).toFixed(1)} | ${(b / 2).toFixed(1)} | ${(b / a).toFixed(2)} |`);
}
