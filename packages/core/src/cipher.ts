/**
 * Record ciphers (PROTOCOL.md sections 3 and 5). The client picks one in its
 * HELLO flags (bits 1-2, covered by mac_c); the session keeps it and every
 * JOIN repeats it. Both are 256-bit-key AEADs with a 96-bit nonce and a
 * 16-byte tag, so the key schedule and the counter nonce are shared.
 */

/** Names as the CLI spells them; they are also node:crypto's algorithm names. */
export const CIPHER_NAMES = ['aes-256-gcm', 'chacha20-poly1305'] as const;
export type CipherName = (typeof CIPHER_NAMES)[number];

/** What a session uses when nothing is said: cipher id 0, the v1 wire format unchanged. */
export const DEFAULT_CIPHER: CipherName = 'aes-256-gcm';

/** HELLO/JOIN flags bits 1-2: the cipher id. */
export const FLAG_CIPHER_SHIFT = 1;
export const FLAG_CIPHER_MASK = 0x06;

/** Wire ids. AES-256-GCM is 0 so a HELLO that uses it is byte-for-byte what older peers send. */
const IDS: Readonly<Record<CipherName, number>> = { 'aes-256-gcm': 0, 'chacha20-poly1305': 1 };
const BY_ID: readonly (CipherName | undefined)[] = ['aes-256-gcm', 'chacha20-poly1305', undefined, undefined];

export function cipherId(name: CipherName): number {
  return IDS[name];
}

/** The flags bits announcing `name`. */
export function cipherFlags(name: CipherName): number {
  return IDS[name] << FLAG_CIPHER_SHIFT;
}

/** The cipher id (0..3) carried in a HELLO/JOIN flags byte. */
export function cipherIdOfFlags(flags: number): number {
  return (flags & FLAG_CIPHER_MASK) >>> FLAG_CIPHER_SHIFT;
}

/** The cipher a flags byte asks for, or undefined for an id this side does not know (2, 3). */
export function cipherOfFlags(flags: number): CipherName | undefined {
  return BY_ID[cipherIdOfFlags(flags)];
}

export function isCipherName(s: string): s is CipherName {
  return (CIPHER_NAMES as readonly string[]).includes(s);
}

/**
 * `--cipher auto`: AES-256-GCM where the CPU has AES instructions (then it
 * is the faster of the two, and constant-time), ChaCha20-Poly1305 where it
 * lacks them (software AES is slow and leaks timing). `hasAes` is what the
 * CPU says (/proc/cpuinfo `aes` flag on x86, `aes` in arm `Features`);
 * undefined when it could not be read: then x64 and arm64 are assumed to
 * have them (nearly every x86-64 since 2010 and every Apple/ARMv8 crypto
 * core does) and anything else is assumed not to.
 */
export function chooseAutoCipher(hasAes: boolean | undefined, arch: string): CipherName {
  const aes = hasAes ?? (arch === 'x64' || arch === 'arm64');
  return aes ? 'aes-256-gcm' : 'chacha20-poly1305';
}
