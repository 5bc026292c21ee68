/**
 * The minimal duplex byte stream a subflow runs on: a TCP socket, a
 * WebSocket, or an in-memory pipe in tests. Implementations deliver bytes in
 * order and report close exactly once.
 */
export interface ChannelHandlers {
  data(chunk: Uint8Array): void;
  /** The channel can take more writes after `write` returned false. */
  drain(): void;
  /** The channel is gone (either side closed, reset or failed). */
  close(error?: Error): void;
}

export interface ByteChannel {
  /** Queue bytes; false means "over the high-water mark, wait for drain". */
  write(data: Uint8Array): boolean;
  /** Close gracefully after queued bytes are written. */
  end(): void;
  /** Close at once, dropping queued bytes. */
  destroy(error?: Error): void;
  /** Stop / restart delivering `data` (receive-side backpressure). */
  pause(): void;
  resume(): void;
  /**
   * The consumer still holds views of only the last `bytes` bytes `data` gave
   * it; the channel may reuse the memory of everything before them. Optional
   * on both sides: a consumer that never calls it keeps every view valid.
   */
  holding?(bytes: number): void;
  /** Attach the consumer; bytes that arrived before are delivered now. */
  setHandlers(handlers: ChannelHandlers): void;
  /** The kernel's view of the connection (Linux TCP_INFO), where available. */
  kernelInfo?(): KernelPathInfo | undefined;
  /** Human-readable endpoint description for logs and stats. */
  readonly localLabel: string;
  readonly remoteLabel: string;
}

/** What the kernel knows about a TCP subflow (a subset of Linux tcp_info). */
export interface KernelPathInfo {
  rttMs: number;
  minRttMs: number;
  cwnd: number;
  unackedSegments: number;
  notsentBytes: number;
  totalRetrans: number;
  deliveryRateBytesPerSec: number;
  /** tcpi_ca_state: 0 open, 1 disorder, 2 CWR, 3 recovery, 4 loss (RTO); absent when unknown. */
  caState?: number;
  /** tcpi_snd_mss, bytes; absent when unknown. */
  mss?: number;
}
