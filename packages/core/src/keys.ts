/**
 * Key schedule of PROTOCOL.md section 2, join HMACs (section 4) and HELLO
 * MACs (section 3). Pure functions over byte arrays; the only randomness is in
 * `generateEphemeral`.
 */
import {
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { expand, hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ErrorCode, PlaitError } from './errors.js';
import { WIRE } from './config.js';

const utf8 = new TextEncoder();
const label = (s: string): Uint8Array => utf8.encode(s);

const SALT = label('plait-v1');
const INFO_AUTH = label('auth');
const INFO_PSK = label('psk');
const INFO_MASTER = label('plait-v1 master');
const INFO_KEY_A = label('plait-v1 key-a');
const INFO_KEY_B = label('plait-v1 key-b');
const INFO_SUBFLOW = label('plait-v1 subflow');
const LABEL_HELLO = label('plait-v1 hello');
const LABEL_HELLO_ACK = label('plait-v1 hello-ack');
const LABEL_REJECT = label('plait-v1 reject');

/** Minimum secret length in bytes (PROTOCOL.md section 2). */
export const MIN_SECRET_BYTES = 16;

/**
 * A fresh plain Uint8Array copy. (Buffer#slice returns a view, and
 * Uint8Array#slice on a Buffer returns a Buffer, so neither is used.)
 */
export function copyBytes(view: Uint8Array): Uint8Array {
  const out = new Uint8Array(view.length);
  out.set(view);
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export interface SecretKeys {
  /** K_auth: keys the HELLO / HELLO_ACK MACs. */
  authKey: Uint8Array;
  /** K_psk: salt of the master-key HKDF, binding sessions to the secret. */
  pskKey: Uint8Array;
}

/**
 * K_auth and K_psk from the pre-shared secret. A string is used as its UTF-8
 * bytes, not decoded (a base64url secret from `plait keygen` is 43 bytes).
 */
export function deriveSecretKeys(secret: string | Uint8Array): SecretKeys {
  const s = typeof secret === 'string' ? utf8.encode(secret) : secret;
  if (s.length < MIN_SECRET_BYTES) {
    throw new PlaitError(
      ErrorCode.INTERNAL,
      `secret too short: ${s.length} bytes, need at least ${MIN_SECRET_BYTES}; generate one with \`plait keygen\``,
    );
  }
  return {
    authKey: hkdf(sha256, s, SALT, INFO_AUTH, 32),
    pskKey: hkdf(sha256, s, SALT, INFO_PSK, 32),
  };
}

export interface SessionKeys {
  master: Uint8Array;
  /** Client key (MPTCP Key-A). */
  keyA: Uint8Array;
  /** Server key (MPTCP Key-B). */
  keyB: Uint8Array;
  /** SHA-256(key_b)[0..16): names the session in JOIN. */
  token: Uint8Array;
}

/**
 * Session keys from the X25519 output and the two HELLO bodies exactly as
 * they travelled (so any tampering changes every key).
 */
export function deriveSessionKeys(
  dh: Uint8Array,
  pskKey: Uint8Array,
  helloBody: Uint8Array,
  helloAckBody: Uint8Array,
): SessionKeys {
  const transcript = sha256.create().update(helloBody).update(helloAckBody).digest();
  const master = hkdf(sha256, dh, pskKey, concatBytes(INFO_MASTER, transcript), 32);
  const keyA = expand(sha256, master, INFO_KEY_A, 32);
  const keyB = expand(sha256, master, INFO_KEY_B, 32);
  return { master, keyA, keyB, token: tokenFromKey(keyB) };
}

export function tokenFromKey(keyB: Uint8Array): Uint8Array {
  return sha256(keyB).slice(0, WIRE.TOKEN_BYTES);
}

/** Record keys of one subflow; n1, n2 = (nonce_c, nonce_s) or (R_A, R_B). */
export function subflowKeys(
  master: Uint8Array,
  n1: Uint8Array,
  n2: Uint8Array,
): { c2s: Uint8Array; s2c: Uint8Array } {
  const okm = hkdf(sha256, master, concatBytes(n1, n2), INFO_SUBFLOW, 64);
  return { c2s: okm.slice(0, 32), s2c: okm.slice(32, 64) };
}

function u8(n: number, what: string): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 255) {
    throw new PlaitError(ErrorCode.INTERNAL, `${what} must be an integer 0..255, got ${n}`);
  }
  return Uint8Array.of(n);
}

/** A JOIN's instance u16 as the join HMACs cover it; nothing when the JOIN has none. */
function u16opt(n: number | undefined): Uint8Array {
  if (n === undefined) return new Uint8Array(0);
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) {
    throw new PlaitError(ErrorCode.INTERNAL, `instance must be an integer 0..65535, got ${n}`);
  }
  return Uint8Array.of(n >>> 8, n & 0xff);
}

/** Full 32-byte HMAC-B; JOIN_ACK carries its first 8 bytes. */
export function joinHmacB(
  keys: Pick<SessionKeys, 'keyA' | 'keyB'>,
  rB: Uint8Array,
  rA: Uint8Array,
  addrId: number,
  flags: number,
  instance?: number,
): Uint8Array {
  return hmac(
    sha256,
    concatBytes(keys.keyB, keys.keyA),
    concatBytes(rB, rA, u8(addrId, 'addrId'), u8(flags, 'flags'), u16opt(instance)),
  );
}

/** Full 32-byte HMAC-A, carried whole in JOIN_CONFIRM. */
export function joinHmacA(
  keys: Pick<SessionKeys, 'keyA' | 'keyB'>,
  rA: Uint8Array,
  rB: Uint8Array,
  addrId: number,
  flags: number,
  instance?: number,
): Uint8Array {
  return hmac(
    sha256,
    concatBytes(keys.keyA, keys.keyB),
    concatBytes(rA, rB, u8(addrId, 'addrId'), u8(flags, 'flags'), u16opt(instance)),
  );
}

/** mac_c over the first 75 bytes of the HELLO body. */
export function helloMac(authKey: Uint8Array, helloWithoutMac: Uint8Array): Uint8Array {
  return hmac.create(sha256, authKey).update(LABEL_HELLO).update(helloWithoutMac).digest();
}

/** mac_s over the whole HELLO and the first 64 bytes of the HELLO_ACK body. */
export function helloAckMac(
  authKey: Uint8Array,
  helloBody: Uint8Array,
  helloAckWithoutMac: Uint8Array,
): Uint8Array {
  return hmac
    .create(sha256, authKey)
    .update(LABEL_HELLO_ACK)
    .update(helloBody)
    .update(helloAckWithoutMac)
    .digest();
}

/**
 * The proof on a server's REJECT: binds the refusal (code, reason, server
 * time) to the very HELLO or JOIN it answers, keyed with the secret, so a
 * stranger on the path can neither forge one nor replay an old one.
 */
export function rejectMac(authKey: Uint8Array, requestBody: Uint8Array, rejectWithoutMac: Uint8Array): Uint8Array {
  const len = new Uint8Array([requestBody.length >>> 8, requestBody.length & 0xff]);
  return hmac.create(sha256, authKey).update(LABEL_REJECT).update(len).update(requestBody).update(rejectWithoutMac).digest();
}

/** Constant-time for equal lengths; lengths are public (fixed by the wire format). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// DER SubjectPublicKeyInfo header for an X25519 key; the raw 32 bytes follow.
const X25519_SPKI_PREFIX = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
]);

export interface Ephemeral {
  /** Raw 32-byte public key, as sent on the wire. */
  publicKey: Uint8Array;
  privateKey: KeyObject;
}

export function generateEphemeral(): Ephemeral {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return { publicKey: copyBytes(der.subarray(X25519_SPKI_PREFIX.length)), privateKey };
}

/**
 * X25519 with our private key and the peer's raw public key. A low-order
 * peer key yields an all-zero secret that an attacker could predict, so it is
 * refused (RFC 7748 section 6.1).
 */
export function x25519(privateKey: KeyObject, peerPublicRaw: Uint8Array): Uint8Array {
  if (peerPublicRaw.length !== 32) {
    throw new PlaitError(ErrorCode.AUTH_FAILED, `invalid X25519 public key: ${peerPublicRaw.length} bytes, expected 32`);
  }
  let shared: Uint8Array;
  try {
    const publicKey = createPublicKey({
      key: Buffer.from(concatBytes(X25519_SPKI_PREFIX, peerPublicRaw)),
      format: 'der',
      type: 'spki',
    });
    shared = diffieHellman({ privateKey, publicKey });
  } catch (cause) {
    // OpenSSL itself refuses an all-zero result; report it like the explicit check.
    throw new PlaitError(ErrorCode.AUTH_FAILED, 'invalid X25519 public key from peer (low-order point)', { cause });
  }
  let acc = 0;
  for (const b of shared) acc |= b;
  if (acc === 0) {
    throw new PlaitError(ErrorCode.AUTH_FAILED, 'invalid X25519 public key from peer (low-order point)');
  }
  return copyBytes(shared);
}
