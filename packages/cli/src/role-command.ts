/**
 * `plait role --stats HOST:PORT <subflow> <role>`: change a running
 * client's path role through its stats port (POST /subflows/<id>).
 */
import * as http from 'node:http';
import { parseCount, parseHostPort, parseRole, UsageError } from './args.js';

export interface RoleFlags {
  stats: string;
}

/** What the request came to: printed on stdout (success) or stderr (exit 1). */
export interface RoleOutcome {
  ok: boolean;
  message: string;
}

export function checkRoleArgs(subflow: string, role: string, flags: RoleFlags) {
  return {
    at: parseHostPort('--stats', flags.stats, { connect: true }),
    id: parseCount('<subflow>', subflow, 0xffff_ffff),
    role: parseRole('<role>', role),
  };
}

export async function changeRole(subflow: string, role: string, flags: RoleFlags): Promise<RoleOutcome> {
  const a = checkRoleArgs(subflow, role, flags);
  const body = JSON.stringify({ role: a.role });
  const where = a.at.host.includes(':') ? `[${a.at.host}]:${a.at.port}` : `${a.at.host}:${a.at.port}`;
  return new Promise<RoleOutcome>((resolve) => {
    const req = http.request(
      { host: a.at.host, port: a.at.port, method: 'POST', path: `/subflows/${a.id}`, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 5_000 },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          // An answer is a line of JSON; anything past 64 KiB is not the plait client.
          if ((size += c.length) <= 65536) chunks.push(c);
        });
        res.on('end', () => {
          let parsed: { error?: unknown; path?: unknown } = {};
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof parsed;
          } catch {
            // Not our JSON: report the status alone.
          }
          if (res.statusCode === 200) {
            resolve({ ok: true, message: `subflow ${a.id} (path ${String(parsed.path)}): role ${a.role}` });
          } else {
            const why = typeof parsed.error === 'string' ? parsed.error : `HTTP ${res.statusCode ?? '?'} from ${where} (is it a plait client's --stats port?)`;
            resolve({ ok: false, message: why });
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, message: `--stats: cannot reach ${where}: ${e.code ?? e.message}` }));
    req.end(body);
  });
}

interface PathRow {
  key?: unknown;
  role?: unknown;
  state?: unknown;
  subflow?: unknown;
}

/** Without arguments: the client's paths, with their subflow ids and roles (from GET /stats). */
export async function listRoles(flags: RoleFlags): Promise<RoleOutcome> {
  const at = parseHostPort('--stats', flags.stats, { connect: true });
  const where = at.host.includes(':') ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`;
  return new Promise<RoleOutcome>((resolve) => {
    const req = http.get({ host: at.host, port: at.port, path: '/stats', timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        // Bounded like an answer from a client with a few thousand paths; more is not a plait client.
        if ((size += c.length) <= 8 << 20) chunks.push(c);
      });
      res.on('end', () => {
        let paths: PathRow[] | undefined;
        try {
          const st = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { paths?: unknown };
          if (Array.isArray(st.paths)) paths = st.paths as PathRow[];
        } catch {
          // handled below
        }
        if (res.statusCode !== 200 || !paths) {
          resolve({ ok: false, message: `HTTP ${res.statusCode ?? '?'} from ${where} without client paths (is it a plait client's --stats port?)` });
          return;
        }
        const rows = paths.map((p) => [p.subflow === undefined ? '-' : String(p.subflow), String(p.role ?? ''), String(p.state ?? ''), String(p.key ?? '')]);
        const head = ['subflow', 'role', 'state', 'path'];
        const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ');
        resolve({ ok: true, message: [line(head), ...rows.map(line)].join('\n') });
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, message: `--stats: cannot reach ${where}: ${e.code ?? e.message}` }));
  });
}

/** The action: exit 0 on success, 1 when the client refused or could not be reached (usage errors exit 2 in main). */
export async function runRole(subflow: string | undefined, role: string | undefined, flags: RoleFlags): Promise<void> {
  if (subflow !== undefined && role === undefined) throw new UsageError('<role>: give the role too: regular, backup or overflow');
  let out: RoleOutcome;
  try {
    out = subflow === undefined || role === undefined ? await listRoles(flags) : await changeRole(subflow, role, flags);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    out = { ok: false, message: e instanceof Error ? e.message : String(e) };
  }
  if (out.ok) {
    process.stdout.write(out.message + '\n');
  } else {
    process.stderr.write(`plait: ${out.message}\n`);
    process.exitCode = 1;
  }
}
