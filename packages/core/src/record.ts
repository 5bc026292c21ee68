/**
 * Sealed records (PROTOCOL.md section 5):
 *   record = length u32 | AEAD(ciphertext || tag), AAD = length bytes,
 *   nonce = 0x00000000 || counter u64,
 * AEAD = AES-256-GCM or ChaCha20-Poly1305, as the session negotiated.
 * This is the data hot path: chunks are kept by reference and only the bytes
 * a record needs are touched; OpenSSL does the cipher work.
 */
import {
  createCipheriv,
  createDecipheriv,
  type CipherChaCha20Poly1305,
  type CipherGCM,
  type DecipherChaCha20Poly1305,
  type DecipherGCM,
} from 'node:crypto';
import { DEFAULT_CIPHER, isCipherName, type CipherName } from './cipher.js';
import { WIRE } from './config.js';
import { ErrorCode, PlaitError, ProtocolError } from './errors.js';

export const RECORD_HEADER = 4;
/** Bytes a record adds to its plaintext. */
export const RECORD_OVERHEAD = RECORD_HEADER + WIRE.RECORD_TAG;

// A 2^32 multiplier, so counters up to 2^40 split into two u32 words exactly.
const TWO_32 = 2 ** 32;

function checkKey(key: Uint8Array): Buffer {
  if (key.length !== 32) throw new PlaitError(ErrorCode.INTERNAL, `record key must be 32 bytes, got ${key.length}`);
  // Own copy: the caller may wipe or reuse its array.
  return Buffer.from(key);
}

function checkCipher(cipher: CipherName): CipherName {
  // Guards callers outside the type system (JS, parsed config).
  if (!isCipherName(cipher)) throw new PlaitError(ErrorCode.INTERNAL, `unknown record cipher ${String(cipher)}`);
  return cipher;
}

/**
 * The AEAD primitive of the record layer: one OpenSSL context per record,
 * exactly as the sealer and opener use it (tested against RFC 8439 and
 * NIST vectors). Both expose setAAD / getAuthTag / setAuthTag alike.
 */
export function aeadEncryptor(cipher: CipherName, key: Buffer, iv: Buffer): CipherGCM | CipherChaCha20Poly1305 {
  return cipher === 'chacha20-poly1305'
    ? createCipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG })
    : createCipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG });
}

export function aeadDecryptor(cipher: CipherName, key: Buffer, iv: Buffer): DecipherGCM | DecipherChaCha20Poly1305 {
  return cipher === 'chacha20-poly1305'
    ? createDecipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG })
    : createDecipheriv(cipher, key, iv, { authTagLength: WIRE.RECORD_TAG });
}

function writeNonce(iv: Buffer, counter: number): void {
  // iv[0..4) stays zero.
  iv.writeUInt32BE(Math.floor(counter / TWO_32), 4);
  iv.writeUInt32BE(counter >>> 0, 8);
}

/** Seals one direction of one subflow. */
export class RecordSealer {
  private readonly key: Buffer;
  private readonly iv = Buffer.alloc(12);
  /** Reused per record, like `iv`: no allocation on the hot path. */
  private readonly aadOpts = { plaintextLength: 0 };
  private count = 0;
  /** Fixed for the subflow's life: chosen once, never per record. */
  readonly cipher: CipherName;

  constructor(key: Uint8Array, cipher: CipherName = DEFAULT_CIPHER) {
    this.key = checkKey(key);
    this.cipher = checkCipher(cipher);
  }

  /** Records sealed so far = the next record's counter. */
  get counter(): number {
    return this.count;
  }

  /** True once no more records may be sealed; the subflow must be closed. */
  get exhausted(): boolean {
    return this.count >= WIRE.RECORD_COUNTER_LIMIT;
  }

  /**
   * One record from 1..65536 plaintext bytes. The result may be a view into a
   * shared pool (Buffer.allocUnsafe): respect its byteOffset.
   */
  seal(plaintext: Uint8Array): Uint8Array {
    return this.sealParts([plaintext]);
  }

  /** One record whose plaintext is the concatenation of `parts`, without concatenating them first. */
  sealParts(parts: readonly Uint8Array[]): Uint8Array {
    let total = 0;
    for (const p of parts) total += p.length;
    if (total < 1 || total > WIRE.RECORD_MAX_PLAINTEXT) {
      throw new PlaitError(
        ErrorCode.INTERNAL,
        `record plaintext must be 1..${WIRE.RECORD_MAX_PLAINTEXT} bytes, got ${total}`,
      );
    }
    if (this.exhausted) {
      throw new PlaitError(ErrorCode.LIMIT, 'record counter exhausted (2^40 records): close this subflow and open another');
    }
    const length = total + WIRE.RECORD_TAG;
    const out = Buffer.allocUnsafe(RECORD_HEADER + length);
    out.writeUInt32BE(length, 0);
    writeNonce(this.iv, this.count);
    const cipher = aeadEncryptor(this.cipher, this.key, this.iv);
    // plaintextLength: required by the ChaCha20-Poly1305 typings, ignored by GCM.
    this.aadOpts.plaintextLength = total;
    cipher.setAAD(out.subarray(0, RECORD_HEADER), this.aadOpts);
    let off = RECORD_HEADER;
    for (const p of parts) {
      if (p.length === 0) continue;
      const c = cipher.update(p);
      out.set(c, off);
      off += c.length;
    }
    const tail = cipher.final(); // empty for both stream-like AEADs, kept for correctness
    if (tail.length > 0) {
      out.set(tail, off);
      off += tail.length;
    }
    out.set(cipher.getAuthTag(), off);
    this.count++;
    return out;
  }
}

/**
 * Opens one direction of one subflow. `push` network chunks, then call `next`
 * until it returns undefined. Errors are final: the subflow must be closed.
 */
export class RecordOpener {
  private readonly key: Buffer;
  private readonly iv = Buffer.alloc(12);
  private readonly aadOpts = { plaintextLength: 0 };
  private readonly maxLength: number;
  // Consumed slots are cleared to undefined so their memory can be reclaimed.
  private chunks: (Uint8Array | undefined)[] = [];
  /** Index of the first live chunk and read position inside it. */
  private head = 0;
  private offset = 0;
  private size = 0;
  /** Length field of the record at the front once its header has been read, else -1. */
  private pending = -1;
  private count = 0;
  private failed: PlaitError | undefined;
  readonly cipher: CipherName;

  constructor(key: Uint8Array, maxPlaintext: number = WIRE.RECORD_MAX_PLAINTEXT, cipher: CipherName = DEFAULT_CIPHER) {
    this.key = checkKey(key);
    this.cipher = checkCipher(cipher);
    if (!Number.isInteger(maxPlaintext) || maxPlaintext < 1 || maxPlaintext > WIRE.RECORD_MAX_PLAINTEXT) {
      throw new PlaitError(ErrorCode.INTERNAL, `maxPlaintext must be 1..${WIRE.RECORD_MAX_PLAINTEXT}`);
    }
    this.maxLength = maxPlaintext + WIRE.RECORD_TAG;
  }

  /** Records opened so far (the count an ACK reports). */
  get counter(): number {
    return this.count;
  }

  /** Bytes pushed and not yet consumed. */
  get buffered(): number {
    return this.size + (this.pending >= 0 ? RECORD_HEADER : 0);
  }

  /** Takes the chunk by reference (no copy): the caller must not modify it afterwards. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /**
   * Plaintext of the next whole record, or undefined if more bytes are
   * needed. Throws ProtocolError(BAD_MESSAGE) as soon as a bad length field
   * is seen, PlaitError(DECRYPT_FAILED) when a record fails authentication.
   */
  next(): Uint8Array | undefined {
    if (this.failed) throw this.failed;
    try {
      return this.step();
    } catch (err) {
      if (err instanceof PlaitError) this.failed = err;
      throw err;
    }
  }

  private step(): Uint8Array | undefined {
    if (this.pending < 0) {
      if (this.size < RECORD_HEADER) return undefined;
      const h = this.take(RECORD_HEADER);
      let length = 0;
      for (const part of h) for (const b of part) length = length * 256 + b;
      // Judge the length before waiting for (and so buffering) the body.
      if (length <= WIRE.RECORD_TAG || length > this.maxLength) {
        throw new ProtocolError(
          ErrorCode.BAD_MESSAGE,
          `record length ${length} out of range ${WIRE.RECORD_TAG + 1}..${this.maxLength}: corrupted stream or not a plait peer`,
        );
      }
      this.pending = length;
    }
    const length = this.pending;
    if (this.size < length) return undefined;
    if (this.count >= WIRE.RECORD_COUNTER_LIMIT) {
      throw new ProtocolError(ErrorCode.PROTOCOL, 'peer sent more than 2^40 records on one subflow');
    }

    writeNonce(this.iv, this.count);
    const decipher = aeadDecryptor(this.cipher, this.key, this.iv);
    const aad = Buffer.allocUnsafe(RECORD_HEADER);
    aad.writeUInt32BE(length, 0);
    this.aadOpts.plaintextLength = length - WIRE.RECORD_TAG;
    decipher.setAAD(aad, this.aadOpts);

    const ctParts = this.take(length - WIRE.RECORD_TAG);
    const tagParts = this.take(WIRE.RECORD_TAG);
    this.pending = -1;
    decipher.setAuthTag(tagParts.length === 1 ? (tagParts[0] as Uint8Array) : Buffer.concat(tagParts));

    let plaintext: Uint8Array;
    if (ctParts.length === 1) {
      plaintext = decipher.update(ctParts[0] as Uint8Array);
    } else {
      const outs: Buffer[] = [];
      for (const p of ctParts) outs.push(decipher.update(p));
      plaintext = Buffer.concat(outs, length - WIRE.RECORD_TAG);
    }
    try {
      decipher.final();
    } catch {
      // The plaintext computed above is unauthenticated and is dropped.
      throw new PlaitError(
        ErrorCode.DECRYPT_FAILED,
        `record ${this.count} failed authentication: data corrupted or tampered in transit, or wrong keys`,
      );
    }
    this.count++;
    return plaintext;
  }

  /** Consume n buffered bytes (n <= size) as views into the chunks, no copy. */
  private take(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.size -= n;
    while (n > 0) {
      const c = this.chunks[this.head] as Uint8Array;
      const avail = c.length - this.offset;
      if (avail > n) {
        out.push(c.subarray(this.offset, this.offset + n));
        this.offset += n;
        break;
      }
      out.push(this.offset === 0 ? c : c.subarray(this.offset));
      n -= avail;
      this.chunks[this.head] = undefined;
      this.head++;
      this.offset = 0;
    }
    // Compact the array now and then so it does not grow without bound.
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 32 && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    return out;
  }
}
