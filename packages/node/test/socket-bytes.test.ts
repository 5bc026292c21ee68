/** A group of sockets' bytes: open ones read live, closed ones kept once and let go. */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { SocketBytes } from '../src/socket-bytes.js';

const fake = () => Object.assign(new EventEmitter(), { bytesRead: 0, bytesWritten: 0 });

describe('SocketBytes', () => {
  it('sums open sockets live and closed ones once; counts open and ever added', () => {
    const g = new SocketBytes<ReturnType<typeof fake>>();
    const a = fake();
    const b = fake();
    g.add(a);
    g.add(b);
    a.bytesRead = 10;
    a.bytesWritten = 1;
    b.bytesRead = 5;
    expect([g.bytesRead, g.bytesWritten, g.open, g.total]).toEqual([15, 1, 2, 2]);
    a.emit('close');
    a.emit('close'); // a second close event counts nothing twice
    a.bytesRead = 999; // a closed socket is no longer read
    b.bytesWritten = 7;
    expect([g.bytesRead, g.bytesWritten, g.open, g.total]).toEqual([15, 8, 1, 2]);
    expect([...g.openSockets()]).toEqual([b]);
  });
});
