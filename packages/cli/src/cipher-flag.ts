import { CIPHER_NAMES, type CipherName, type RecordAeadFactory } from '@plait/core';
import { detectAutoCipher, openSslAead, type AutoCipher, type OpenSslAead } from '@plait/node';
import { UsageError } from './args.js';

/** `plait client --cipher auto|aes-256-gcm|chacha20-poly1305`: the cipher and why (for the log). */
export function parseClientCipher(value: string): AutoCipher {
  if (value === 'auto') return detectAutoCipher();
  if ((CIPHER_NAMES as readonly string[]).includes(value)) return { cipher: value as CipherName, reason: 'chosen with --cipher' };
  throw new UsageError(`--cipher: "${value}" is not a cipher; use auto, ${CIPHER_NAMES.join(' or ')}`);
}

/** `plait server --cipher any|aes-256-gcm|chacha20-poly1305`: the ciphers clients may choose. */
export function parseServerCiphers(value: string): readonly CipherName[] {
  if (value === 'any') return CIPHER_NAMES;
  if ((CIPHER_NAMES as readonly string[]).includes(value)) return [value as CipherName];
  throw new UsageError(`--cipher: "${value}" is not a cipher; use any, ${CIPHER_NAMES.join(' or ')}`);
}

/** How this process seals and opens records, and the line the log says about it. */
export interface RecordCrypto {
  factory?: RecordAeadFactory;
  text: string;
}

/**
 * OpenSSL's EVP interface directly (through koffi) where it works, else
 * node:crypto; `PLAIT_RECORD_CRYPTO=node` forces node:crypto (to compare,
 * or to rule the binding out when chasing a problem). Same wire bytes
 * either way; only the CPU per byte differs.
 */
export function chooseRecordCrypto(env: NodeJS.ProcessEnv = process.env, load: () => OpenSslAead = openSslAead): RecordCrypto {
  const want = env['PLAIT_RECORD_CRYPTO'] ?? 'openssl';
  if (want === 'node') return { text: 'record crypto: node:crypto (PLAIT_RECORD_CRYPTO=node)' };
  if (want !== 'openssl') throw new UsageError(`PLAIT_RECORD_CRYPTO: "${want}" is not a choice; use openssl (the default) or node`);
  const native = load();
  if (native.available) return { factory: native.factory, text: 'record crypto: OpenSSL EVP, one context per subflow direction' };
  return { text: `record crypto: node:crypto, because ${native.reason}` };
}
