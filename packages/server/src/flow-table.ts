/**
 * The datagram flows (UDP associations) of one session, with the two bounds
 * a client cannot raise: at most `maxFlows` at once, and each one forgotten
 * after `idleMs` without a datagram either way. Pure (no sockets, time
 * passed in), so the server's relay owns the sockets and this owns the rules.
 */
export class FlowTable<T> {
  private readonly flows = new Map<number, { value: T; lastActive: number }>();

  constructor(
    private readonly maxFlows: number,
    private readonly idleMs: number,
  ) {}

  get size(): number {
    return this.flows.size;
  }

  get(flow: number): T | undefined {
    return this.flows.get(flow)?.value;
  }

  /** Adds a new flow; false at the limit (the caller drops the datagram and counts it). */
  add(flow: number, value: T, now: number): boolean {
    if (this.flows.size >= this.maxFlows) return false;
    this.flows.set(flow, { value, lastActive: now });
    return true;
  }

  /** A datagram went through the flow, either way. */
  touch(flow: number, now: number): void {
    const e = this.flows.get(flow);
    if (e) e.lastActive = now;
  }

  delete(flow: number): T | undefined {
    const e = this.flows.get(flow);
    if (!e) return undefined;
    this.flows.delete(flow);
    return e.value;
  }

  /** Removes and returns the flows idle for `idleMs` or longer. */
  expire(now: number): T[] {
    const out: T[] = [];
    for (const [flow, e] of this.flows) {
      if (now - e.lastActive >= this.idleMs) {
        this.flows.delete(flow);
        out.push(e.value);
      }
    }
    return out;
  }

  /** Removes and returns every flow (the session ended). */
  clear(): T[] {
    const out = [...this.flows.values()].map((e) => e.value);
    this.flows.clear();
    return out;
  }
}
