/**
 * `--config FILE`: options from a JSON or YAML file (YAML 1.2, of which JSON
 * is a subset, parsed by `yaml`). Keys are the command's long flag names;
 * repeatable flags take a list (or one value); flags given on the command
 * line override the file. Mistakes get the flags' own one-line messages,
 * with `FILE: key:` in place of `--flag:`.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Command, Option } from 'commander';
import { parseDocument } from 'yaml';
import { readOpenFile } from '@plait/node';
import { UsageError } from './args.js';

/** A config file bigger than this is a wrong path, not a config. */
const MAX_CONFIG_BYTES = 256 * 1024;
/** YAML aliases expand: bound them (a "billion laughs" file must not eat the memory). */
const MAX_ALIASES = 100;

/** Options naming a file: a relative path in a config file is relative to that file's directory. */
const PATH_KEYS = new Set(['secret-file', 'proxy-auth-file', 'ca', 'users', 'state-dir']);

/** Options that set one thing between them: the command line giving one overrides all of them in the file. */
const GROUPS: readonly (readonly string[])[] = [
  ['secret', 'secret-file'],
  ['proxy-auth', 'socks-auth', 'proxy-auth-file'],
];

/** Reads FILE and parses it to a plain mapping. */
export function readConfigFile(file: string, flag = '--config'): { raw: Record<string, unknown>; mode: number } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let text: string;
  let mode: number;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`${flag}: ${file} is not a regular file`);
    if (st.size > MAX_CONFIG_BYTES) throw new UsageError(`${flag}: ${file} is too large for a config file (${st.size} bytes)`);
    mode = st.mode;
    text = readOpenFile(fd, st.size).toString('utf8');
  } finally {
    closeSync(fd);
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const err = doc.errors[0];
  if (err) {
    // prettyErrors adds " at line L, column C:" and the source lines: keep the first line, as "FILE line L: what".
    const at = err.linePos?.[0];
    const what = (err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    throw new UsageError(`${file}${at ? ` line ${at.line}` : ''}: ${what}`);
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (e) {
    throw new UsageError(`${file}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  }
  if (raw === null || raw === undefined) return { raw: {}, mode };
  if (typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Map) {
    throw new UsageError(`${file}: expected option names with their values, like "socks: 127.0.0.1:1080"`);
  }
  return { raw: raw as Record<string, unknown>, mode };
}

/** Levenshtein distance, for "did you mean" (names are short). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function suggest(key: string, names: string[]): string | undefined {
  const k = key.replace(/^-+/, '');
  if (k !== key && names.includes(k)) return k;
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = distance(k, n);
    if (d < bestD) {
      best = n;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(k.length / 3)) ? best : undefined;
}

const isScalar = (v: unknown): v is string | number => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
const isRepeatable = (o: Option): boolean => Array.isArray(o.defaultValue);

/** One file value as commander would have stored the flag's. */
function convert(file: string, key: string, opt: Option, v: unknown): unknown {
  if (opt.isBoolean()) {
    if (typeof v !== 'boolean') throw new UsageError(`${file}: ${key}: expected true or false`);
    return v;
  }
  if (isRepeatable(opt)) {
    if (isScalar(v)) return [String(v)];
    if (Array.isArray(v) && v.every(isScalar)) return v.map(String);
    throw new UsageError(`${file}: ${key}: expected a value or a list of values`);
  }
  if (isScalar(v)) return String(v);
  throw new UsageError(`${file}: ${key}: expected one value${Array.isArray(v) ? ', not a list (this option is not repeatable)' : ''}`);
}

/** Options in the form commander hands to an action (attribute names), as one load of the file gives them. */
export interface LoadedFlags<T> {
  flags: T;
  /** Warnings about the file itself (mode), for the log. */
  warnings: string[];
  /** A UsageError about a flag the file set, reworded to name the file and key; anything else as it was. */
  explain(e: unknown): unknown;
}

/**
 * A command's options with its config file: the defaults, then the file,
 * then what the command line gave. `load()` reads the file again each time
 * (SIGHUP), so the command line keeps overriding it.
 */
export class CommandConfig<T> {
  readonly file: string | undefined;
  private readonly options: Option[];
  /** Attribute name -> value, for options given on the command line (or by environment). */
  private readonly cli = new Map<string, unknown>();
  private readonly cliValues: Record<string, unknown>;

  /** `file` overrides the command's --config (check-config names it as an argument). */
  constructor(cmd: Command, file?: string) {
    this.options = cmd.options.filter((o) => o.long && o.long !== '--config');
    const all = cmd.opts();
    this.file = file ?? (typeof all.config === 'string' ? all.config : undefined);
    for (const o of this.options) {
      const attr = o.attributeName();
      const src = cmd.getOptionValueSource(attr);
      if (src === 'cli' || src === 'env') this.cli.set(attr, all[attr]);
    }
    this.cliValues = all;
  }

  /** Long names (without --) this command takes in a file. */
  get keys(): string[] {
    return this.options.map((o) => o.long!.slice(2));
  }

  load(): LoadedFlags<T> {
    if (this.file === undefined) return { flags: this.cliValues as T, warnings: [], explain: (e) => e };
    const file = this.file;
    const { raw, mode } = readConfigFile(file);
    const byKey = new Map(this.options.map((o) => [o.long!.slice(2), o]));
    const fromFile = new Map<string, unknown>();
    for (const [key, v] of Object.entries(raw)) {
      if (key === 'config') throw new UsageError(`${file}: config: a config file cannot name another one`);
      const opt = byKey.get(key);
      if (!opt) {
        const s = suggest(key, [...byKey.keys()]);
        throw new UsageError(`${file}: ${key}: unknown option${s ? ` (did you mean ${s}?)` : ''}`);
      }
      if (v === null) throw new UsageError(`${file}: ${key}: a value is required`);
      let value = convert(file, key, opt, v);
      if (PATH_KEYS.has(key) && typeof value === 'string' && value !== '' && !isAbsolute(value)) value = resolve(dirname(file), value);
      fromFile.set(opt.attributeName(), value);
    }
    const attrOf = (key: string): string => byKey.get(key)?.attributeName() ?? key;
    for (const group of GROUPS) {
      if (group.some((k) => this.cli.has(attrOf(k)))) for (const k of group) fromFile.delete(attrOf(k));
    }
    const flags: Record<string, unknown> = {};
    const keyOf = new Map<string, string>();
    for (const o of this.options) {
      const attr = o.attributeName();
      keyOf.set(attr, o.long!.slice(2));
      if (this.cli.has(attr)) flags[attr] = this.cli.get(attr);
      else if (fromFile.has(attr)) flags[attr] = fromFile.get(attr);
      else if (o.defaultValue !== undefined) flags[attr] = Array.isArray(o.defaultValue) ? [...(o.defaultValue as unknown[])] : o.defaultValue;
    }
    const warnings: string[] = [];
    if (fromFile.has('secret')) {
      flags.secretInFile = file;
      if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
        warnings.push(`${file}: holds the secret and is readable by other users (mode ${(mode & 0o777).toString(8).padStart(3, '0')}); run: chmod 600 ${file}`);
      }
    }
    const fileFlags = new Set([...fromFile.keys()].filter((a) => !this.cli.has(a)).map((a) => `--${keyOf.get(a)}`));
    return {
      flags: flags as T,
      warnings,
      explain: (e) => {
        if (!(e instanceof UsageError)) return e;
        const m = /^(--[\w-]+): (.*)$/s.exec(e.message);
        if (!m || !fileFlags.has(m[1]!)) return e;
        return new UsageError(`${file}: ${m[1]!.slice(2)}: ${m[2]}`);
      },
    };
  }
}

/** Keys only a server config has, and keys only a client config has (check-config guesses the kind from them). */
export function guessConfigKind(raw: Record<string, unknown>, clientKeys: string[], serverKeys: string[]): 'client' | 'server' | undefined {
  const keys = Object.keys(raw);
  const client = keys.filter((k) => clientKeys.includes(k) && !serverKeys.includes(k));
  const server = keys.filter((k) => serverKeys.includes(k) && !clientKeys.includes(k));
  if (client.length > 0 && server.length === 0) return 'client';
  if (server.length > 0 && client.length === 0) return 'server';
  return undefined;
}
