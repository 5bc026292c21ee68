import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuinfoHasAes, detectAutoCipher } from '../src/cpu.js';

const X86_AES = 'processor\t: 0\nflags\t\t: fpu vme sse2 ssse3 aes avx\n\nprocessor\t: 1\nflags\t\t: fpu vme sse2 ssse3 aes avx\n';
const X86_NO_AES = 'processor\t: 0\nflags\t\t: fpu vme sse2 ssse3 avx pclmulqdq\n';
const ARM64_AES = 'processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n';
// Raspberry Pi 4 (Cortex-A72 without the crypto extensions).
const ARM64_NO_AES = 'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n';

describe('cpuinfoHasAes', () => {
  it('reads the x86 flags and arm Features lines, word by word', () => {
    expect(cpuinfoHasAes(X86_AES)).toBe(true);
    expect(cpuinfoHasAes(X86_NO_AES)).toBe(false); // "pclmulqdq" and "avx" are not "aes"
    expect(cpuinfoHasAes(ARM64_AES)).toBe(true);
    expect(cpuinfoHasAes(ARM64_NO_AES)).toBe(false);
    expect(cpuinfoHasAes('processor\t: 0\nisa\t\t: rv64imafdc\n')).toBeUndefined();
    expect(cpuinfoHasAes('flags : vaes avx512\n')).toBe(false);
  });
});

describe('detectAutoCipher', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plait-cpu-'));
  const file = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('AES where the CPU has it, ChaCha20-Poly1305 where it lacks it, whatever the arch', () => {
    expect(detectAutoCipher(file('a', X86_AES), 'x64')).toEqual({ cipher: 'aes-256-gcm', reason: 'the CPU has AES instructions' });
    expect(detectAutoCipher(file('b', X86_NO_AES), 'x64').cipher).toBe('chacha20-poly1305');
    expect(detectAutoCipher(file('c', ARM64_NO_AES), 'arm64')).toEqual({ cipher: 'chacha20-poly1305', reason: 'the CPU lacks AES instructions' });
  });

  it('without /proc/cpuinfo: by architecture', () => {
    expect(detectAutoCipher(join(dir, 'missing'), 'x64').cipher).toBe('aes-256-gcm');
    expect(detectAutoCipher(join(dir, 'missing'), 'arm64').cipher).toBe('aes-256-gcm');
    const mips = detectAutoCipher(join(dir, 'missing'), 'mips');
    expect(mips.cipher).toBe('chacha20-poly1305');
    expect(mips.reason).toMatch(/unknown/);
  });
});
