import { StateFile, isStoredCount, parseStateText, type StateFileSpec } from '@plait/node';
import { CAP_PERIODS, type CapPeriod } from './cap-period.js';

/** One cap's usage as stored: the period it counts and the bytes used in it. */
export interface StoredUsage {
  period: CapPeriod;
  /** Unix ms of the period's start (local midnight). */
  periodStart: number;
  used: number;
}

export interface CapStore {
  /** Usage by cap path; empty when there is no state yet (or it could not be read: reported by `warn`). */
  load(): Map<string, StoredUsage>;
  save(usage: ReadonlyMap<string, StoredUsage>): void;
}

/** Entries kept at most (caps no longer configured are kept too, so a cap removed and restored keeps its count). */
const MAX_ENTRIES = 1024;

/** `DIR/caps.json`: `{"format": "plait-cap-usage", "version": 1, "caps": {PATH: StoredUsage}}`. */
const SPEC: StateFileSpec<Map<string, StoredUsage>> = {
  name: 'caps.json',
  format: 'plait-cap-usage',
  version: 1,
  key: 'caps',
  maxBytes: 1024 * 1024,
  kind: 'plait cap state',
  contents: 'cap usage',
  parseBody: parseCaps,
};

/**
 * Client `--cap` usage in `DIR/caps.json`; reading, writing and a bad file
 * are the shared state file's (packages/node/src/state-file.ts): a file that
 * is not valid state is reported once, moved aside and usage starts at 0.
 */
export class CapStateFile implements CapStore {
  private readonly state: StateFile<Map<string, StoredUsage>>;

  constructor(dir: string, warn: (msg: string) => void) {
    this.state = new StateFile(dir, SPEC, warn);
  }

  get file(): string {
    return this.state.file;
  }

  load(): Map<string, StoredUsage> {
    return this.state.load() ?? new Map();
  }

  save(usage: ReadonlyMap<string, StoredUsage>): void {
    // No prototype: a stored path named __proto__ stays a plain key.
    const caps = Object.create(null) as Record<string, StoredUsage>;
    for (const [path, u] of [...usage].slice(0, MAX_ENTRIES)) caps[path] = { period: u.period, periodStart: u.periodStart, used: u.used };
    this.state.save(caps);
  }
}

/** The stored usage in a caps.json text, or why it is not plait cap state. */
export function parseState(text: string): Map<string, StoredUsage> | string {
  return parseStateText(SPEC, text);
}

function parseCaps(caps: unknown): Map<string, StoredUsage> | string {
  if (typeof caps !== 'object' || caps === null || Array.isArray(caps)) return '"caps" is not an object';
  const entries = Object.entries(caps as Record<string, unknown>);
  if (entries.length > MAX_ENTRIES) return `more than ${MAX_ENTRIES} caps`;
  const out = new Map<string, StoredUsage>();
  for (const [path, v] of entries) {
    if (typeof v !== 'object' || v === null) return `caps.${path} is not an object`;
    const e = v as Record<string, unknown>;
    if (!CAP_PERIODS.includes(e.period as CapPeriod)) return `caps.${path}.period is not day or month`;
    if (!isStoredCount(e.periodStart)) return `caps.${path}.periodStart is not a time`;
    if (!isStoredCount(e.used)) return `caps.${path}.used is not a byte count`;
    out.set(path, { period: e.period as CapPeriod, periodStart: e.periodStart, used: e.used });
  }
  return out;
}
