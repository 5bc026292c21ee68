/**
 * `--cipher auto`: does this CPU have AES instructions? Read from Linux's
 * /proc/cpuinfo (core has no I/O; the rule itself is chooseAutoCipher).
 */
import { readFileSync } from 'node:fs';
import { arch } from 'node:os';
import { chooseAutoCipher, type CipherName } from '@plait/core';

/**
 * True / false when /proc/cpuinfo says whether the CPU has AES instructions
 * (x86 `flags` word `aes` = AES-NI; arm/arm64 `Features` word `aes` = ARMv8
 * crypto extensions), undefined when the text has neither line.
 */
export function cpuinfoHasAes(text: string): boolean | undefined {
  let seen = false;
  for (const line of text.split('\n')) {
    const m = /^(flags|Features)\s*:(.*)$/.exec(line);
    if (!m) continue;
    seen = true;
    if ((m[2] ?? '').split(/\s+/).includes('aes')) return true;
  }
  return seen ? false : undefined;
}

export interface AutoCipher {
  cipher: CipherName;
  /** Why, for the log line. */
  reason: string;
}

/** Pick the record cipher for `--cipher auto` on this machine. */
export function detectAutoCipher(cpuinfoPath = '/proc/cpuinfo', machine: string = arch()): AutoCipher {
  let hasAes: boolean | undefined;
  try {
    hasAes = cpuinfoHasAes(readFileSync(cpuinfoPath, 'utf8'));
  } catch {
    hasAes = undefined; // not Linux, or no /proc: fall back on the architecture
  }
  const cipher = chooseAutoCipher(hasAes, machine);
  const reason =
    hasAes === true
      ? 'the CPU has AES instructions'
      : hasAes === false
        ? 'the CPU lacks AES instructions'
        : `CPU features unknown; ${machine} ${cipher === 'aes-256-gcm' ? 'nearly always has' : 'often lacks'} AES instructions`;
  return { cipher, reason };
}
