import { isIP } from 'node:net';
import { CAP_ACTIONS, type CapAction, type CapSpec } from '@plait/client';
import { parseInterfaceName, UsageError } from './args.js';

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/** `4MiB`, `10GiB`, `500MB`, `1.5GB`, `1048576` (bytes): KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024. */
export function parseSize(flag: string, value: string): number {
  const m = /^(\d{1,15}(?:\.\d{1,6})?)\s*([KMGT]i?B|B)?$/i.exec(value.trim());
  // A lower-case b is bits in every speed test: refuse rather than guess.
  if (!m || (m[2] !== undefined && !m[2].endsWith('B'))) throw new UsageError(`${flag}: "${value}" is not a size; use bytes with a unit, like 500MB, 4MiB or 10GiB`);
  const n = Math.round(Number(m[1]) * UNITS[(m[2] ?? 'B').toUpperCase()]!);
  if (!(n >= 1 && n <= Number.MAX_SAFE_INTEGER)) throw new UsageError(`${flag}: "${value}" is out of range (1 byte to 8 PiB)`);
  return n;
}

export function parseCapAction(flag: string, value: string): CapAction {
  if (!(CAP_ACTIONS as readonly string[]).includes(value)) throw new UsageError(`${flag}: "${value}" is not a cap action; use backup or off`);
  return value as CapAction;
}

/**
 * `PATH=SIZE[/day|/month][:backup|:off]`. PATH is a local address or an
 * interface name (as --bind/--via/--backup/--overflow); without a period the
 * cap is monthly; without an action, `defaultAction` (--cap-action).
 */
export function parseCap(value: string, defaultAction: CapAction): CapSpec {
  const eq = value.indexOf('=');
  if (eq < 0) throw new UsageError(`--cap: expected PATH=SIZE[/day|/month][:backup|:off], like wwan0=10GiB/month, got "${value}"`);
  const path = value.slice(0, eq);
  if (isIP(path) === 0) parseInterfaceName('--cap', path);
  const m = /^([^/:]+)(?:\/([^:]*))?(?::(.*))?$/.exec(value.slice(eq + 1));
  if (!m) throw new UsageError(`--cap: expected PATH=SIZE[/day|/month][:backup|:off], got "${value}"`);
  const bytes = parseSize('--cap', m[1]!);
  const period = m[2] ?? 'month';
  if (period !== 'day' && period !== 'month') throw new UsageError(`--cap: "${period}" is not a period; use /day or /month`);
  const action = m[3] === undefined ? defaultAction : parseCapAction('--cap', m[3]);
  return { path, bytes, period, action };
}

/** Every --cap, with one cap per PATH. */
export function parseCaps(values: readonly string[], actionFlag: string): CapSpec[] {
  const defaultAction = parseCapAction('--cap-action', actionFlag);
  const caps = values.map((v) => parseCap(v, defaultAction));
  const seen = new Set<string>();
  for (const c of caps) {
    const key = c.path.toLowerCase();
    if (seen.has(key)) throw new UsageError(`--cap: ${c.path} has more than one cap; give one per path`);
    seen.add(key);
  }
  return caps;
}
