import { CIPHER_NAMES, type CipherName } from '@plait/core';
import { detectAutoCipher, type AutoCipher } from '@plait/node';
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
