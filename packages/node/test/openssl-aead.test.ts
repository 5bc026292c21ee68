/**
 * The direct-OpenSSL record AEAD: published vectors, byte-for-byte agreement
 * with node:crypto on arbitrary records (so either side of a session may use
 * either), forgeries refused, OpenSSL never told to write out of bounds, and
 * a clear "unavailable" instead of a crash where koffi cannot be used.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CIPHER_NAMES, nodeCryptoAead, RecordOpener, RecordSealer, type CipherName, type RecordAeadFactory } from '@plait/core';
import { AEAD_VECTORS } from '@plait/testkit';
import { openSslAead, OpenSslAeadError } from '../src/openssl-aead.js';

const unhex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');
const TAG = 16;

function native(): RecordAeadFactory {
  const a = openSslAead();
  // Linux x64/arm64 with koffi installed (this repository's CI): it must work, not quietly fall back.
  if (!a.available) throw new Error(`direct OpenSSL unavailable: ${a.reason}`);
  return a.factory;
}

describe('openSslAead: published vectors', () => {
  for (const v of AEAD_VECTORS) {
    it(`${v.name}: seals to the published ciphertext and tag, opens it, refuses a flipped bit anywhere`, () => {
      const pt = unhex(v.pt);
      const out = Buffer.alloc(pt.length + TAG);
      native()(v.cipher, unhex(v.key)).seal(unhex(v.iv), unhex(v.aad), [pt], pt.length, out, 0);
      expect(out.subarray(0, pt.length).toString('hex')).toBe(unhex(v.ct).toString('hex'));
      expect(out.subarray(pt.length).toString('hex')).toBe(unhex(v.tag).toString('hex'));

      const opener = native()(v.cipher, unhex(v.key));
      const opened = opener.open(unhex(v.iv), unhex(v.aad), unhex(v.ct), unhex(v.tag));
      expect(opened && Buffer.from(opened).toString('hex')).toBe(pt.toString('hex'));
      const flip = (b: Buffer, i: number): Buffer => {
        const c = Buffer.from(b);
        c[i] = c[i]! ^ 0x01;
        return c;
      };
      expect(opener.open(unhex(v.iv), unhex(v.aad), unhex(v.ct), flip(unhex(v.tag), 0))).toBeUndefined();
      expect(opener.open(unhex(v.iv), unhex(v.aad), flip(unhex(v.ct), 3), unhex(v.tag))).toBeUndefined();
      if (v.aad.length > 0) expect(opener.open(unhex(v.iv), flip(unhex(v.aad), 0), unhex(v.ct), unhex(v.tag))).toBeUndefined();
      expect(opener.open(flip(unhex(v.iv), 11), unhex(v.aad), unhex(v.ct), unhex(v.tag))).toBeUndefined();
      // A refusal leaves the context usable: the genuine record still opens.
      expect(opener.open(unhex(v.iv), unhex(v.aad), unhex(v.ct), unhex(v.tag))).toBeDefined();
    });
  }
});

describe('openSslAead: the same bytes as node:crypto', () => {
  const cipherArb = fc.constantFrom<CipherName>(...CIPHER_NAMES);
  const bytes = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 0, maxLength: max });

  it('any record split into any parts, at any offset, seals identically and opens both ways', () => {
    fc.assert(
      fc.property(
        cipherArb,
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.array(bytes(3000), { minLength: 1, maxLength: 5 }),
        fc.nat(64),
        (cipher, key, iv, aad, parts, at) => {
          const total = parts.reduce((a, p) => a + p.length, 0);
          const ours = Buffer.alloc(at + total + TAG + 8, 0xee);
          const ref = Buffer.alloc(at + total + TAG + 8, 0xee);
          native()(cipher, key).seal(iv, aad, parts, total, ours, at);
          nodeCryptoAead(cipher, key).seal(iv, aad, parts, total, ref, at);
          expect(ours.equals(ref)).toBe(true); // including the untouched bytes around the record
          const ct = ours.subarray(at, at + total);
          const tag = ours.subarray(at + total, at + total + TAG);
          const plain = Buffer.concat(parts);
          expect(Buffer.from(native()(cipher, key).open(iv, aad, ct, tag) ?? [0xff]).equals(plain)).toBe(true);
          expect(Buffer.from(nodeCryptoAead(cipher, key).open(iv, aad, ct, tag) ?? [0xff]).equals(plain)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a session whose one side seals with OpenSSL directly and the other opens with node:crypto (and back) reads every record', () => {
    for (const cipher of CIPHER_NAMES) {
      const key = new Uint8Array(32).fill(7);
      for (const [sealWith, openWith] of [
        [native(), nodeCryptoAead],
        [nodeCryptoAead, native()],
      ] as const) {
        const sealer = new RecordSealer(key, cipher, sealWith);
        const opener = new RecordOpener(key, undefined, cipher, openWith);
        const sent: Buffer[] = [];
        for (let i = 0; i < 200; i++) {
          // Sizes around the pooled/unpooled boundary and up to a full record.
          const size = [1, 4095, 4096, 65536][i % 4]!;
          const pt = Buffer.alloc(size, i & 0xff);
          sent.push(pt);
          opener.push(Buffer.from(sealer.seal(pt)));
        }
        for (const pt of sent) expect(Buffer.from(opener.next()!).equals(pt)).toBe(true);
        expect(opener.next()).toBeUndefined();
      }
    }
  });

  it('opened plaintexts are separate memory: a later record does not overwrite an earlier one still held', () => {
    const key = new Uint8Array(32).fill(9);
    const sealer = new RecordSealer(key, 'aes-256-gcm', native());
    const opener = new RecordOpener(key, undefined, 'aes-256-gcm', native());
    const held: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) {
      opener.push(Buffer.from(sealer.seal(Buffer.alloc(i % 2 ? 100 : 20_000, i))));
      held.push(opener.next()!);
    }
    held.forEach((p, i) => expect(p.every((b) => b === i)).toBe(true));
  });
});

describe('openSslAead: bounds and failures', () => {
  it('refuses to seal into a buffer too small for the record and tag, writing nothing', () => {
    const aead = native()('aes-256-gcm', new Uint8Array(32));
    const out = Buffer.alloc(100, 0xab);
    const iv = Buffer.alloc(12);
    const aad = Buffer.alloc(4);
    expect(() => aead.seal(iv, aad, [Buffer.alloc(90)], 90, out, 0)).toThrow(OpenSslAeadError);
    expect(() => aead.seal(iv, aad, [Buffer.alloc(50)], 50, out, 40)).toThrow(OpenSslAeadError);
    expect(out.every((b) => b === 0xab)).toBe(true);
    // Parts that disagree with the stated total are a caller bug, not a short record.
    expect(() => aead.seal(iv, aad, [Buffer.alloc(10), Buffer.alloc(10)], 10, Buffer.alloc(64), 0)).toThrow(OpenSslAeadError);
    expect(() => aead.seal(iv, aad, [Buffer.alloc(10)], 20, Buffer.alloc(64), 0)).toThrow(OpenSslAeadError);
    expect(() => aead.seal(Buffer.alloc(8), aad, [Buffer.alloc(10)], 10, Buffer.alloc(64), 0)).toThrow(OpenSslAeadError);
  });

  it('a wrong key size is refused before OpenSSL sees it', () => {
    expect(() => native()('aes-256-gcm', new Uint8Array(16)).seal(Buffer.alloc(12), Buffer.alloc(4), [Buffer.alloc(1)], 1, Buffer.alloc(32), 0)).toThrow(
      /32 bytes/,
    );
  });

  it('without koffi, or with something else in its place, it says why instead of throwing', () => {
    const gone = openSslAead({
      loadKoffi: () => {
        throw new Error("Cannot find module 'koffi'");
      },
    });
    expect(gone).toEqual({ available: false, reason: expect.stringMatching(/cannot reach OpenSSL through koffi: Cannot find module 'koffi'/) });
    const odd = openSslAead({ loadKoffi: () => ({}) });
    expect(odd.available).toBe(false);
  });
});
