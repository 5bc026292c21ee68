import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolvConfNameserver } from '../src/resolv-conf.js';

describe('resolvConfNameserver', () => {
  const file = (text: string): string => {
    const p = join(mkdtempSync(join(tmpdir(), 'plait-resolv-')), 'resolv.conf');
    writeFileSync(p, text);
    return p;
  };
  it('takes the first nameserver that is an IP address', () => {
    expect(resolvConfNameserver(file('# generated\nsearch lan\nnameserver bogus\n  nameserver 10.0.0.53\nnameserver 1.1.1.1\n'))).toBe('10.0.0.53');
    expect(resolvConfNameserver(file('nameserver fe80::1%eth0\n'))).toBe('fe80::1%eth0');
  });
  it('gives nothing when there is none or no file', () => {
    expect(resolvConfNameserver(file('search lan\n'))).toBeUndefined();
    expect(resolvConfNameserver('/nonexistent/resolv.conf')).toBeUndefined();
  });
});
