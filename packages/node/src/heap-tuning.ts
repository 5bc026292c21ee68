/**
 * Keeps V8's full garbage collections from dominating a proxy's CPU.
 *
 * A relay keeps every byte it sends until the peer acknowledges it, so the
 * buffers it reads survive a young-generation collection and their backing
 * stores count toward the old generation. V8 sizes the old generation's next
 * limit as a small multiple of what survived the last full collection; with
 * the 8-10 MB heap plait lives in, that limit is a few MB away and a loopback
 * transfer triggered a full (mark-compact) collection every ~70 ms: a fifth
 * of both processes' CPU (scripts/profile-overhead.mjs --node-flags --trace-gc).
 * `node --initial-old-space-size=128` fixes it but only works on node's own
 * command line, which an installed `plait` does not control.
 *
 * The heap growing factor, unlike the initial size, is read at every full
 * collection, so after each one we set it so the next limit lands near a
 * floor (a fraction of the machine's memory, at most 128 MiB); a heap already
 * above the floor gets V8's own factor back.
 */
import { totalmem } from 'node:os';
import { PerformanceObserver, constants as perfConstants, type PerformanceEntry } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

const MIB = 1024 * 1024;
/** Never ask for more than this growth at once (x21): bounds a tiny heap's first limit. */
const MAX_PERCENT = 2000;

/** The floor: 128 MiB, or 1/16 of the machine's memory on small routers. */
export function defaultHeapFloor(memoryBytes = totalmem()): number {
  return Math.max(16 * MIB, Math.min(128 * MIB, Math.floor(memoryBytes / 16)));
}

/**
 * The `--heap-growing-percent` that puts the next old-generation limit at
 * `floorBytes` for a heap of `liveBytes`; 0 (V8 decides) when the heap has
 * reached the floor.
 */
export function growingPercentFor(liveBytes: number, floorBytes: number): number {
  const live = Math.max(liveBytes, MIB);
  if (live >= floorBytes) return 0;
  return Math.min(MAX_PERCENT, Math.ceil((floorBytes / live - 1) * 100));
}

export interface HeapTuning {
  /** The percent last set (0: V8's own factor). */
  readonly percent: number;
  stop(): void;
}

/** Set the growing factor now and again after every full collection. */
export function tuneHeapForThroughput(floorBytes = defaultHeapFloor()): HeapTuning {
  let percent = -1;
  const apply = (): void => {
    const next = growingPercentFor(getHeapStatistics().used_heap_size, floorBytes);
    if (next === percent) return;
    percent = next;
    setFlagsFromString(`--heap-growing-percent=${next}`);
  };
  apply();
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail;
      if (detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) {
        apply();
        return;
      }
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    get percent() {
      return percent;
    },
    stop() {
      observer.disconnect();
      if (percent !== 0) setFlagsFromString('--heap-growing-percent=0');
      percent = 0;
    },
  };
}
