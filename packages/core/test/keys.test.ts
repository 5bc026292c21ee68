import { createHash, createHmac, createPrivateKey, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ErrorCode, PlaitError } from '../src/errors.js';
import {
  constantTimeEqual,
  deriveSecretKeys,
  deriveSessionKeys,
  generateEphemeral,
  helloAckMac,
  helloMac,
  joinHmacA,
  joinHmacB,
  subflowKeys,
  tokenFromKey,
  x25519,
} from '../src/keys.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (n: number, f: (i: number) => number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => f(i) & 0xff);
const hk = (ikm: Uint8Array, salt: Uint8Array | string, info: Uint8Array | string, len: number): Buffer =>
  Buffer.from(hkdfSync('sha256', ikm, salt, info, len));
/** HKDF-Expand for L <= 32 is T(1) = HMAC(prk, info || 0x01) (RFC 5869). */
const expand32 = (prk: Uint8Array, info: string): Buffer =>
  createHmac('sha256', prk).update(info).update(Uint8Array.of(1)).digest();

// Fixed inputs shared by the known-answer tests.
const SECRET = 'plait-test-secret-0123456789';
const DH = bytes(32, (i) => i + 1);
const HELLO = bytes(107, (i) => i);
const HELLO_ACK = bytes(96, (i) => 255 - i);
const N1 = bytes(32, () => 0xaa);
const N2 = bytes(32, () => 0xbb);
const RA = bytes(32, () => 0x11);
const RB = bytes(32, () => 0x22);

describe('deriveSecretKeys', () => {
  it('matches HKDF(S, "plait-v1", auth|psk) computed with node:crypto', () => {
    const k = deriveSecretKeys(SECRET);
    expect(hex(k.authKey)).toBe(hex(hk(Buffer.from(SECRET), 'plait-v1', 'auth', 32)));
    expect(hex(k.pskKey)).toBe(hex(hk(Buffer.from(SECRET), 'plait-v1', 'psk', 32)));
  });

  it('pins literal vectors', () => {
    const k = deriveSecretKeys(SECRET);
    expect(hex(k.authKey)).toBe('1ab43acd982eaadb211db27d6c6479ccf233f8e3b85fdeaea8ced274f34937eb');
    expect(hex(k.pskKey)).toBe('f734886f97e9e760cdf3b8555e60c9553433b767388a62cc7d3971df1a739180');
  });

  it('uses the UTF-8 bytes of a string secret (not decoded)', () => {
    const s = 'ünïcödé-secret-é✓';
    expect(hex(deriveSecretKeys(s).authKey)).toBe(hex(deriveSecretKeys(new TextEncoder().encode(s)).authKey));
    expect(hex(deriveSecretKeys(s).authKey)).toBe(hex(hk(Buffer.from(s, 'utf8'), 'plait-v1', 'auth', 32)));
  });

  it('refuses secrets shorter than 16 bytes, counting bytes not characters', () => {
    expect(() => deriveSecretKeys('short')).toThrowError(/at least 16/);
    try {
      deriveSecretKeys(new Uint8Array(15));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(PlaitError);
      expect((e as PlaitError).code).toBe(ErrorCode.INTERNAL);
    }
    expect(() => deriveSecretKeys(new Uint8Array(16))).not.toThrow();
    // 8 characters, 16 UTF-8 bytes.
    expect(() => deriveSecretKeys('éééééééé')).not.toThrow();
  });
});

describe('deriveSessionKeys', () => {
  const { pskKey } = deriveSecretKeys(SECRET);
  const keys = deriveSessionKeys(DH, pskKey, HELLO, HELLO_ACK);

  it('matches the section 2 schedule computed with node:crypto', () => {
    const transcript = createHash('sha256').update(HELLO).update(HELLO_ACK).digest();
    const master = hk(DH, pskKey, Buffer.concat([Buffer.from('plait-v1 master'), transcript]), 32);
    const keyA = expand32(master, 'plait-v1 key-a');
    const keyB = expand32(master, 'plait-v1 key-b');
    expect(hex(keys.master)).toBe(hex(master));
    expect(hex(keys.keyA)).toBe(hex(keyA));
    expect(hex(keys.keyB)).toBe(hex(keyB));
    expect(hex(keys.token)).toBe(hex(createHash('sha256').update(keyB).digest().subarray(0, 16)));
  });

  it('pins literal vectors', () => {
    expect(hex(keys.master)).toBe('0532de9ef0adcdd1da2e0ac2abd85d3d364259cca652930a53c3203c39dc2e93');
    expect(hex(keys.keyA)).toBe('be76c46f12c87dc2a4249e3d18f162873948f6ef4b5d4b402bbc074a46873529');
    expect(hex(keys.keyB)).toBe('69630340da9776a9069cfae3304ad2a8d0ff0294471e9b9aa35b33809ae57dca');
    expect(hex(keys.token)).toBe('4c767811efc4e697980a5ae6d5b3f125');
    expect(hex(tokenFromKey(keys.keyB))).toBe('4c767811efc4e697980a5ae6d5b3f125');
  });

  it('changes every key when one transcript byte changes', () => {
    const ack2 = HELLO_ACK.slice();
    ack2[95] = (ack2[95] ?? 0) ^ 1;
    const k2 = deriveSessionKeys(DH, pskKey, HELLO, ack2);
    expect(hex(k2.master)).not.toBe(hex(keys.master));
    expect(hex(k2.keyA)).not.toBe(hex(keys.keyA));
    expect(hex(k2.token)).not.toBe(hex(keys.token));
  });

  it('subflow keys = HKDF(master, n1||n2, "plait-v1 subflow", 64) split in two', () => {
    const sk = subflowKeys(keys.master, N1, N2);
    const okm = hk(keys.master, Buffer.concat([N1, N2]), 'plait-v1 subflow', 64);
    expect(hex(sk.c2s)).toBe(hex(okm.subarray(0, 32)));
    expect(hex(sk.s2c)).toBe(hex(okm.subarray(32, 64)));
    expect(hex(sk.c2s)).toBe('f5aa273d10433e4af5e4c1a0a45d3c1b52a60a4a6d98a1f13c51e909a4053613');
    expect(hex(sk.s2c)).toBe('ba045db955da9dd52a23799a2bffab385b407c3c3be0da401c02b23a7f757fdb');
    // Nonce order matters (n1 is the client's).
    expect(hex(subflowKeys(keys.master, N2, N1).c2s)).not.toBe(hex(sk.c2s));
  });

  it('join HMACs match section 4', () => {
    const b = joinHmacB(keys, RB, RA, 3, 1);
    const a = joinHmacA(keys, RA, RB, 3, 1);
    const eb = createHmac('sha256', Buffer.concat([keys.keyB, keys.keyA]))
      .update(Buffer.concat([RB, RA, Uint8Array.of(3, 1)]))
      .digest();
    const ea = createHmac('sha256', Buffer.concat([keys.keyA, keys.keyB]))
      .update(Buffer.concat([RA, RB, Uint8Array.of(3, 1)]))
      .digest();
    expect(hex(b)).toBe(hex(eb));
    expect(hex(a)).toBe(hex(ea));
    expect(hex(b)).toBe('8e451f3bf4fcca685d2b6b553665c4e7e884a5165139fe6334a900fc57af5fe4');
    expect(hex(a)).toBe('8dee3161661a54af1d42a78bfb6f6b08655bac5804721214dfd92a924df4c1ed');
    expect(b.length).toBe(32);
    // addr_id and flags are covered.
    expect(hex(joinHmacA(keys, RA, RB, 4, 1))).not.toBe(hex(a));
    expect(hex(joinHmacA(keys, RA, RB, 3, 0))).not.toBe(hex(a));
    expect(() => joinHmacA(keys, RA, RB, 256, 0)).toThrow(PlaitError);
  });
});

describe('hello MACs', () => {
  const { authKey } = deriveSecretKeys(SECRET);

  it('mac_c = HMAC(K_auth, "plait-v1 hello" || hello[0..75))', () => {
    const mac = helloMac(authKey, HELLO.subarray(0, 75));
    const e = createHmac('sha256', authKey).update('plait-v1 hello').update(HELLO.subarray(0, 75)).digest();
    expect(hex(mac)).toBe(hex(e));
    expect(hex(mac)).toBe('7cfc3a04bab2fb5ac2cc620cb6b3435b63ce4fb2e4893dc2c68ceb9f243a441d');
  });

  it('mac_s = HMAC(K_auth, "plait-v1 hello-ack" || hello || hello_ack[0..64))', () => {
    const mac = helloAckMac(authKey, HELLO, HELLO_ACK.subarray(0, 64));
    const e = createHmac('sha256', authKey)
      .update('plait-v1 hello-ack')
      .update(HELLO)
      .update(HELLO_ACK.subarray(0, 64))
      .digest();
    expect(hex(mac)).toBe(hex(e));
    expect(hex(mac)).toBe('862d8a72c067cbd91ee810399aff3ff56c03e16dc9712ed75590fc054bb1f517');
  });
});

describe('constantTimeEqual', () => {
  it('compares content and length', () => {
    expect(constantTimeEqual(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2, 3))).toBe(true);
    expect(constantTimeEqual(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2, 4))).toBe(false);
    expect(constantTimeEqual(Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2))).toBe(false);
    expect(constantTimeEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
});

describe('X25519', () => {
  const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
  const priv = (h: string) =>
    createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, Buffer.from(h, 'hex')]), format: 'der', type: 'pkcs8' });

  it('matches RFC 7748 section 6.1', () => {
    const alice = priv('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bobPub = Buffer.from('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', 'hex');
    expect(hex(x25519(alice, bobPub))).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
  });

  it('ephemeral pairs agree and public keys are 32 raw bytes', () => {
    const a = generateEphemeral();
    const b = generateEphemeral();
    expect(a.publicKey).toBeInstanceOf(Uint8Array);
    expect(a.publicKey.length).toBe(32);
    expect(hex(x25519(a.privateKey, b.publicKey))).toBe(hex(x25519(b.privateKey, a.publicKey)));
    expect(hex(a.publicKey)).not.toBe(hex(b.publicKey));
  });

  it('refuses low-order points (all-zero secret) and wrong sizes with AUTH_FAILED', () => {
    const a = generateEphemeral();
    const lowOrder = [new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))];
    for (const p of lowOrder) {
      try {
        x25519(a.privateKey, p);
        expect.unreachable();
      } catch (e) {
        expect((e as PlaitError).code).toBe(ErrorCode.AUTH_FAILED);
      }
    }
    expect(() => x25519(a.privateKey, new Uint8Array(31))).toThrow(PlaitError);
  });
});
