/**
 * Link roles (PROTOCOL.md 6.6 `prio`, section 9): which class of subflow
 * may carry data. The session asks the scheduler tier by tier and goes to
 * the next tier only when the scheduler finds no room in this one.
 *
 * - `regular`: carries data whenever it has room.
 * - `overflow`: carries data only when every regular subflow is full (cap
 *   reached or socket not writable) and data waits; with no working regular
 *   subflow it is the first choice.
 * - `backup`: carries data only when no regular and no overflow subflow
 *   works (MPTCP's low_prio).
 */
export type SubflowRole = 'regular' | 'backup' | 'overflow';

export const SUBFLOW_ROLES: readonly SubflowRole[] = ['regular', 'backup', 'overflow'];

export function isSubflowRole(v: unknown): v is SubflowRole {
  return v === 'regular' || v === 'backup' || v === 'overflow';
}

/**
 * The handshake's backup bit (and `prio`'s `backup` field) for a role: an
 * overflow subflow is announced as backup, so a peer that knows only the
 * bit treats it conservatively (it carries nothing while a regular works).
 */
export function roleBackupBit(role: SubflowRole): boolean {
  return role !== 'regular';
}

/** What the tiering reads of a subflow. */
export interface RoleView {
  readonly role: SubflowRole;
  /** Active (not suspect, not waiting for `ok`). */
  readonly usable: boolean;
  readonly writable: boolean;
}

/**
 * Writable subflows that may carry data, in the order they may be asked:
 * [regular, overflow] while a regular subflow works (even one whose socket
 * is full: then overflow takes what waits), else [overflow] while one
 * works, else [backup]. A tier may be empty.
 */
export function dataTiers<T extends RoleView>(subflows: readonly T[]): T[][] {
  const regular: T[] = [];
  const overflow: T[] = [];
  const backup: T[] = [];
  let regularWorks = false;
  let overflowWorks = false;
  for (const sf of subflows) {
    if (!sf.usable) continue;
    if (sf.role === 'regular') regularWorks = true;
    else if (sf.role === 'overflow') overflowWorks = true;
    if (!sf.writable) continue;
    (sf.role === 'regular' ? regular : sf.role === 'overflow' ? overflow : backup).push(sf);
  }
  if (regularWorks) return overflow.length > 0 ? [regular, overflow] : [regular];
  if (overflowWorks) return [overflow];
  return [backup];
}
