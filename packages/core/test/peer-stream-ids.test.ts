import { describe, expect, it } from 'vitest';
import { PeerStreamIds } from '../src/peer-stream-ids.js';

describe('PeerStreamIds', () => {
  it('knows the peer parity and merges finished ids opened in order', () => {
    const ids = new PeerStreamIds(1, 64); // the server's view: clients open odd ids
    expect(ids.isPeer(3)).toBe(true);
    expect(ids.isPeer(4)).toBe(false);
    for (let id = 1; id < 2000; id += 2) {
      ids.opened(id);
      expect(ids.finish(id)).toBe(true);
    }
    expect(ids.ranges).toBe(1);
    expect(ids.isFinished(1999)).toBe(true);
    expect(ids.isFinished(2001)).toBe(false);
  });

  it('a RESET may run ahead of DATA only within 4 x maxStreams ids of the highest opened', () => {
    const ids = new PeerStreamIds(1, 64);
    ids.opened(101);
    expect(ids.mayBeInFlight(101 + 256)).toBe(true);
    expect(ids.mayBeInFlight(101 + 258)).toBe(false);
  });

  it('a peer leaving more than 4 x maxStreams gaps is refused', () => {
    const ids = new PeerStreamIds(1, 16);
    let ok = true;
    let n = 0;
    for (let id = 1; ok && n < 1000; id += 4, n++) ok = ids.finish(id);
    expect(ok).toBe(false);
    expect(n).toBe(4 * 16 + 1);
  });
});
