/**
 * The user hint of a HELLO (PROTOCOL.md section 3.2): the client's user name,
 * sealed to the server's identity key so that the server finds the user's
 * secret with one X25519 and one table lookup, whatever the number of users,
 * while an observer of the wire sees 49 fresh random-looking bytes per HELLO.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ErrorCode, PlaitError } from './errors.js';
import { concatBytes, copyBytes, x25519 } from './keys.js';

/** Longest user name in UTF-8 bytes; every hint is padded to it so the length says nothing. */
export const USER_NAME_MAX = 32;
/** Sealed hint on the wire: name_len u8 | name | zero padding (33 bytes), then the 16-byte GCM tag. */
export const USER_HINT_BYTES = 1 + USER_NAME_MAX + 16;
/** User names: what a metrics label, a file and a log line can carry without quoting. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

const utf8 = new TextEncoder();
const INFO_HINT = utf8.encode('plait-v1 user-hint');
const ZERO_IV = new Uint8Array(12);

// DER wrappers of raw X25519 keys (RFC 8410).
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const SPKI_PREFIX_LEN = 12;

/** Why a user name is not acceptable, or undefined if it is. */
export function userNameProblem(name: string): string | undefined {
  if (NAME_RE.test(name)) return undefined;
  return `user name ${JSON.stringify(name)} must be 1-${USER_NAME_MAX} characters of A-Z a-z 0-9 . _ - starting with a letter or digit`;
}

/** The server's identity key pair (X25519); the public half goes into each user's client config. */
export interface ServerIdentity {
  privateKey: KeyObject;
  /** Raw 32 bytes. */
  publicKey: Uint8Array;
}

/** A new identity: raw private key bytes to store (base64url), and the public key. */
export function generateIdentity(): { privateRaw: Uint8Array; publicKey: Uint8Array } {
  const { privateKey } = generateKeyPairSync('x25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const privateRaw = copyBytes(der.subarray(PKCS8_PREFIX.length));
  return { privateRaw, publicKey: identityFromPrivate(privateRaw).publicKey };
}

/** The identity from its 32 raw private bytes. */
export function identityFromPrivate(privateRaw: Uint8Array): ServerIdentity {
  if (privateRaw.length !== 32) {
    throw new PlaitError(ErrorCode.INTERNAL, `identity key must be 32 bytes (base64url, from \`plait keygen --identity\`), got ${privateRaw.length}`);
  }
  const privateKey = createPrivateKey({ key: Buffer.from(concatBytes(PKCS8_PREFIX, privateRaw)), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { privateKey, publicKey: copyBytes(spki.subarray(SPKI_PREFIX_LEN)) };
}

/**
 * k_hint = HKDF(ikm = X25519(e_c, S_id), salt = nonce_c, info = "plait-v1 user-hint" || E_c || S_id_pub).
 * Binding E_c and the server key means a hint cannot be moved to another HELLO or server.
 */
function hintKey(dh: Uint8Array, nonce: Uint8Array, clientEphemeral: Uint8Array, serverPublic: Uint8Array): Uint8Array {
  return hkdf(sha256, dh, nonce, concatBytes(INFO_HINT, clientEphemeral, serverPublic), 32);
}

export interface HintInput {
  /** The HELLO body's first 75 bytes (version .. E_c): the AEAD's associated data. */
  helloPrefix: Uint8Array;
  nonce: Uint8Array;
  clientEphemeral: Uint8Array;
}

/** Client: seal `name` with its HELLO ephemeral to the server's public identity key. */
export function sealUserHint(name: string, ephemeralPrivate: KeyObject, serverPublic: Uint8Array, input: HintInput): Uint8Array {
  const problem = userNameProblem(name);
  if (problem) throw new PlaitError(ErrorCode.INTERNAL, problem);
  const raw = utf8.encode(name);
  const plain = new Uint8Array(1 + USER_NAME_MAX);
  plain[0] = raw.length;
  plain.set(raw, 1);
  const key = hintKey(x25519(ephemeralPrivate, serverPublic), input.nonce, input.clientEphemeral, serverPublic);
  // The key is fresh per HELLO (fresh e_c and nonce_c), so a fixed IV never repeats under a key.
  const c = createCipheriv('aes-256-gcm', key, ZERO_IV);
  c.setAAD(input.helloPrefix);
  const out = concatBytes(c.update(plain), c.final(), c.getAuthTag());
  return out;
}

/**
 * Server: the user name in a hint, or undefined if it does not open (not
 * sealed to our key, tampered, or a bad ephemeral). Constant work: one
 * X25519, one HKDF and one AES-GCM over 49 bytes, whatever the users table holds.
 */
export function openUserHint(identity: ServerIdentity, hint: Uint8Array, input: HintInput): string | undefined {
  if (hint.length !== USER_HINT_BYTES) return undefined;
  let dh: Uint8Array;
  try {
    dh = x25519(identity.privateKey, input.clientEphemeral);
  } catch {
    return undefined;
  }
  const key = hintKey(dh, input.nonce, input.clientEphemeral, identity.publicKey);
  const d = createDecipheriv('aes-256-gcm', key, ZERO_IV);
  d.setAAD(input.helloPrefix);
  d.setAuthTag(hint.subarray(1 + USER_NAME_MAX));
  let plain: Uint8Array;
  try {
    plain = concatBytes(d.update(hint.subarray(0, 1 + USER_NAME_MAX)), d.final());
  } catch {
    return undefined;
  }
  const len = plain[0] ?? 0;
  if (len < 1 || len > USER_NAME_MAX) return undefined;
  for (let i = 1 + len; i < plain.length; i++) if (plain[i] !== 0) return undefined;
  const name = new TextDecoder('utf-8', { fatal: false }).decode(plain.subarray(1, 1 + len));
  return userNameProblem(name) === undefined ? name : undefined;
}
