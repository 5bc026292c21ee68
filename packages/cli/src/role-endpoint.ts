/**
 * POST /subflows/<id> on the client's stats port: change the role of the
 * path that subflow belongs to ({"role": "regular"|"backup"|"overflow"} or
 * {"backup": true|false}). A change, unlike a read, must not be reachable
 * from a web page or another machine: the stats Host rule applies, the
 * connection must come from loopback, a browser's cross-site request is
 * refused by its Origin (and, needing application/json, could not skip the
 * CORS preflight anyway), and the body is bounded.
 */
import type * as http from 'node:http';
import { isSubflowRole, SUBFLOW_ROLES, type SubflowRole } from '@plait/core';
import { isLoopbackHost } from './args.js';

/** Changes the role of the path whose subflow has `id`; its key, or undefined for an unknown id. */
export type SetRole = (id: number, role: SubflowRole) => string | undefined;

/** Longest body read: `{"role": "overflow"}` is 20 bytes. */
export const ROLE_BODY_MAX = 1024;

export const SUBFLOW_PATH = /^\/subflows\/(\d{1,10})$/;

function reply(res: http.ServerResponse, status: number, body: object, extra: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...extra }).end(JSON.stringify(body) + '\n');
}

const fail = (res: http.ServerResponse, status: number, error: string, extra: http.OutgoingHttpHeaders = {}): void => reply(res, status, { error }, extra);

/** The role a request body asks for, or an error a user can act on. */
export function parseRoleBody(text: string): { role: SubflowRole } | { error: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { error: 'the body is not JSON; send {"role": "backup"} or {"backup": true}' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { error: 'the body must be a JSON object like {"role": "backup"}' };
  const o = v as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => k !== 'role' && k !== 'backup');
  if (extra.length > 0) return { error: `unknown field "${extra[0]}"; send "role" or "backup"` };
  if ('role' in o && 'backup' in o) return { error: 'send "role" or "backup", not both' };
  if ('role' in o) {
    if (!isSubflowRole(o.role)) return { error: `"role" must be one of ${SUBFLOW_ROLES.join(', ')}` };
    return { role: o.role };
  }
  if ('backup' in o) {
    if (typeof o.backup !== 'boolean') return { error: '"backup" must be true or false' };
    return { role: o.backup ? 'backup' : 'regular' };
  }
  return { error: 'send {"role": "regular"|"backup"|"overflow"} or {"backup": true|false}' };
}

/** Whether a browser's Origin header names this very endpoint (same origin); absent is fine (curl, plait role). */
function sameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  return host !== undefined && origin === `http://${host}`;
}

/** Handles POST /subflows/<id> (the stats server checked the Host header already). */
export function handleRolePost(req: http.IncomingMessage, res: http.ServerResponse, id: number, setRole: SetRole | undefined): void {
  if (!setRole) {
    fail(res, 404, 'roles are changed on the client (its --stats port); the server follows them');
    return;
  }
  const peer = req.socket.remoteAddress ?? '';
  if (!isLoopbackHost(peer)) {
    fail(res, 403, 'role changes are accepted from this machine only (loopback)');
    return;
  }
  if (!sameOrigin(req.headers.origin, req.headers.host)) {
    fail(res, 403, 'cross-site requests are refused');
    return;
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    fail(res, 415, 'send the body as Content-Type: application/json');
    return;
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > ROLE_BODY_MAX) {
    fail(res, 413, `the body may be at most ${ROLE_BODY_MAX} bytes`, { connection: 'close' });
    req.resume();
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  req.on('data', (c: Buffer) => {
    if (done) return;
    size += c.length;
    if (size > ROLE_BODY_MAX) {
      done = true;
      fail(res, 413, `the body may be at most ${ROLE_BODY_MAX} bytes`, { connection: 'close' });
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (done) return;
    done = true;
    const body = parseRoleBody(Buffer.concat(chunks).toString('utf8'));
    if ('error' in body) {
      fail(res, 400, body.error);
      return;
    }
    const path = setRole(id, body.role);
    if (path === undefined) {
      fail(res, 404, `no subflow ${id} (GET /stats lists the subflows and their ids)`);
      return;
    }
    reply(res, 200, { subflow: id, path, role: body.role });
  });
}
