/**
 * `plait server --users FILE`: the server's named users (README "Serving
 * several households", PROTOCOL.md 3.2). JSON or YAML, read with the config
 * file's reader (size and alias limits). Every mistake is one line naming
 * the file, the user and the key.
 */
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, resolve } from 'node:path';
import { deriveSecretKeys, identityFromPrivate, MIN_SECRET_BYTES, userNameProblem, type SecretKeys, type ServerIdentity } from '@plait/core';
import { readSecretFile, UsageError } from './args.js';
import { readConfigFile } from './config-file.js';

export interface UserEntry {
  name: string;
  keys: SecretKeys;
  /** SHA-256 of the secret: tells a re-keyed user on reload without keeping two copies of secrets around. */
  fingerprint: string;
  revoked: boolean;
  maxSessions?: number;
  /** Bytes per second, both directions together. */
  rateBytesPerSec?: number;
  cap?: { bytes: number; period: 'day' | 'month' };
  publish: number[];
}

export interface UsersTable {
  file: string;
  identity: ServerIdentity;
  users: Map<string, UserEntry>;
  warnings: string[];
}

/** A users file with more users than this is a mistake (each costs a few hundred bytes). */
const MAX_USERS = 1_000_000;
const USER_KEYS = new Set(['name', 'secret', 'secret-file', 'max-sessions', 'rate', 'cap', 'publish', 'revoked']);
const TOP_KEYS = new Set(['users', 'identity-key', 'identity-key-file']);

const RATE_UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** `50mbit`, `2.5gbit`, `800kbit` -> bytes per second. */
export function parseRate(value: string): number | undefined {
  const m = /^(\d{1,12}(?:\.\d{1,6})?)\s*(bit|kbit|mbit|gbit)$/i.exec(value.trim());
  if (!m) return undefined;
  const bytes = (Number(m[1]) * RATE_UNITS[m[2]!.toLowerCase()]!) / 8;
  return bytes >= 1 ? bytes : undefined;
}

/** `100GiB/month`, `5GB/day` -> bytes and period. */
export function parseUserCap(value: string): { bytes: number; period: 'day' | 'month' } | undefined {
  const m = /^(\d{1,15}(?:\.\d{1,6})?)\s*([kmgt]i?b|b)\/(day|month)$/i.exec(value.trim());
  if (!m) return undefined;
  const bytes = Math.round(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
  if (!(bytes >= 1 && bytes <= Number.MAX_SAFE_INTEGER)) return undefined;
  return { bytes, period: m[3]!.toLowerCase() as 'day' | 'month' };
}

function nearest(word: string, known: Iterable<string>): string {
  for (const k of known) if (k.replace(/-/g, '') === word.replace(/[-_]/g, '').toLowerCase()) return ` (did you mean "${k}"?)`;
  return '';
}

export function loadUsersFile(file: string): UsersTable {
  const { raw } = readConfigFile(file, '--users');
  const warnings: string[] = [];
  const at = (where: string, what: string): UsageError => new UsageError(`${file}: ${where}: ${what}`);
  for (const k of Object.keys(raw)) if (!TOP_KEYS.has(k)) throw at(k, `unknown key${nearest(k, TOP_KEYS)}; expected users and identity-key or identity-key-file`);
  const rel = (p: string): string => (isAbsolute(p) ? p : resolve(dirname(file), p));

  let keyText: string;
  if (typeof raw['identity-key'] === 'string' && raw['identity-key-file'] === undefined) keyText = raw['identity-key'];
  else if (typeof raw['identity-key-file'] === 'string' && raw['identity-key'] === undefined) keyText = readSecretFile(`${file}: identity-key-file`, rel(raw['identity-key-file']), warnings);
  else throw at('identity-key', 'give the server identity key (identity-key or identity-key-file, not both); make one with `plait keygen --identity`');
  const keyBytes = Buffer.from(keyText, 'base64url');
  if (keyBytes.length !== 32 || keyBytes.toString('base64url') !== keyText.replace(/=+$/, '')) {
    throw at('identity-key', 'not a 32-byte base64url key; make one with `plait keygen --identity`');
  }
  const identity = identityFromPrivate(keyBytes);

  const list = raw.users;
  if (!Array.isArray(list)) throw at('users', 'expected a list of users, like [{name: alice, secret-file: alice.key}]');
  if (list.length > MAX_USERS) throw at('users', `${list.length} users, limit ${MAX_USERS}`);
  const users = new Map<string, UserEntry>();
  const seenSecrets = new Map<string, string>();
  list.forEach((item: unknown, i: number) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw at(`users[${i}]`, 'expected a mapping with name and secret or secret-file');
    const u = item as Record<string, unknown>;
    const name = u.name;
    if (typeof name !== 'string') throw at(`users[${i}]`, 'name: required, a string');
    const problem = userNameProblem(name);
    if (problem) throw at(`user ${JSON.stringify(name)}`, `name: ${problem}`);
    const where = `user ${name}`;
    if (users.has(name)) throw at(where, 'name: listed twice');
    for (const k of Object.keys(u)) if (!USER_KEYS.has(k)) throw at(where, `${k}: unknown key${nearest(k, USER_KEYS)}`);

    let secret: string;
    if (typeof u.secret === 'string' && u['secret-file'] === undefined) secret = u.secret;
    else if (typeof u['secret-file'] === 'string' && u.secret === undefined) secret = readSecretFile(`${file}: ${where}: secret-file`, rel(u['secret-file']), warnings);
    else throw at(where, 'give secret or secret-file (one of them); make one with `plait keygen`');
    if (Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) throw at(where, `secret: at least ${MIN_SECRET_BYTES} bytes; make one with \`plait keygen\``);
    const fingerprint = createHash('sha256').update(secret, 'utf8').digest('hex');
    const twin = seenSecrets.get(fingerprint);
    // Two users with one secret cannot be told apart by anything they prove: refuse it.
    if (twin !== undefined) throw at(where, `secret: the same as user ${twin}'s; every user needs its own`);
    seenSecrets.set(fingerprint, name);

    const entry: UserEntry = { name, keys: deriveSecretKeys(secret), fingerprint, revoked: false, publish: [] };
    if (u.revoked !== undefined) {
      if (typeof u.revoked !== 'boolean') throw at(where, 'revoked: true or false');
      entry.revoked = u.revoked;
    }
    if (u['max-sessions'] !== undefined) {
      const n = u['max-sessions'];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 100_000) throw at(where, 'max-sessions: a whole number 1..100000');
      entry.maxSessions = n;
    }
    if (u.rate !== undefined) {
      const r = typeof u.rate === 'string' ? parseRate(u.rate) : undefined;
      if (r === undefined) throw at(where, `rate: "${String(u.rate)}" is not a rate; use bits per second with a unit, like 50mbit or 800kbit`);
      entry.rateBytesPerSec = r;
    }
    if (u.cap !== undefined) {
      const c = typeof u.cap === 'string' ? parseUserCap(u.cap) : undefined;
      if (c === undefined) throw at(where, `cap: "${String(u.cap)}" is not a cap; use SIZE/day or SIZE/month, like 100GiB/month`);
      entry.cap = c;
    }
    if (u.publish !== undefined) {
      const ports = Array.isArray(u.publish) ? u.publish : [u.publish];
      for (const p of ports) {
        if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) throw at(where, `publish: ${JSON.stringify(p)} is not a port 1..65535`);
        entry.publish.push(p);
      }
    }
    users.set(name, entry);
  });
  return { file, identity, users, warnings };
}

/** Users whose sessions a reload must end: removed, now revoked, or given another secret. */
export function usersToRevoke(before: UsersTable, after: UsersTable): Set<string> {
  const out = new Set<string>();
  for (const [name, old] of before.users) {
    const now = after.users.get(name);
    if (!now || now.revoked || now.fingerprint !== old.fingerprint) out.add(name);
  }
  return out;
}
