/**
 * Record ciphers: known-answer tests of the record layer's AEAD primitive,
 * whole records with each cipher, and the cipher's negotiation in HELLO/JOIN
 * (PROTOCOL.md sections 3, 4, 5).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { chooseAutoCipher, cipherFlags, cipherOfFlags, CIPHER_NAMES, type CipherName } from '../src/cipher.js';
import { VirtualClock } from '../src/clock.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { ErrorCode, PlaitError, RemoteError } from '../src/errors.js';
import { ServerHandshake, startHello, startJoin, type JoinableSession, type RejectStep, type ServerStep } from '../src/handshake.js';
import { encodeReject, HandshakeReader, HELLO_MAC_OFFSET, MsgType, type HandshakeMessage } from '../src/handshake-messages.js';
import { deriveSecretKeys, helloMac, type SessionKeys } from '../src/keys.js';
import { RECORD_OVERHEAD, RecordOpener, RecordSealer } from '../src/record.js';
import { aeadDecryptor, aeadEncryptor } from '../src/record-aead.js';
import { NonceLog, ReplayCache } from '../src/replay-cache.js';
import { Acceptor } from '../src/acceptor.js';
import { makeConfig } from '../src/config.js';
import { connectSession, joinSession, sessionCipher } from '../src/connector.js';
import { AEAD_VECTORS as VECTORS, MemoryLink } from '@plait/testkit';
import type { Session } from '../src/session.js';
import { settle } from './harness.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Buffer => Buffer.from(s.replace(/[\s:]/g, ''), 'hex');

// ---- known answers ---------------------------------------------------------

describe('record AEAD primitive: known answers', () => {
  for (const v of VECTORS) {
    it(`${v.name}: seals to the published ciphertext and tag`, () => {
      const c = aeadEncryptor(v.cipher, unhex(v.key), unhex(v.iv));
      const pt = unhex(v.pt);
      c.setAAD(unhex(v.aad), { plaintextLength: pt.length });
      const ct = Buffer.concat([c.update(pt), c.final()]);
      expect(hex(ct)).toBe(hex(unhex(v.ct)));
      expect(hex(c.getAuthTag())).toBe(hex(unhex(v.tag)));
    });

    it(`${v.name}: opens the published ciphertext, refuses it with a flipped tag bit`, () => {
      const open = (tag: Buffer): Buffer => {
        const d = aeadDecryptor(v.cipher, unhex(v.key), unhex(v.iv));
        const ct = unhex(v.ct);
        d.setAAD(unhex(v.aad), { plaintextLength: ct.length });
        d.setAuthTag(tag);
        return Buffer.concat([d.update(ct), d.final()]);
      };
      expect(hex(open(unhex(v.tag)))).toBe(hex(unhex(v.pt)));
      const bad = unhex(v.tag);
      bad[0]! ^= 0x01;
      expect(() => open(bad)).toThrow();
    });
  }
});

// ---- whole records ---------------------------------------------------------

const KEY = new Uint8Array(32).fill(0x42);

/** Section 5 with node:crypto directly, any cipher. */
function referenceSeal(cipher: CipherName, key: Uint8Array, counter: bigint, pt: Uint8Array): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(pt.length + 16);
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(counter, 4);
  const c = createCipheriv(cipher as 'aes-256-gcm', key, iv, { authTagLength: 16 });
  c.setAAD(header);
  return Buffer.concat([header, c.update(pt), c.final(), c.getAuthTag()]);
}

function drain(o: RecordOpener): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let m = o.next(); m; m = o.next()) out.push(m);
  return out;
}

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e instanceof PlaitError ? e.code : -1;
  }
}

describe.each(CIPHER_NAMES)('records with %s', (cipher) => {
  it('seal matches section 5 computed directly (nonce = counter, AAD = length)', () => {
    const s = new RecordSealer(KEY, cipher);
    expect(s.cipher).toBe(cipher);
    const hello = new TextEncoder().encode('hello');
    expect(hex(s.seal(hello))).toBe(hex(referenceSeal(cipher, KEY, 0n, hello)));
    expect(hex(s.seal(Uint8Array.of(1, 2, 3)))).toBe(hex(referenceSeal(cipher, KEY, 1n, Uint8Array.of(1, 2, 3))));
  });

  it('round-trips full records (1 byte, 64 KiB, parts) split at every chunk boundary', () => {
    const s = new RecordSealer(KEY, cipher);
    const big = randomBytes(65536);
    const recs = Buffer.concat([
      s.seal(Uint8Array.of(7)),
      s.seal(big),
      s.sealParts([Uint8Array.of(1, 2), new Uint8Array(0), randomBytes(3000)]),
    ]);
    for (const cut of [1, 3, 4, 5, 21, 1000, 65537 + RECORD_OVERHEAD]) {
      const o = new RecordOpener(KEY, undefined, cipher);
      o.push(recs.subarray(0, cut));
      o.push(recs.subarray(cut));
      const got = drain(o);
      expect(got.length).toBe(3);
      expect(hex(got[0]!)).toBe('07');
      expect(hex(got[1]!)).toBe(hex(big));
      expect(got[2]!.length).toBe(3002);
      expect(o.counter).toBe(3);
    }
  });

  it('a tampered record (length, ciphertext or tag) fails with DECRYPT_FAILED and the opener stays failed', () => {
    const rec = new RecordSealer(KEY, cipher).seal(randomBytes(100));
    // [offset, xor]: the length 116 made 112 (AAD and tag position move), a ciphertext byte, the tag's last.
    for (const [at, x] of [[3, 0x04], [4, 0x01], [50, 0x80], [rec.length - 1, 0x01]] as const) {
      const bad = Buffer.from(rec);
      bad[at]! ^= x;
      const o = new RecordOpener(KEY, undefined, cipher);
      o.push(bad);
      expect(codeOf(() => drain(o)), `byte ${at}`).toBe(ErrorCode.DECRYPT_FAILED);
      expect(codeOf(() => o.next())).toBe(ErrorCode.DECRYPT_FAILED);
    }
    // Untampered, it opens.
    const o = new RecordOpener(KEY, undefined, cipher);
    o.push(rec);
    expect(drain(o)[0]!.length).toBe(100);
  });

  it('the other cipher with the same key cannot open it', () => {
    const other: CipherName = cipher === 'aes-256-gcm' ? 'chacha20-poly1305' : 'aes-256-gcm';
    const o = new RecordOpener(KEY, undefined, other);
    o.push(new RecordSealer(KEY, cipher).seal(Uint8Array.of(1, 2, 3)));
    expect(codeOf(() => drain(o))).toBe(ErrorCode.DECRYPT_FAILED);
  });
});

it('an unknown cipher name is refused when a sealer or opener is made', () => {
  expect(codeOf(() => new RecordSealer(KEY, 'aes-128-cbc' as CipherName))).toBe(ErrorCode.INTERNAL);
  expect(codeOf(() => new RecordOpener(KEY, undefined, 'rc4' as CipherName))).toBe(ErrorCode.INTERNAL);
});

describe('cipher ids and auto', () => {
  it('AES-256-GCM is id 0 (flags unchanged from before ciphers), ChaCha20-Poly1305 id 1 in bits 1-2', () => {
    expect(cipherFlags('aes-256-gcm')).toBe(0);
    expect(cipherFlags('chacha20-poly1305')).toBe(0x02);
    expect(cipherOfFlags(0x03)).toBe('chacha20-poly1305');
    expect(cipherOfFlags(0x01)).toBe('aes-256-gcm');
    expect(cipherOfFlags(0x04)).toBeUndefined();
    expect(cipherOfFlags(0x06)).toBeUndefined();
  });

  it('auto: AES when the CPU says it has AES instructions, ChaCha when it says not; unknown CPUs by arch', () => {
    expect(chooseAutoCipher(true, 'arm')).toBe('aes-256-gcm');
    expect(chooseAutoCipher(false, 'x64')).toBe('chacha20-poly1305');
    expect(chooseAutoCipher(undefined, 'x64')).toBe('aes-256-gcm');
    expect(chooseAutoCipher(undefined, 'arm64')).toBe('aes-256-gcm');
    expect(chooseAutoCipher(undefined, 'arm')).toBe('chacha20-poly1305');
    expect(chooseAutoCipher(undefined, 'mips')).toBe('chacha20-poly1305');
  });
});

// ---- negotiation -----------------------------------------------------------

const SECRET = deriveSecretKeys('correct horse battery staple 42');

function decode(bytes: Uint8Array): HandshakeMessage {
  const r = new HandshakeReader();
  r.push(bytes);
  const m = r.next();
  if (!m) throw new Error('incomplete message');
  return m;
}

class TestSession implements JoinableSession {
  readonly nonces = new NonceLog(DEFAULT_CONFIG.joinNonces);
  constructor(
    readonly keys: SessionKeys,
    readonly cipher: CipherName,
  ) {}
  canAddSubflow(): boolean {
    return true;
  }
  rememberJoinNonce(rA: Uint8Array): boolean {
    return this.nonces.checkAndAdd(rA);
  }
}

let clock: VirtualClock;
let sessions: Map<string, TestSession>;
let replayCache: ReplayCache;

function server(ciphers?: readonly CipherName[]): ServerHandshake<TestSession> {
  return new ServerHandshake<TestSession>({
    secretKeys: SECRET,
    clock,
    config: DEFAULT_CONFIG,
    replayCache,
    lookupSession: (token) => sessions.get(hex(token)),
    ...(ciphers ? { ciphers } : {}),
  });
}

function asReject(step: ServerStep<TestSession>): RejectStep {
  if (step.kind !== 'reject') throw new Error(`expected a reject, got ${step.kind}`);
  return step;
}

/** A full HELLO with `cipher`; the session is registered for JOINs. */
function establish(cipher: CipherName): { clientKeys: SessionKeys; session: TestSession; clientCipher: CipherName } {
  const c = startHello(SECRET, { backup: false, addrId: 0, cipher }, clock);
  const step = server().onMessage(decode(c.message));
  if (step.kind !== 'session') throw new Error(`expected session, got ${step.kind}`);
  expect(step.cipher).toBe(cipher);
  const res = c.finish(decode(step.reply));
  // Records sealed by one side open at the other with the negotiated cipher, both ways.
  const up = new RecordOpener(step.subflowKeys.recv, undefined, step.cipher);
  up.push(new RecordSealer(res.subflowKeys.send, res.cipher).seal(Uint8Array.of(1)));
  expect(hex(up.next()!)).toBe('01');
  const session = new TestSession(step.keys, step.cipher);
  sessions.set(hex(step.keys.token), session);
  return { clientKeys: res.keys, session, clientCipher: res.cipher };
}

beforeEach(() => {
  clock = new VirtualClock();
  replayCache = ReplayCache.forConfig(DEFAULT_CONFIG, clock);
  sessions = new Map();
});

describe('cipher negotiation in HELLO', () => {
  it('a HELLO asking for ChaCha20-Poly1305 makes a ChaCha session on both sides; the default stays AES', () => {
    expect(establish('chacha20-poly1305').clientCipher).toBe('chacha20-poly1305');
    expect(establish('aes-256-gcm').clientCipher).toBe('aes-256-gcm');
    const plain = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    expect(plain.message[4]).toBe(0);
    const step = server().onMessage(decode(plain.message));
    expect(step.kind === 'session' && step.cipher).toBe('aes-256-gcm');
  });

  it('the cipher bits are covered by mac_c: flipping them in transit is AUTH_FAILED (no downgrade)', () => {
    for (const cipher of CIPHER_NAMES) {
      const c = startHello(SECRET, { backup: false, addrId: 0, cipher }, clock);
      const tampered = c.message.slice();
      tampered[3 + 1]! ^= 0x02; // flags byte: chacha <-> aes
      const r = asReject(server().onMessage(decode(tampered)));
      expect(r.code).toBe(ErrorCode.AUTH_FAILED);
    }
  });

  it('a server restricted to one cipher refuses the other with a proven CIPHER refusal naming the fix', () => {
    const c = startHello(SECRET, { backup: false, addrId: 0, cipher: 'chacha20-poly1305' }, clock);
    const r = asReject(server(['aes-256-gcm']).onMessage(decode(c.message)));
    expect(r.code).toBe(ErrorCode.CIPHER);
    expect(r.reason).toMatch(/does not accept chacha20-poly1305.*--cipher aes-256-gcm/);
    // The client reports it as a verified refusal with the server's reason.
    let err: unknown;
    try {
      c.finish(decode(r.message));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe(ErrorCode.CIPHER);
    expect((err as RemoteError).verified).toBe(true);
    expect((err as RemoteError).message).toMatch(/--cipher aes-256-gcm/);

    const a = startHello(SECRET, { backup: false, addrId: 0, cipher: 'aes-256-gcm' }, clock);
    expect(asReject(server(['chacha20-poly1305']).onMessage(decode(a.message))).code).toBe(ErrorCode.CIPHER);
    const ok = startHello(SECRET, { backup: false, addrId: 0, cipher: 'chacha20-poly1305' }, clock);
    expect(server(['chacha20-poly1305']).onMessage(decode(ok.message)).kind).toBe('session');
  });

  it('an unknown cipher id (2, 3) is CIPHER, not BAD_MESSAGE; a reserved bit above them is BAD_MESSAGE', () => {
    // Build authentic HELLOs with the raw flags, as a newer client would.
    for (const [flags, code] of [
      [0x04, ErrorCode.CIPHER],
      [0x06, ErrorCode.CIPHER],
      [0x08, ErrorCode.BAD_MESSAGE],
    ] as const) {
      const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
      const body = c.message.slice(3);
      body[1] = flags;
      // Re-MAC so the refusal is about the flags, not the MAC.
      const macd = startHelloWithBody(body);
      let got: number | undefined;
      try {
        got = asReject(server().onMessage(decode(macd))).code;
      } catch (e) {
        got = e instanceof PlaitError ? e.code : -1; // the reader refuses reserved bits itself
      }
      expect(got).toBe(code);
    }
  });
});

/** A HELLO with this body, its mac_c recomputed (as an authentic newer client would send it). */
function startHelloWithBody(body: Uint8Array): Uint8Array {
  body.set(helloMac(SECRET.authKey, body.subarray(0, HELLO_MAC_OFFSET)), HELLO_MAC_OFFSET);
  const out = new Uint8Array(3 + body.length);
  out.set([MsgType.HELLO, body.length >>> 8, body.length & 0xff]);
  out.set(body, 3);
  return out;
}

describe('cipher of a JOIN', () => {
  it('a JOIN on a ChaCha session uses ChaCha: both sides agree and records open', () => {
    const { clientKeys, session } = establish('chacha20-poly1305');
    const j = startJoin(clientKeys, { backup: false, addrId: 1, cipher: 'chacha20-poly1305' }, SECRET.authKey);
    expect(j.message[4]).toBe(0x02);
    const s = server();
    const ack = s.onMessage(decode(j.message));
    if (ack.kind !== 'reply') throw new Error(`expected reply, got ${ack.kind}`);
    const res = j.onJoinAck(decode(ack.message));
    const done = s.onMessage(decode(res.confirm));
    if (done.kind !== 'joined') throw new Error(`expected joined, got ${done.kind}`);
    expect(done.session).toBe(session);
    expect(done.cipher).toBe('chacha20-poly1305');
    expect(res.cipher).toBe('chacha20-poly1305');
    const down = new RecordOpener(res.subflowKeys.recv, undefined, res.cipher);
    down.push(new RecordSealer(done.subflowKeys.send, done.cipher).seal(Uint8Array.of(9)));
    expect(hex(down.next()!)).toBe('09');
  });

  it('a JOIN whose cipher differs from the session\'s is refused with a proven CIPHER', () => {
    const { clientKeys } = establish('chacha20-poly1305');
    const j = startJoin(clientKeys, { backup: false, addrId: 1, cipher: 'aes-256-gcm' }, SECRET.authKey);
    const r = asReject(server().onMessage(decode(j.message)));
    expect(r.code).toBe(ErrorCode.CIPHER);
    expect(r.reason).toMatch(/session uses chacha20-poly1305/);
    let err: unknown;
    try {
      j.onJoinAck(decode(r.message));
    } catch (e) {
      err = e;
    }
    expect((err as RemoteError).code).toBe(ErrorCode.CIPHER);
    expect((err as RemoteError).verified).toBe(true);

    // And the other way: an AES session refuses a ChaCha JOIN.
    const aes = establish('aes-256-gcm');
    const j2 = startJoin(aes.clientKeys, { backup: false, addrId: 1, cipher: 'chacha20-poly1305' });
    expect(asReject(server().onMessage(decode(j2.message))).code).toBe(ErrorCode.CIPHER);
  });
});

// ---- over channels: Acceptor, connectSession, joinSession ------------------

async function chachaPair(ciphers?: readonly CipherName[]): Promise<{ clock: VirtualClock; acceptor: Acceptor; serverSessions: Session[] }> {
  const vclock = new VirtualClock();
  const serverSessions: Session[] = [];
  const acceptor = new Acceptor({
    secretKeys: SECRET,
    config: makeConfig({}),
    clock: vclock,
    maxSessions: 4,
    graceMs: 30_000,
    onSession: (s) => {
      serverSessions.push(s);
      return { stream: () => undefined };
    },
    ...(ciphers ? { ciphers } : {}),
  });
  return { clock: vclock, acceptor, serverSessions };
}

describe('cipher over channels', () => {
  it('connectSession with ChaCha20-Poly1305: both ends seal and open with it, and a JOIN repeats it by default', async () => {
    const { clock: vc, acceptor, serverSessions } = await chachaPair();
    const l0 = new MemoryLink(vc, { delayMs: 2 }, 'l0');
    void acceptor.accept(l0.b);
    const { session } = await settle(vc, connectSession(l0.a, { secretKeys: SECRET, config: makeConfig({}), clock: vc, cipher: 'chacha20-poly1305' }));
    expect(sessionCipher(session)).toBe('chacha20-poly1305');
    const l1 = new MemoryLink(vc, { delayMs: 2 }, 'l1');
    void acceptor.accept(l1.b);
    await settle(vc, joinSession(session, l1.a, { clock: vc, addrId: 1, secretKeys: SECRET }));
    const server = serverSessions[0]!;
    for (const s of [session, server]) {
      expect(s.liveSubflows.length).toBe(2);
      for (const sf of s.liveSubflows) {
        expect(sf.sealer.cipher).toBe('chacha20-poly1305');
        expect(sf.opener.cipher).toBe('chacha20-poly1305');
      }
    }
    expect(acceptor.counters.joinOk).toBe(1);
  });

  it('a JOIN asking for another cipher than its session is refused with CIPHER (counted as rejectCipher)', async () => {
    const { clock: vc, acceptor } = await chachaPair();
    const l0 = new MemoryLink(vc, { delayMs: 2 }, 'l0');
    void acceptor.accept(l0.b);
    const { session } = await settle(vc, connectSession(l0.a, { secretKeys: SECRET, config: makeConfig({}), clock: vc, cipher: 'chacha20-poly1305' }));
    const l1 = new MemoryLink(vc, { delayMs: 2 }, 'l1');
    void acceptor.accept(l1.b);
    let code: number | undefined;
    try {
      await settle(vc, joinSession(session, l1.a, { clock: vc, addrId: 1, secretKeys: SECRET, cipher: 'aes-256-gcm' }));
    } catch (e) {
      code = e instanceof PlaitError ? e.code : -1;
    }
    expect(code).toBe(ErrorCode.CIPHER);
    expect(acceptor.counters.rejectCipher).toBe(1);
  });

  it('an Acceptor restricted to AES refuses a ChaCha HELLO with CIPHER, and takes an AES one', async () => {
    const { clock: vc, acceptor } = await chachaPair(['aes-256-gcm']);
    const l0 = new MemoryLink(vc, { delayMs: 2 }, 'l0');
    void acceptor.accept(l0.b);
    let err: unknown;
    try {
      await settle(vc, connectSession(l0.a, { secretKeys: SECRET, config: makeConfig({}), clock: vc, cipher: 'chacha20-poly1305' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe(ErrorCode.CIPHER);
    expect((err as RemoteError).message).toMatch(/--cipher aes-256-gcm/);
    const l1 = new MemoryLink(vc, { delayMs: 2 }, 'l1');
    void acceptor.accept(l1.b);
    const { session } = await settle(vc, connectSession(l1.a, { secretKeys: SECRET, config: makeConfig({}), clock: vc }));
    expect(session.liveSubflows[0]!.sealer.cipher).toBe('aes-256-gcm');
  });
});

it('an old server (cipher bits reserved) refusing a ChaCha HELLO: the client error says what to do', async () => {
  const vc = new VirtualClock();
  const link = new MemoryLink(vc, { delayMs: 2 }, 'old');
  // What a pre-cipher server sends: its reader refuses flags 0x02 before the MAC, unproven.
  link.b.setHandlers({
    data: () => {
      link.b.write(encodeReject(ErrorCode.BAD_MESSAGE, 'HELLO has reserved flag bits set (0x2)'));
      link.b.end();
    },
    drain: () => undefined,
    close: () => undefined,
  });
  let err: unknown;
  try {
    await settle(vc, connectSession(link.a, { secretKeys: SECRET, config: makeConfig({}), clock: vc, cipher: 'chacha20-poly1305' }));
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(RemoteError);
  expect((err as RemoteError).code).toBe(ErrorCode.BAD_MESSAGE);
  expect((err as RemoteError).verified).toBe(false);
  expect((err as RemoteError).message).toMatch(/reserved flag bits.*too old for --cipher chacha20-poly1305.*--cipher aes-256-gcm/);
});
