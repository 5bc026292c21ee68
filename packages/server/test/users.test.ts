/** A named user's figures: stream and datagram bytes both count, each way, for /stats and for caps. */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { UserStats } from '../src/users.js';

describe('UserStats', () => {
  it("counts a user's datagram bytes with its stream bytes (figures and cap totals), and nobody else's", () => {
    let now = 0;
    const stats = new UserStats((name) => name === 'alice' || name === 'bob', () => now);
    const socket = Object.assign(new EventEmitter(), { bytesRead: 0, bytesWritten: 0 });
    stats.streamOpened('alice', socket);
    socket.bytesWritten = 1000; // up, to the target
    socket.bytesRead = 5000; // down, from it
    stats.datagramBytes('alice', 300, 0);
    stats.datagramBytes('alice', 0, 700);
    stats.datagramBytes('mallory', 10_000, 10_000); // not in the users file: no state, no figures
    expect(stats.totalBytes('alice')).toBe(1000 + 5000 + 300 + 700);
    socket.emit('close');
    expect(stats.totalBytes('alice')).toBe(7000);
    now = 2000;
    const figures = stats.snapshot(['alice', 'bob'], () => 1);
    expect(figures.map((f) => [f.user, f.bytesUp, f.bytesDown])).toEqual([
      ['alice', 1300, 5700],
      ['bob', 0, 0],
    ]);
    expect(stats.totalBytes('mallory')).toBe(0);
  });
});
