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

/** The action: exit 0 on success, 1 when the client refused or could not be reached (usage errors exit 2 in main). */
export async function runRole(subflow: string, role: string, flags: RoleFlags): Promise<void> {
  let out: RoleOutcome;
  try {
    out = await changeRole(subflow, role, flags);
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
