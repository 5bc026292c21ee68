import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured logs to stderr; stdout stays free for command output. */
export function makeLogger(level: string): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}
