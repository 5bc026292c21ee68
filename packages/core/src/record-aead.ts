/**
 * The AEAD primitive under the record layer (PROTOCOL.md section 5), behind
 * an interface so the process can pick how it reaches OpenSSL:
 * - `nodeCryptoAead` (here, always available): node:crypto, one cipher
 *   context per record. Node 20's `cipher.update` returns a fresh,
 *   zero-filled ArrayBuffer per call, which on a bulk transfer costs a
 *   memset, a malloc and external memory that drives V8's collections.
 * - `@plait/node`'s direct OpenSSL binding: one EVP context per subflow
 *   direction, sealing and opening straight into memory the record layer
 *   chose. Same wire bytes; the record layer does not know which it has.
 */
import {
  createCipheriv,
  createDecipheriv,
  type CipherChaCha20Poly1305,
  type CipherGCM,
  type DecipherChaCha20Poly1305,
  type DecipherGCM,
} from 'node:crypto';
import type { CipherName } from './cipher.js';
import { WIRE } from './config.js';

/** One direction of one subflow: a fixed cipher and key, a fresh 12-byte nonce per record. */
export interface RecordAead {
  /**
   * Encrypt the concatenation of `parts` (`total` bytes) into
   * `out[at, at + total)` and write the tag (WIRE.RECORD_TAG bytes) right
   * after it. `out` has room; `parts` never overlap `out`.
   */
  seal(iv: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], total: number, out: Uint8Array, at: number): void;
  /**
   * The plaintext of `ct` if `tag` authenticates it (with `aad`), else
   * undefined. The result is memory the caller may keep; `ct` and `tag`
   * are not kept.
   */
  open(iv: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Uint8Array | undefined;
}

/** Makes the AEAD for one direction of a subflow; the key is the caller's copy, not to be modified. */
export type RecordAeadFactory = (cipher: CipherName, key: Uint8Array) => RecordAead;

/**
 * A node:crypto context for one record (tested against RFC 8439 and NIST
 * vectors). Both AEADs expose setAAD / getAuthTag / setAuthTag alike.
 */
export function aeadEncryptor(cipher: CipherName, key: Uint8Array, iv: Uint8Array): CipherGCM | CipherChaCha20Poly1305 {
  return cipher === 'chacha20-poly1305'
    ? createCipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG })
    : createCipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG });
}

export function aeadDecryptor(cipher: CipherName, key: Uint8Array, iv: Uint8Array): DecipherGCM | DecipherChaCha20Poly1305 {
  return cipher === 'chacha20-poly1305'
    ? createDecipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG })
    : createDecipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG });
}

class NodeCryptoAead implements RecordAead {
  /** Reused per record: no allocation for the options on the hot path. */
  private readonly aadOpts = { plaintextLength: 0 };

  constructor(
    private readonly cipher: CipherName,
    private readonly key: Uint8Array,
  ) {}

  seal(iv: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], total: number, out: Uint8Array, at: number): void {
    const c = aeadEncryptor(this.cipher, this.key, iv);
    // plaintextLength: required by the ChaCha20-Poly1305 typings, ignored by GCM.
    this.aadOpts.plaintextLength = total;
    c.setAAD(aad, this.aadOpts);
    let off = at;
    for (const p of parts) {
      if (p.length === 0) continue;
      const x = c.update(p);
      out.set(x, off);
      off += x.length;
    }
    const tail = c.final(); // empty for both stream-like AEADs, kept for correctness
    if (tail.length > 0) {
      out.set(tail, off);
      off += tail.length;
    }
    out.set(c.getAuthTag(), off);
  }

  open(iv: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Uint8Array | undefined {
    const d = aeadDecryptor(this.cipher, this.key, iv);
    this.aadOpts.plaintextLength = ct.length;
    d.setAAD(aad, this.aadOpts);
    const plaintext = d.update(ct);
    d.setAuthTag(tag);
    try {
      d.final();
    } catch {
      return undefined; // the plaintext computed above is unauthenticated and is dropped
    }
    return plaintext;
  }
}

/** The portable AEAD: node:crypto, everywhere Node runs. */
export const nodeCryptoAead: RecordAeadFactory = (cipher, key) => new NodeCryptoAead(cipher, key);
