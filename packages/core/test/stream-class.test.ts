import { describe, expect, it } from 'vitest';
import { SMALL_FLOW_BYTES, SMALL_FLOW_BYTES_PER_SEC, StreamClassifier } from '../src/stream-class.js';

describe('stream classes', () => {
  it('puts streams to a latency port in the latency class whatever they send', () => {
    const c = new StreamClassifier([22, 5060]);
    expect(c.classify({}, { target: { port: 22 }, outstanding: 10_000_000 }, 16384, 0)).toBe('latency');
    expect(c.classify({}, { target: { port: 443 }, outstanding: 10_000_000 }, 16384, 0)).toBe('bulk');
    c.setPorts([]);
    expect(c.classify({}, { target: { port: 22 }, outstanding: 10_000_000 }, 16384, 0)).toBe('bulk');
    expect(c.latencyPorts).toEqual([]);
  });

  it('treats a small request/response flow as latency class and a bulk one as bulk', () => {
    const c = new StreamClassifier([]);
    expect(c.classify({}, { target: { port: 9003 }, outstanding: 1024 }, 1024, 0)).toBe('latency');
    expect(c.classify({}, { target: undefined, outstanding: SMALL_FLOW_BYTES }, 1024, 0)).toBe('latency');
    expect(c.classify({}, { target: { port: 9003 }, outstanding: SMALL_FLOW_BYTES + 1 }, 1024, 0)).toBe('bulk');
  });

  it('stops duplicating a flow that writes small pieces steadily (its budget runs out, then refills with time)', () => {
    const c = new StreamClassifier([]);
    const key = {};
    const s = { target: { port: 80 }, outstanding: 1024 };
    let latency = 0;
    for (let i = 0; i < 200; i++) if (c.classify(key, s, 1024, 0) === 'latency') latency++;
    expect(latency).toBe(SMALL_FLOW_BYTES_PER_SEC / 1024);
    expect(c.classify(key, s, 1024, 0)).toBe('bulk');
    // 1 KiB every 50 ms (20 KiB/s) stays within the budget for good.
    let t = 1000;
    let all = true;
    for (let i = 0; i < 400; i++, t += 50) all &&= c.classify(key, s, 1024, t) === 'latency';
    expect(all).toBe(true);
    // Another stream has its own budget.
    expect(c.classify({}, s, 1024, 0)).toBe('latency');
  });
});
