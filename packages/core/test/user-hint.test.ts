import { beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { ErrorCode } from '../src/errors.js';
import { ServerHandshake, startHello, type HelloUsers, type RejectStep, type ServerStep } from '../src/handshake.js';
import { HandshakeReader, type HandshakeMessage } from '../src/handshake-messages.js';
import { deriveSecretKeys, type SecretKeys } from '../src/keys.js';
import { ReplayCache } from '../src/replay-cache.js';
import { generateIdentity, identityFromPrivate, openUserHint, USER_HINT_BYTES } from '../src/user-hint.js';

const ALICE = deriveSecretKeys('alice-secret-0123456789abcdef');
const BOB = deriveSecretKeys('bob-secret-0123456789abcdefghij');
const CAROL = deriveSecretKeys('carol-secret-0123456789abcdefg');
const ANON = deriveSecretKeys('anonymous shared secret 0123456');
const WRONG = deriveSecretKeys('not anybody secret 0123456789ab');

function decode(bytes: Uint8Array): HandshakeMessage {
  const r = new HandshakeReader();
  r.push(bytes);
  const m = r.next();
  if (!m) throw new Error('incomplete');
  return m;
}

describe('user hint (PROTOCOL.md 3.2)', () => {
  const id = identityFromPrivate(generateIdentity().privateRaw);
  const other = identityFromPrivate(generateIdentity().privateRaw);
  let clock: VirtualClock;
  let replay: ReplayCache;
  let lookups: number;
  let table: Map<string, { keys: SecretKeys; revoked: boolean }>;
  const users = (): HelloUsers => ({
    identity: id,
    find: (name) => {
      lookups++;
      return table.get(name);
    },
  });
  const server = (anon?: SecretKeys): ServerHandshake =>
    new ServerHandshake({
      ...(anon ? { secretKeys: anon } : {}),
      users: users(),
      clock,
      config: DEFAULT_CONFIG,
      replayCache: replay,
      lookupSession: () => undefined,
    });
  const hello = (keys: SecretKeys, name: string, serverKey = id.publicKey): Uint8Array =>
    startHello(keys, { backup: false, addrId: 0 }, clock, 0, { name, serverKey }).message;

  beforeEach(() => {
    clock = new VirtualClock();
    replay = new ReplayCache(1000, 60_000, clock);
    lookups = 0;
    table = new Map([
      ['alice', { keys: ALICE, revoked: false }],
      ['bob', { keys: BOB, revoked: false }],
      ['carol', { keys: CAROL, revoked: true }],
    ]);
  });

  it('serves two users, each with its own secret, and names the user in the step', () => {
    for (const [keys, name] of [[ALICE, 'alice'], [BOB, 'bob']] as const) {
      const c = startHello(keys, { backup: false, addrId: 0 }, clock, 0, { name, serverKey: id.publicKey });
      const step = server().onMessage(decode(c.message));
      expect(step.kind).toBe('session');
      if (step.kind !== 'session') return;
      expect(step.user).toBe(name);
      // The client accepts the HELLO_ACK: the server used this user's secret.
      const res = c.finish(decode(step.reply));
      expect(res.keys.token).toEqual(step.keys.token);
    }
  });

  it('looks the user up once per HELLO, whatever the table holds (no trial of keys)', () => {
    for (let i = 0; i < 1000; i++) table.set(`u${i}`, { keys: WRONG, revoked: false });
    server().onMessage(decode(hello(BOB, 'bob')));
    server().onMessage(decode(hello(WRONG, 'nobody')));
    expect(lookups).toBe(2);
  });

  it('unknown name, wrong secret, revoked user and a hint for another server: same reply, distinct causes', () => {
    const cases: [Uint8Array, string][] = [
      [hello(WRONG, 'mallory'), 'userUnknown'],
      [hello(WRONG, 'alice'), 'userBadSecret'],
      [hello(CAROL, 'carol'), 'userRevoked'],
      [hello(ALICE, 'alice', other.publicKey), 'userBadHint'],
    ];
    const replies: Uint8Array[] = [];
    for (const [msg, cause] of cases) {
      const step: ServerStep = server().onMessage(decode(msg));
      expect(step.kind).toBe('reject');
      const r = step as RejectStep;
      expect(r.code).toBe(ErrorCode.AUTH_FAILED);
      expect(r.userRefusal?.cause).toBe(cause);
      replies.push(r.message);
    }
    // Everything but the 32-byte proof MAC (bound to each request) is identical.
    const shape = (m: Uint8Array): string => Buffer.from(m.subarray(0, m.length - 32)).toString('hex');
    for (const r of replies) {
      expect(r.length).toBe(replies[0]!.length);
      expect(shape(r)).toBe(shape(replies[0]!));
    }
    // A real user's client cannot verify it either (made with a decoy key), so it is unproven for all.
    const c = startHello(CAROL, { backup: false, addrId: 0 }, clock, 0, { name: 'carol', serverKey: id.publicKey });
    const step = server().onMessage(decode(c.message)) as RejectStep;
    expect(() => c.finish(decode(step.message))).toThrow(expect.objectContaining({ verified: false }));
  });

  it('the name is not on the wire, and the hint differs on every HELLO', () => {
    const a = hello(ALICE, 'alice');
    const b = hello(ALICE, 'alice');
    expect(Buffer.from(a).includes(Buffer.from('alice'))).toBe(false);
    const ha = (decode(a) as { hint?: Uint8Array }).hint;
    const hb = (decode(b) as { hint?: Uint8Array }).hint;
    expect(ha?.length).toBe(USER_HINT_BYTES);
    expect(Buffer.from(ha!).equals(Buffer.from(hb!))).toBe(false);
    // Short and long names give hints of one size.
    expect(a.length).toBe(hello(ALICE, 'a-much-longer-user-name-here-32b').length);
  });

  it('a hint moved to another HELLO does not open (bound to nonce, E_c and the header)', () => {
    const a = decode(hello(ALICE, 'alice')) as HandshakeMessage & { hint?: Uint8Array; nonce: Uint8Array; ephemeral: Uint8Array };
    const b = decode(hello(ALICE, 'alice')) as HandshakeMessage & { nonce: Uint8Array; ephemeral: Uint8Array };
    const prefix = (m: HandshakeMessage): Uint8Array => m.body.subarray(0, 75);
    expect(openUserHint(id, a.hint!, { helloPrefix: prefix(a), nonce: a.nonce, clientEphemeral: a.ephemeral })).toBe('alice');
    expect(openUserHint(id, a.hint!, { helloPrefix: prefix(b), nonce: b.nonce, clientEphemeral: b.ephemeral })).toBeUndefined();
  });

  it('tampering with the hint fails the HELLO', () => {
    const m = hello(ALICE, 'alice');
    m[3 + 80] = (m[3 + 80] ?? 0) ^ 1;
    const step = server().onMessage(decode(m)) as RejectStep;
    expect(step.code).toBe(ErrorCode.AUTH_FAILED);
    expect(step.userRefusal?.cause).toBe('userBadHint');
  });

  it('the anonymous secret keeps working next to users (wire-compatible HELLO); without it, such a HELLO is refused', () => {
    const c = startHello(ANON, { backup: false, addrId: 0 }, clock);
    expect(c.message.length).toBe(3 + 107);
    const step = server(ANON).onMessage(decode(c.message));
    expect(step.kind).toBe('session');
    if (step.kind === 'session') expect(step.user).toBeUndefined();
    const refused = server().onMessage(decode(startHello(ANON, { backup: false, addrId: 0 }, clock).message)) as RejectStep;
    expect(refused.code).toBe(ErrorCode.AUTH_FAILED);
    expect(refused.userRefusal?.cause).toBe('userMissing');
  });

  it('replayed user HELLO -> REPLAY, proven with the user secret', () => {
    const c = startHello(ALICE, { backup: false, addrId: 0 }, clock, 0, { name: 'alice', serverKey: id.publicKey });
    expect(server().onMessage(decode(c.message)).kind).toBe('session');
    const again = server().onMessage(decode(c.message)) as RejectStep;
    expect(again.code).toBe(ErrorCode.REPLAY);
    expect(() => c.finish(decode(again.message))).toThrow(expect.objectContaining({ verified: true }));
  });
});
