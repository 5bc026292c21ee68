/** What SocketBytes reads from a socket (a net.Socket has all of it). */
export interface CountedSocket {
  readonly bytesRead: number;
  readonly bytesWritten: number;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Bytes read and written by a group of sockets, open and closed (a
 * publication's connections, a user's target sockets): the open ones are
 * read live, a closed one's totals are kept and the socket let go. One
 * owner adds sockets; anyone may read the figures.
 */
export class SocketBytes<S extends CountedSocket = CountedSocket> {
  private readonly live = new Set<S>();
  private closedRead = 0;
  private closedWritten = 0;
  private added = 0;

  add(socket: S): void {
    this.live.add(socket);
    this.added++;
    socket.once('close', () => {
      if (!this.live.delete(socket)) return;
      this.closedRead += socket.bytesRead;
      this.closedWritten += socket.bytesWritten;
    });
  }

  /** Sockets still open. */
  get open(): number {
    return this.live.size;
  }

  /** The open sockets (e.g. to reset them all). */
  openSockets(): IterableIterator<S> {
    return this.live.values();
  }

  /** Sockets ever added. */
  get total(): number {
    return this.added;
  }

  get bytesRead(): number {
    let n = this.closedRead;
    for (const s of this.live) n += s.bytesRead;
    return n;
  }

  get bytesWritten(): number {
    let n = this.closedWritten;
    for (const s of this.live) n += s.bytesWritten;
    return n;
  }
}
