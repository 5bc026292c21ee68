// Types for the fuzz engine (used by the CI slice test, test/fuzz-slice.test.ts).
export interface FuzzFailure {
  kind: 'crash' | 'invariant' | 'rejection' | 'harness';
  message: string;
  stack?: string;
  layer?: string;
  index?: number;
  seed?: number;
  caseKind?: string;
  where?: string;
  inputs: Uint8Array[];
  output?: Uint8Array;
}

export interface FuzzReport {
  seed: number;
  layer: string;
  start: number;
  cases: number;
  perLayer: { handshake: number; records: number; frames: number };
  elapsedMs: number;
  casesPerSec: number;
  failures: FuzzFailure[];
  stats: Record<string, number>;
  peakHeap: number;
  peakRss: number;
  heapSamples: { cases: number; heapUsed: number }[];
}

export interface FuzzOptions {
  cases?: number;
  seed?: number;
  layer?: 'all' | 'handshake' | 'records' | 'frames';
  start?: number;
  healthEvery?: number;
  maxFailures?: number;
  progressEvery?: number;
  onProgress?(p: { done: number; elapsedMs: number; heapUsed: number; rss: number; failures: number }): void;
}

export const SECRET: string;
export const LAYERS: readonly string[];
export function runFuzz(opts?: FuzzOptions): Promise<FuzzReport>;
export function describeFailure(f: FuzzFailure, maxBytes?: number): string;
