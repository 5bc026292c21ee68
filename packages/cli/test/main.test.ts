import { describe, expect, it } from 'vitest';
import { commanderMessage } from '../src/main.js';

describe('commanderMessage', () => {
  it.each([
    ["error: unknown option '--sock'\n(Did you mean --socks?)\n", '--sock: unknown option (did you mean --socks?)'],
    ["error: unknown option '--zzz'\n", '--zzz: unknown option'],
    ["error: option '--socks <host:port>' argument missing\n", '--socks: a value is required (HOST:PORT)'],
    ["error: required option '--listen <host:port>' not specified\n", '--listen: this option is required (HOST:PORT)'],
    ["error: unknown command 'bogus'\n", "unknown command 'bogus'"],
    ["error: too many arguments for 'client'. Expected 0 arguments but got 1.\n", "too many arguments for 'client'. Expected 0 arguments but got 1."],
  ])('%j -> %j', (raw, want) => {
    expect(commanderMessage(raw)).toBe(want);
    expect(commanderMessage(raw)).not.toContain('\n');
  });
});
