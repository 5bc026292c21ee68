/**
 * Cap periods on the local calendar (the process's time zone, TZ). A day
 * starts at local midnight and a month at local midnight of its 1st, computed
 * with calendar arithmetic, so a day across a DST change lasts 23 or 25 hours
 * and still starts at midnight. Where a zone skips midnight itself, the day
 * starts at the first local time that exists (what Date gives).
 */
export type CapPeriod = 'day' | 'month';

export const CAP_PERIODS: readonly CapPeriod[] = ['day', 'month'];

/** Unix ms of the start of the local day/month holding `wallMs`. */
export function periodStart(period: CapPeriod, wallMs: number): number {
  const d = new Date(wallMs);
  return period === 'day' ? new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() : new Date(d.getFullYear(), d.getMonth(), 1).getTime();
}

/** Unix ms at which the period after the one holding `wallMs` starts. */
export function nextPeriodStart(period: CapPeriod, wallMs: number): number {
  const d = new Date(periodStart(period, wallMs));
  return period === 'day' ? new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime() : new Date(d.getFullYear(), d.getMonth() + 1, 1).getTime();
}

/** `2026-11-29 00:00` in local time, for logs. */
export function localTimeText(wallMs: number): string {
  const d = new Date(wallMs);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
