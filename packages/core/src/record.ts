/**
 * Sealed records (PROTOCOL.md section 5):
 *   record = length u32 | AEAD(ciphertext || tag), AAD = length bytes,
 *   nonce = 0x00000000 || counter u64,
 * AEAD = AES-256-GCM or ChaCha20-Poly1305, as the session negotiated.
 * This is the data hot path: chunks are kept by reference and only the bytes
 * a record needs are touched; OpenSSL does the cipher work, reached through
 * a RecordAead (record-aead.ts).
 */
import { DEFAULT_CIPHER, isCipherName, type CipherName } from './cipher.js';
import { WIRE } from './config.js';
import { ByteQueue } from './byte-queue.js';
import { ErrorCode, PlaitError, ProtocolError } from './errors.js';
import { nodeCryptoAead, type RecordAead, type RecordAeadFactory } from './record-aead.js';

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

function writeNonce(iv: Buffer, counter: number): void {
  // iv[0..4) stays zero.
  iv.writeUInt32BE(Math.floor(counter / TWO_32), 4);
  iv.writeUInt32BE(counter >>> 0, 8);
}

/**
 * Sealed records are carved from a shared slab, as Buffer.allocUnsafe carves
 * small buffers from its pool: one allocation per slab instead of one
 * ArrayBuffer per record. External memory is what drives V8's full
 * collections on this path (about a third of the CPU in a profile of a bulk
 * transfer), so the newest record can also be handed back
 * (RecordSealer.recycle) once its bytes are in the kernel, and the next
 * record reuses the same bytes: a socket that keeps up then seals into one
 * warm slab indefinitely. A record that is not handed back stays valid
 * until unreferenced; its slab is then dropped whole.
 */
const SLAB_SIZE = 1024 * 1024;
let slab = Buffer.allocUnsafeSlow(0);
let slabUsed = 0;
/** Where the newest carve starts, or -1 once it can no longer be handed back. */
let lastStart = -1;

function allocRecord(size: number): Buffer {
  // Small records come from Node's own pool already.
  if (size < 4096) return Buffer.allocUnsafe(size);
  if (slab.length - slabUsed < size) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  lastStart = slabUsed;
  const out = slab.subarray(slabUsed, slabUsed + size);
  // 8-byte aligned, as Node's pool keeps its buffers.
  slabUsed = (slabUsed + size + 7) & ~7;
  return out;
}

/** Seals one direction of one subflow. */
export class RecordSealer {
  private readonly aead: RecordAead;
  private readonly iv = Buffer.alloc(12);
  /** Reused per record, like `iv`: no allocation on the hot path. */
  private readonly aad = Buffer.alloc(RECORD_HEADER);
  private count = 0;
  /** Fixed for the subflow's life: chosen once, never per record. */
  readonly cipher: CipherName;

  constructor(key: Uint8Array, cipher: CipherName = DEFAULT_CIPHER, aead: RecordAeadFactory = nodeCryptoAead) {
    this.cipher = checkCipher(cipher);
    this.aead = aead(this.cipher, checkKey(key));
  }

  /**
   * Hand back a record from `seal` that nothing references any more (a
   * socket that wrote it to the kernel synchronously), so the next record
   * reuses its memory. Only the newest record sealed by any sealer can be
   * reused; for any other this does nothing. The caller must not read or
   * write the record afterwards.
   */
  static recycle(record: Uint8Array): void {
    if (lastStart >= 0 && record.buffer === slab.buffer && record.byteOffset === lastStart) {
      slabUsed = lastStart;
      lastStart = -1;
    }
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
    const out = allocRecord(RECORD_HEADER + length);
    this.aad.writeUInt32BE(length, 0);
    out.set(this.aad, 0);
    writeNonce(this.iv, this.count);
    this.aead.seal(this.iv, this.aad, parts, total, out, RECORD_HEADER);
    this.count++;
    return out;
  }
}

/**
 * Opens one direction of one subflow. `push` network chunks, then call `next`
 * until it returns undefined. Errors are final: the subflow must be closed.
 */
export class RecordOpener {
  private readonly aead: RecordAead;
  private readonly iv = Buffer.alloc(12);
  /** AAD of the record being opened: reused per record, no allocation on the hot path. */
  private readonly aad = Buffer.alloc(RECORD_HEADER);
  private readonly maxLength: number;
  private readonly queue = new ByteQueue();
  /**
   * Where a record that spans network chunks is gathered before it is
   * deciphered (one copy into a buffer kept for the opener's life, instead
   * of one cipher output per chunk and a concatenation). Grown on demand.
   */
  private scratch: Buffer = Buffer.alloc(0);
  private readonly tagScratch = Buffer.alloc(WIRE.RECORD_TAG);
  /** Length field of the record at the front once its header has been read, else -1. */
  private pending = -1;
  private count = 0;
  private failed: PlaitError | undefined;
  readonly cipher: CipherName;

  constructor(
    key: Uint8Array,
    maxPlaintext: number = WIRE.RECORD_MAX_PLAINTEXT,
    cipher: CipherName = DEFAULT_CIPHER,
    aead: RecordAeadFactory = nodeCryptoAead,
  ) {
    this.cipher = checkCipher(cipher);
    if (!Number.isInteger(maxPlaintext) || maxPlaintext < 1 || maxPlaintext > WIRE.RECORD_MAX_PLAINTEXT) {
      throw new PlaitError(ErrorCode.INTERNAL, `maxPlaintext must be 1..${WIRE.RECORD_MAX_PLAINTEXT}`);
    }
    this.aead = aead(this.cipher, checkKey(key));
    this.maxLength = maxPlaintext + WIRE.RECORD_TAG;
  }

  /** Records opened so far (the count an ACK reports). */
  get counter(): number {
    return this.count;
  }

  /** Bytes pushed and not yet consumed. */
  get buffered(): number {
    return this.queue.length + (this.pending >= 0 ? RECORD_HEADER : 0);
  }

  /** Takes the chunk by reference (no copy): the caller must not modify it afterwards. */
  push(chunk: Uint8Array): void {
    this.queue.push(chunk);
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
    const q = this.queue;
    if (this.pending < 0) {
      if (q.length < RECORD_HEADER) return undefined;
      const length = q.readUInt32BE(0);
      // Judge the length before waiting for (and so buffering) the body.
      if (length <= WIRE.RECORD_TAG || length > this.maxLength) {
        throw new ProtocolError(
          ErrorCode.BAD_MESSAGE,
          `record length ${length} out of range ${WIRE.RECORD_TAG + 1}..${this.maxLength}: corrupted stream or not a plait peer`,
        );
      }
      q.skip(RECORD_HEADER);
      this.pending = length;
    }
    const length = this.pending;
    if (q.length < length) return undefined;
    if (this.count >= WIRE.RECORD_COUNTER_LIMIT) {
      throw new ProtocolError(ErrorCode.PROTOCOL, 'peer sent more than 2^40 records on one subflow');
    }

    writeNonce(this.iv, this.count);
    this.aad.writeUInt32BE(length, 0);
    const ctLength = length - WIRE.RECORD_TAG;

    if (this.scratch.length < ctLength && q.frontRun < ctLength) {
      // Only once a record spans chunks, sized for the largest record accepted.
      this.scratch = Buffer.allocUnsafe(this.maxLength);
    }
    const ct = q.consume(ctLength, this.scratch);
    // `ct` may be a view into the queue's chunks: take the tag into its own scratch, never over `ct`.
    const tag = q.consume(WIRE.RECORD_TAG, this.tagScratch);
    this.pending = -1;
    const plaintext = this.aead.open(this.iv, this.aad, ct, tag);
    if (plaintext === undefined) {
      throw new PlaitError(
        ErrorCode.DECRYPT_FAILED,
        `record ${this.count} failed authentication: data corrupted or tampered in transit, or wrong keys`,
      );
    }
    this.count++;
    return plaintext;
  }
}
