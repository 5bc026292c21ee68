/** How the CLI picks its record crypto: OpenSSL directly by default, node:crypto on request or when the binding is unavailable. */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { chooseRecordCrypto } from '../src/cipher-flag.js';

describe('chooseRecordCrypto', () => {
  it('uses OpenSSL directly by default where it is available', () => {
    const r = chooseRecordCrypto({});
    expect(r.factory).toBeTypeOf('function');
    expect(r.text).toMatch(/OpenSSL EVP/);
  });

  it('PLAIT_RECORD_CRYPTO=node keeps node:crypto, and says so', () => {
    let loaded = false;
    const r = chooseRecordCrypto({ PLAIT_RECORD_CRYPTO: 'node' }, () => {
      loaded = true;
      throw new Error('not to be loaded');
    });
    expect(r.factory).toBeUndefined();
    expect(r.text).toMatch(/node:crypto \(PLAIT_RECORD_CRYPTO=node\)/);
    expect(loaded).toBe(false);
  });

  it('falls back to node:crypto with the reason when the binding is unavailable', () => {
    const r = chooseRecordCrypto({}, () => ({ available: false, reason: 'the optional package koffi is not installed' }));
    expect(r.factory).toBeUndefined();
    expect(r.text).toBe('record crypto: node:crypto, because the optional package koffi is not installed');
  });

  it('an unknown value is a usage error naming the variable and the choices', () => {
    expect(() => chooseRecordCrypto({ PLAIT_RECORD_CRYPTO: 'fast' })).toThrow(UsageError);
    expect(() => chooseRecordCrypto({ PLAIT_RECORD_CRYPTO: 'fast' })).toThrow(/PLAIT_RECORD_CRYPTO: "fast" is not a choice; use openssl \(the default\) or node/);
  });
});
