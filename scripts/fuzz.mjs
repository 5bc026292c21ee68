#!/usr/bin/env node
// npm run fuzz: mutated and random handshakes, records and frames into the
// real Acceptor and Session, in process, on a virtual clock.
//
//   node scripts/fuzz.mjs [--cases N] [--seed S] [--layer handshake|records|frames|all] [--start I]
//
// Default: 1,000,000 cases across all layers, seed 1. Exits 1 on any crash,
// unhandled rejection, uncaught exception, broken invariant, or if the heap
// grows without bound. A failure prints its seed, case index, a command that
// replays it, and a hex dump of its input. Run after `tsc -b` (npm run fuzz does).
import v8 from 'node:v8';
import vm from 'node:vm';
import { describeFailure, runFuzz } from './fuzz/engine.mjs';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = process.argv[i + 1];
  if (v === undefined) throw new Error(`--${name} needs a value`);
  return v;
}

const cases = Number(arg('cases', '1000000'));
const seed = Number(arg('seed', '1'));
const start = Number(arg('start', '0'));
const layer = arg('layer', 'all');
const heapCeilingMb = Number(arg('heap-ceiling-mb', '768'));
if (!['all', 'handshake', 'records', 'frames'].includes(layer)) throw new Error(`unknown --layer ${layer}`);
if (!Number.isInteger(cases) || cases < 1 || !Number.isInteger(seed) || !Number.isInteger(start) || start < 0) {
  throw new Error('--cases, --seed and --start take integers');
}

let unhandled = 0;
let uncaught = 0;
process.on('unhandledRejection', (e) => {
  unhandled++;
  console.error('UNHANDLED REJECTION:', e);
});
process.on('uncaughtException', (e) => {
  uncaught++;
  console.error('UNCAUGHT EXCEPTION:', e);
});

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const mb = (b) => (b / 1048576).toFixed(1);
console.log(`plait fuzz: ${cases.toLocaleString('en')} cases, layer ${layer}, seed ${seed}${start ? `, from case ${start}` : ''}`);
gc();
const heapStart = process.memoryUsage().heapUsed;
const report = await runFuzz({
  cases,
  seed,
  start,
  layer,
  progressEvery: 50_000,
  onProgress: (p) =>
    console.log(
      `  ${p.done.toLocaleString('en')} cases, ${Math.round(p.done / (p.elapsedMs / 1000))}/s, heap ${mb(p.heapUsed)} MiB, rss ${mb(p.rss)} MiB, failures ${p.failures}`,
    ),
});
gc();
const heapEnd = process.memoryUsage().heapUsed;
// Let stray promise rejections surface before counting.
await new Promise((r) => setTimeout(r, 50));

const s = report.stats;
console.log('');
console.log(`cases:        ${report.cases.toLocaleString('en')} (handshake ${report.perLayer.handshake.toLocaleString('en')}, records ${report.perLayer.records.toLocaleString('en')}, frames ${report.perLayer.frames.toLocaleString('en')})`);
console.log(`time:         ${(report.elapsedMs / 1000).toFixed(1)} s, ${Math.round(report.casesPerSec).toLocaleString('en')} cases/s`);
console.log(`server:       ${s.sessionsOpened} sessions opened, ${s.rejects} handshakes refused, ${s.streamsOpened} streams opened, ${s.healthChecks} health checks passed`);
console.log(`peaks:        ${s.peakOpenStreams} open streams, ${s.peakRecvBuffered} B receive buffer, ${s.peakReassemblyParts} reassembly parts, ${s.peakClosedIdIntervals} finished-id ranges in one session`);
console.log(`memory:       peak heap ${mb(report.peakHeap)} MiB, peak RSS ${mb(report.peakRss)} MiB, heap after GC ${mb(heapStart)} -> ${mb(heapEnd)} MiB`);
console.log(`failures:     ${report.failures.length} (crashes ${report.failures.filter((f) => f.kind === 'crash').length}, invariants ${report.failures.filter((f) => f.kind === 'invariant').length}, rejections ${report.failures.filter((f) => f.kind === 'rejection').length}, harness ${report.failures.filter((f) => f.kind === 'harness').length})`);
console.log(`process:      ${unhandled} unhandled rejections, ${uncaught} uncaught exceptions`);
for (const f of report.failures) console.log(`\n${describeFailure(f)}`);

let bad = report.failures.length > 0 || unhandled > 0 || uncaught > 0;
if (report.peakHeap > heapCeilingMb * 1048576) {
  console.log(`\nFAIL: peak heap ${mb(report.peakHeap)} MiB above the ceiling of ${heapCeilingMb} MiB`);
  bad = true;
}
if (heapEnd - heapStart > 64 * 1048576) {
  console.log(`\nFAIL: heap after GC grew by ${mb(heapEnd - heapStart)} MiB over the run (leak?)`);
  bad = true;
}
console.log(bad ? '\nFUZZ FAILED' : '\nfuzz OK');
process.exit(bad ? 1 : 0);
