import type { ByteChannel, ChannelHandlers, KernelPathInfo } from '@plait/core';

/**
 * A subflow's channel with its bytes counted both ways, for data caps: what
 * goes into and comes out of the TCP socket (records with their headers and
 * tags, and the handshake), not TCP/IP headers or retransmissions.
 * `count` runs synchronously on every write and read: keep it cheap.
 */
export class CountingChannel implements ByteChannel {
  holding?: (bytes: number) => void;
  kernelInfo?: () => KernelPathInfo | undefined;

  constructor(
    private readonly inner: ByteChannel,
    private readonly count: (sent: number, received: number) => void,
  ) {
    if (inner.holding) this.holding = (bytes) => inner.holding!(bytes);
    if (inner.kernelInfo) this.kernelInfo = () => inner.kernelInfo!();
  }

  get localLabel(): string {
    return this.inner.localLabel;
  }
  get remoteLabel(): string {
    return this.inner.remoteLabel;
  }
  write(data: Uint8Array): boolean {
    this.count(data.length, 0);
    return this.inner.write(data);
  }
  setHandlers(h: ChannelHandlers): void {
    this.inner.setHandlers({
      data: (chunk) => {
        this.count(0, chunk.length);
        h.data(chunk);
      },
      drain: () => h.drain(),
      close: (e) => h.close(e),
    });
  }
  end(): void {
    this.inner.end();
  }
  destroy(error?: Error): void {
    this.inner.destroy(error);
  }
  pause(): void {
    this.inner.pause();
  }
  resume(): void {
    this.inner.resume();
  }
}
