/** A record being filled: inline frames and payloads by reference come out as one plaintext, in order. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StagedRecord } from '../src/staged-record.js';

describe('StagedRecord', () => {
  it('inline bytes and referenced payloads seal as their concatenation, in the order they were added', () => {
    const rec = new StagedRecord(new Uint8Array(100));
    const write = (bytes: number[]): void => {
      rec.buf.set(bytes, rec.pos);
      rec.pos += bytes.length;
    };
    write([1, 2]);
    const payload = Uint8Array.of(10, 11, 12, 13, 14, 15);
    rec.appendByReference(6, (out) => out.push(payload.subarray(0, 4), payload.subarray(4)));
    write([3]);
    rec.appendByReference(2, (out) => out.push(Uint8Array.of(20, 21)));
    rec.appendByReference(1, (out) => out.push(Uint8Array.of(30)));
    write([4, 5]);
    expect(rec.size).toBe(2 + 6 + 1 + 2 + 1 + 2);
    expect(rec.room).toBe(100 - rec.size);
    expect([...Buffer.concat(rec.plaintext())]).toEqual([1, 2, 10, 11, 12, 13, 14, 15, 3, 20, 21, 30, 4, 5]);
    // The referenced payload is not copied: the part is the caller's memory.
    expect(rec.plaintext().some((p) => p.buffer === payload.buffer)).toBe(true);
  });

  it('without references the plaintext is one view of the inline bytes', () => {
    const rec = new StagedRecord(new Uint8Array(16));
    rec.buf.set([7, 8, 9]);
    rec.pos = 3;
    const parts = rec.plaintext();
    expect(parts.length).toBe(1);
    expect([...parts[0]!]).toEqual([7, 8, 9]);
    expect(parts[0]!.buffer).toBe(rec.buf.buffer);
  });

  it('referenced bytes count against the record capacity, not the inline buffer', () => {
    const rec = new StagedRecord(new Uint8Array(10));
    rec.appendByReference(8, (out) => out.push(new Uint8Array(8)));
    expect(rec.size).toBe(8);
    expect(rec.room).toBe(2);
  });

  it('materialize copies referenced payloads in: same plaintext, no view of the caller memory left', () => {
    const rec = new StagedRecord(new Uint8Array(64));
    rec.buf.set([1, 2], 0);
    rec.pos = 2;
    const payload = Uint8Array.of(10, 11, 12);
    rec.appendByReference(3, (out) => out.push(payload));
    rec.buf.set([3], rec.pos);
    rec.pos += 1;
    const before = [...Buffer.concat(rec.plaintext())];
    rec.materialize();
    payload.fill(0); // the caller reuses its memory
    const parts = rec.plaintext();
    expect([...Buffer.concat(parts)]).toEqual(before);
    expect(parts.every((p) => p.buffer === rec.buf.buffer)).toBe(true);
    expect(rec.size).toBe(6);
    // More frames can follow after materializing.
    rec.appendByReference(2, (out) => out.push(Uint8Array.of(20, 21)));
    expect([...Buffer.concat(rec.plaintext())]).toEqual([...before, 20, 21]);
  });

  it('materialize keeps any interleaving of inline and referenced bytes (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 40 })), { maxLength: 12 }), (steps) => {
        const rec = new StagedRecord(new Uint8Array(600));
        const want: number[] = [];
        for (const [byRef, bytes] of steps) {
          if (byRef) rec.appendByReference(bytes.length, (out) => out.push(bytes));
          else {
            rec.buf.set(bytes, rec.pos);
            rec.pos += bytes.length;
          }
          want.push(...bytes);
        }
        rec.materialize();
        for (const [, bytes] of steps) bytes.fill(0); // the referenced memory is reused
        expect([...Buffer.concat(rec.plaintext())]).toEqual(want);
        expect(rec.size).toBe(want.length);
      }),
      { numRuns: 300 },
    );
  });
});
