/**
 * The record AEAD straight on OpenSSL's EVP interface, through the optional
 * FFI package koffi and the OpenSSL that Node itself carries (its EVP
 * symbols are exported for addons, so nothing is loaded from disk).
 *
 * Why: node:crypto makes a cipher context per record and, in Node 20,
 * returns each `update` as a fresh zero-filled ArrayBuffer. On a bulk
 * transfer that memset, the malloc behind it and the external memory it
 * adds (which drives V8's collections) cost the sender more than AES-GCM
 * itself. Here one EVP context per subflow direction keeps its key
 * schedule; each record only sets the nonce, and OpenSSL writes ciphertext
 * and tag straight into the record buffer the record layer chose.
 *
 * The wire bytes are identical to node:crypto's (checked once per process
 * against it before first use, and by tests). Where koffi or the symbols
 * are missing, or that check fails, `openSslAead()` says why and callers
 * keep node:crypto.
 */
import { createRequire } from 'node:module';
import { nodeCryptoAead, type CipherName, type RecordAead, type RecordAeadFactory } from '@plait/core';

type NativeFn = (...args: unknown[]) => unknown;

/** The EVP calls used, bound once per process. */
interface Evp {
  ctxNew(): unknown;
  ctxFree(ctx: unknown): void;
  /** EVP_CipherInit_ex(ctx, type, NULL, key, iv, enc): 1 on success. */
  init(ctx: unknown, type: unknown, key: Uint8Array | null, iv: Uint8Array | null, enc: number): number;
  /** EVP_CipherUpdate(ctx, out, &outl, in, inl): 1 on success; out NULL feeds AAD. */
  update(ctx: unknown, out: Uint8Array | null, outl: Int32Array, input: Uint8Array, inl: number): number;
  /** EVP_CipherFinal_ex(ctx, out, &outl): 1 on success; for decryption, 0 when the tag does not verify. */
  final(ctx: unknown, out: Uint8Array, outl: Int32Array): number;
  /** EVP_CIPHER_CTX_ctrl(ctx, type, arg, ptr) */
  ctrl(ctx: unknown, type: number, arg: number, ptr: Uint8Array): number;
  types: Readonly<Record<CipherName, unknown>>;
  /** Frees a context once the AEAD that owns it is collected (a subflow's sealer and opener live as long as it). */
  contexts: FinalizationRegistry<unknown>;
}

// include/openssl/evp.h
const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;
const TAG = 16;
const KEY = 32;
const IV = 12;
/** Plaintexts under this come from Node's shared pool (as Buffer.allocUnsafe does). */
const POOLED_BELOW = 4096;

export class OpenSslAeadError extends Error {
  override readonly name = 'OpenSslAeadError';
}

class EvpAead implements RecordAead {
  private readonly ctx: unknown;
  /** EVP's out-length argument; written by OpenSSL, never read back (lengths are known). */
  private readonly outl = new Int32Array(1);
  /** Where a failed open's final output and a tag copy go: never into caller memory. */
  private readonly spare = Buffer.allocUnsafe(TAG);

  constructor(
    private readonly evp: Evp,
    cipher: CipherName,
    key: Uint8Array,
    /** 1 seals, 0 opens: one context serves one direction, as a sealer or an opener does. */
    enc: 0 | 1,
  ) {
    if (key.length !== KEY) throw new OpenSslAeadError(`record key must be ${KEY} bytes, got ${key.length}`);
    const ctx = evp.ctxNew();
    if (!ctx) throw new OpenSslAeadError('EVP_CIPHER_CTX_new failed (out of memory?)');
    // The key schedule is computed here once; each record then sets only its nonce.
    if (evp.init(ctx, evp.types[cipher], key, null, enc) !== 1) {
      evp.ctxFree(ctx);
      throw new OpenSslAeadError(`EVP_CipherInit_ex(${cipher}) failed`);
    }
    this.ctx = ctx;
    evp.contexts.register(this, ctx);
  }

  seal(iv: Uint8Array, aad: Uint8Array, parts: readonly Uint8Array[], total: number, out: Uint8Array, at: number): void {
    // Bounds are checked here, not trusted to OpenSSL: it writes wherever it is told.
    if (iv.length !== IV || at < 0 || out.length - at < total + TAG) throw new OpenSslAeadError('seal: output too small or bad nonce');
    const { evp, ctx, outl } = this;
    if (evp.init(ctx, null, null, iv, 1) !== 1) throw new OpenSslAeadError('seal: EVP_CipherInit_ex failed');
    if (evp.update(ctx, null, outl, aad, aad.length) !== 1) throw new OpenSslAeadError('seal: AAD rejected');
    let off = at;
    let left = total;
    for (const p of parts) {
      if (p.length === 0) continue;
      if (p.length > left) throw new OpenSslAeadError('seal: parts longer than their total');
      if (evp.update(ctx, out.subarray(off), outl, p, p.length) !== 1) throw new OpenSslAeadError('seal: EVP_CipherUpdate failed');
      off += p.length;
      left -= p.length;
    }
    if (left !== 0) throw new OpenSslAeadError('seal: parts shorter than their total');
    // GCM and ChaCha20-Poly1305 are stream-like: final writes nothing.
    if (evp.final(ctx, this.spare, outl) !== 1) throw new OpenSslAeadError('seal: EVP_CipherFinal_ex failed');
    if (evp.ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out.subarray(off, off + TAG)) !== 1) throw new OpenSslAeadError('seal: no tag');
  }

  open(iv: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Uint8Array | undefined {
    if (iv.length !== IV || tag.length !== TAG) throw new OpenSslAeadError('open: bad nonce or tag length');
    const { evp, ctx, outl } = this;
    // Its own ArrayBuffer, not zero-filled (every byte is written below), as
    // node:crypto's output was: a view of one small frame must not pin more
    // than its record (see Reassembly's PIN_RATIO).
    const plaintext = ct.length < POOLED_BELOW ? Buffer.allocUnsafe(ct.length) : Buffer.allocUnsafeSlow(ct.length);
    if (evp.init(ctx, null, null, iv, 0) !== 1) throw new OpenSslAeadError('open: EVP_CipherInit_ex failed');
    if (evp.update(ctx, null, outl, aad, aad.length) !== 1) throw new OpenSslAeadError('open: AAD rejected');
    if (ct.length > 0 && evp.update(ctx, plaintext, outl, ct, ct.length) !== 1) throw new OpenSslAeadError('open: EVP_CipherUpdate failed');
    // SET_TAG copies the tag; the caller's tag buffer is not written.
    this.spare.set(tag);
    if (evp.ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, this.spare) !== 1) throw new OpenSslAeadError('open: tag rejected');
    return evp.final(ctx, this.spare, outl) === 1 ? plaintext : undefined;
  }
}

export type OpenSslAead = { available: true; factory: RecordAeadFactory } | { available: false; reason: string };

export interface OpenSslAeadOptions {
  /** returns the koffi module; default: require('koffi') */
  loadKoffi?: () => unknown;
}

let singleton: OpenSslAead | undefined;

/**
 * The direct OpenSSL AEAD for this process, or why not. Built and checked
 * once (later calls return the same answer); never throws.
 */
export function openSslAead(options: OpenSslAeadOptions = {}): OpenSslAead {
  if (options.loadKoffi) return build(options.loadKoffi);
  singleton ??= build(defaultLoadKoffi);
  return singleton;
}

function build(loadKoffi: () => unknown): OpenSslAead {
  let evp: Evp;
  try {
    evp = bindEvp(loadKoffi());
  } catch (e) {
    return { available: false, reason: `cannot reach OpenSSL through koffi: ${e instanceof Error ? e.message : String(e)}` };
  }
  const factory: RecordAeadFactory = (cipher, key) => {
    // A sealer's and an opener's first call says which direction the context is for.
    let sealer: EvpAead | undefined;
    let opener: EvpAead | undefined;
    return {
      seal: (iv, aad, parts, total, out, at) => (sealer ??= new EvpAead(evp, cipher, key, 1)).seal(iv, aad, parts, total, out, at),
      open: (iv, aad, ct, tag) => (opener ??= new EvpAead(evp, cipher, key, 0)).open(iv, aad, ct, tag),
    };
  };
  const mismatch = selfTest(factory);
  if (mismatch) return { available: false, reason: `OpenSSL through koffi disagrees with node:crypto (${mismatch})` };
  return { available: true, factory };
}

function defaultLoadKoffi(): unknown {
  // koffi is CommonJS and optional: a synchronous require keeps this synchronous.
  return createRequire(import.meta.url)('koffi');
}

function bindEvp(koffi: unknown): Evp {
  const k = koffi as { load?: (path: string | null) => { func(signature: string): unknown } };
  if (typeof k?.load !== 'function') throw new Error('unexpected koffi module shape');
  // The running process: Node's own OpenSSL, the one node:crypto uses.
  const lib = k.load(null);
  const fn = (signature: string): NativeFn => {
    const f = lib.func(signature);
    if (typeof f !== 'function') throw new Error(`no function for ${signature}`);
    return f as NativeFn;
  };
  const ctxNew = fn('void *EVP_CIPHER_CTX_new()');
  const ctxFree = fn('void EVP_CIPHER_CTX_free(void *ctx)');
  const init = fn('int EVP_CipherInit_ex(void *ctx, const void *type, void *impl, const void *key, const void *iv, int enc)');
  const update = fn('int EVP_CipherUpdate(void *ctx, void *out, void *outl, const void *in, int inl)');
  const final = fn('int EVP_CipherFinal_ex(void *ctx, void *out, void *outl)');
  const ctrl = fn('int EVP_CIPHER_CTX_ctrl(void *ctx, int type, int arg, void *ptr)');
  const aes = fn('const void *EVP_aes_256_gcm()')();
  const chacha = fn('const void *EVP_chacha20_poly1305()')();
  if (!aes || !chacha) throw new Error('OpenSSL lacks AES-256-GCM or ChaCha20-Poly1305');
  return {
    ctxNew: () => ctxNew(),
    ctxFree: (ctx) => void ctxFree(ctx),
    init: (ctx, type, key, iv, enc) => Number(init(ctx, type, null, key, iv, enc)),
    update: (ctx, out, outl, input, inl) => Number(update(ctx, out, outl, input, inl)),
    final: (ctx, out, outl) => Number(final(ctx, out, outl)),
    ctrl: (ctx, type, arg, ptr) => Number(ctrl(ctx, type, arg, ptr)),
    types: { 'aes-256-gcm': aes, 'chacha20-poly1305': chacha },
    // EVP_CIPHER_CTX_free also wipes the key schedule.
    contexts: new FinalizationRegistry((ctx) => void ctxFree(ctx)),
  };
}

/**
 * Seal and open a few records both ways against node:crypto, for both
 * ciphers, including a forged tag: a wrong binding (ABI, symbol, argument
 * order) shows here, not as corrupt data on a live session.
 */
function selfTest(native: RecordAeadFactory): string | undefined {
  const key = Buffer.alloc(KEY);
  for (let i = 0; i < KEY; i++) key[i] = (i * 29 + 7) & 0xff;
  const iv = Buffer.alloc(IV);
  const aad = Buffer.from([0, 0, 1, 3]);
  const a = Buffer.alloc(200, 0x61);
  const b = Buffer.alloc(59, 0x62);
  for (const cipher of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
    const ours = native(cipher, key);
    const ref = nodeCryptoAead(cipher, key);
    for (let n = 0; n < 3; n++) {
      iv.writeUInt32BE(n, 8);
      const x = Buffer.alloc(259 + TAG + 3);
      const y = Buffer.alloc(259 + TAG + 3);
      ours.seal(iv, aad, [a, b], 259, x, 3);
      ref.seal(iv, aad, [a, b], 259, y, 3);
      if (!x.equals(y)) return `${cipher} seal`;
      const ct = x.subarray(3, 3 + 259);
      const tag = x.subarray(3 + 259);
      const pt = ours.open(iv, aad, ct, tag);
      if (!pt || !Buffer.from(pt).equals(Buffer.concat([a, b]))) return `${cipher} open`;
      const forged = Buffer.from(tag);
      forged[0] = forged[0]! ^ 1;
      if (ours.open(iv, aad, ct, forged) !== undefined) return `${cipher} accepted a forged tag`;
    }
  }
  return undefined;
}
