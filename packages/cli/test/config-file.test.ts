import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { testOnlyTls } from '@plait/testkit';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { CommandConfig, guessConfigKind, readConfigFile, type LoadedFlags } from '../src/config-file.js';
import { buildProgram } from '../src/main.js';
import { checkClientFlags, type ClientFlags } from '../src/run-client.js';
import { checkServerFlags, type ServerFlags } from '../src/run-server.js';

const dir = mkdtempSync(join(tmpdir(), 'plait-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string, name = `c${n++}.yaml`, mode = 0o600): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}
const SECRET_FILE = file('k'.repeat(8) + 'Xy7-QpL2_mZ9vRt4sW1uB6nE3cHjKfGa0dY8', 'secret', 0o600);

/** Parse argv as `plait <command> ...` would, but capture the merged flags instead of running. */
async function load<T>(command: 'client' | 'server', argv: string[]): Promise<{ loaded: LoadedFlags<T>; cfg: CommandConfig<T> }> {
  const program = buildProgram();
  const cmd = program.commands.find((c) => c.name() === command)!;
  let out: { loaded: LoadedFlags<T>; cfg: CommandConfig<T> } | undefined;
  cmd.action((_o: unknown, c: Command) => {
    const cfg = new CommandConfig<T>(c);
    out = { loaded: cfg.load(), cfg };
  });
  await program.parseAsync([command, ...argv], { from: 'user' });
  return out!;
}

async function usage(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('no UsageError');
}

describe('--config: keys are the long flag names', () => {
  it('gives scalars, lists for repeatable flags (one value too), booleans, numbers as text; defaults stay', async () => {
    const f = file(
      ['server: [vps.example:7000, 127.0.0.1:7000]', `secret-file: ${SECRET_FILE}`, 'bind: 127.0.0.1', 'overflow: [127.0.0.2]', 'socks: 1080', 'scheduler: round-robin'].join('\n'),
    );
    const { loaded } = await load<ClientFlags>('client', ['--config', f]);
    expect(loaded.flags).toMatchObject({
      server: ['vps.example:7000', '127.0.0.1:7000'],
      secretFile: SECRET_FILE,
      bind: ['127.0.0.1'],
      overflow: ['127.0.0.2'],
      via: [],
      socks: '1080',
      scheduler: 'round-robin',
      cipher: 'auto',
      logLevel: 'info',
    });
    const s = await load<ServerFlags>('server', ['--config', file(`listen: 0.0.0.0:7000\nallow-private: true\nmax-sessions: 12\nsecret-file: ${SECRET_FILE}`)]);
    expect(s.loaded.flags).toMatchObject({ listen: ['0.0.0.0:7000'], allowPrivate: true, maxSessions: '12' });
    expect(checkServerFlags(s.loaded.flags).maxSessions).toBe(12);
  });

  it('a relative secret-file is relative to the config file, not to the working directory', async () => {
    const f = file('server: 127.0.0.1:7000\nsecret-file: secret\nsocks: 1080');
    const { loaded } = await load<ClientFlags>('client', ['--config', f]);
    expect(loaded.flags.secretFile).toBe(SECRET_FILE);
    expect(checkClientFlags(loaded.flags).secret.length).toBeGreaterThan(16);
  });

  it('JSON works too (YAML 1.2 reads it)', async () => {
    const f = file(JSON.stringify({ server: '127.0.0.1:7000', 'secret-file': SECRET_FILE, http: '127.0.0.1:8080', backup: ['127.0.0.2'] }), 'c.json');
    const { loaded } = await load<ClientFlags>('client', ['--config', f]);
    expect(checkClientFlags(loaded.flags).sources.backups).toEqual(['127.0.0.2']);
  });

  it('the command line overrides the file: a scalar, a whole list, and secret vs secret-file as one setting', async () => {
    const f = file(`server: 127.0.0.1:7000\nsecret-file: ${SECRET_FILE}\nbind: [127.0.0.1, 127.0.0.2]\nsocks: 1080`);
    const { loaded } = await load<ClientFlags>('client', ['--config', f, '--socks', '2080', '--bind', '127.0.0.3', '--secret', 'x'.repeat(40)]);
    expect(loaded.flags.socks).toBe('2080');
    expect(loaded.flags.bind).toEqual(['127.0.0.3']);
    expect(loaded.flags.secret).toBe('x'.repeat(40));
    expect(loaded.flags.secretFile).toBeUndefined();
    expect(loaded.flags.server).toEqual(['127.0.0.1:7000']);
  });

  it('a bad value names the file and key; the same mistake on the command line names the flag', async () => {
    const f = file(`server: 127.0.0.1:7000\nsecret-file: ${SECRET_FILE}\nsocks: 127.0.0.1:99999`);
    const fromFile = await load<ClientFlags>('client', ['--config', f]);
    expect(await usage(() => { throw fromFile.loaded.explain(catching(() => checkClientFlags(fromFile.loaded.flags))); })).toBe(`${f}: socks: port must be 0-65535, got "99999"`);
    const fromCli = await load<ClientFlags>('client', ['--config', f, '--socks', '127.0.0.1:99998']);
    expect(await usage(() => { throw fromCli.loaded.explain(catching(() => checkClientFlags(fromCli.loaded.flags))); })).toBe('--socks: port must be 0-65535, got "99998"');
  });

  it('unknown keys and mistyped values: one line naming the file and key', async () => {
    const cases: [string, string][] = [
      ['sock: 1080', 'sock: unknown option (did you mean socks?)'],
      ['--socks: 1080', '--socks: unknown option (did you mean socks?)'],
      ['listen: 1080', 'listen: unknown option'],
      ['socks: [1080, 1081]', 'socks: expected one value, not a list (this option is not repeatable)'],
      ['socks: {port: 1}', 'socks: expected one value'],
      ['bind: [{a: 1}]', 'bind: expected a value or a list of values'],
      ['socks:', 'socks: a value is required'],
      ['config: other.yaml', 'config: a config file cannot name another one'],
    ];
    for (const [text, msg] of cases) {
      const f = file(text);
      expect(await usage(load('client', ['--config', f]))).toBe(`${f}: ${msg}`);
    }
    const s = file('allow-private: "yes"');
    expect(await usage(load('server', ['--config', s]))).toBe(`${s}: allow-private: expected true or false`);
  });

  it('a file that does not parse: the line and what is wrong; hostile files cost nothing', async () => {
    const dup = file('socks: 1\nhttp: 2\nsocks: 3');
    expect(await usage(() => readConfigFile(dup))).toBe(`${dup} line 3: Map keys must be unique`);
    const list = file('- a\n- b');
    expect(await usage(() => readConfigFile(list))).toMatch(/: expected option names with their values/);
    // A "billion laughs": nine levels of nine aliases each.
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
    expect(await usage(() => readConfigFile(file(lines.join('\n'))))).toMatch(/Excessive alias count/);
    expect(await usage(() => readConfigFile(file('x'.repeat(300 * 1024))))).toMatch(/too large for a config file/);
    expect(await usage(() => readConfigFile(join(dir, 'missing.yaml')))).toBe(`--config: cannot read ${join(dir, 'missing.yaml')}: ENOENT`);
    expect(readConfigFile(file('')).raw).toEqual({});
  });

  it('a secret in the file is not an argv secret; a file holding it that others can read gets a warning', async () => {
    const f = file(`server: 127.0.0.1:7000\nsecret: ${'s3cr3t-'.repeat(7)}\nsocks: 1080`, 'open.yaml', 0o644);
    const { loaded } = await load<ClientFlags>('client', ['--config', f]);
    expect(loaded.warnings).toEqual([`${f}: holds the secret and is readable by other users (mode 644); run: chmod 600 ${f}`]);
    const checked = checkClientFlags(loaded.flags);
    expect(checked.warnings.join('\n')).not.toMatch(/visible to every local user/);
  });
});

describe('check-config guesses the kind from keys only one side has', () => {
  it('client, server, or undecided', () => {
    const clientKeys = ['server', 'socks', 'secret-file', 'stats'];
    const serverKeys = ['listen', 'allow', 'secret-file', 'stats'];
    expect(guessConfigKind({ server: 'x', 'secret-file': 'f' }, clientKeys, serverKeys)).toBe('client');
    expect(guessConfigKind({ listen: 'x', stats: 'y' }, clientKeys, serverKeys)).toBe('server');
    expect(guessConfigKind({ 'secret-file': 'f' }, clientKeys, serverKeys)).toBeUndefined();
    expect(guessConfigKind({ listen: 'x', socks: 'y' }, clientKeys, serverKeys)).toBeUndefined();
  });
});

function catching(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('did not throw');
}

describe('--config: WebSocket transport keys', () => {
  it('a server takes a list of listen addresses, TCP and ws:// mixed', async () => {
    const f = file(['listen: [0.0.0.0:7000, ws://127.0.0.1:8080/plait]', `secret-file: ${SECRET_FILE}`].join('\n'));
    const { loaded } = await load<ServerFlags>('server', ['--config', f]);
    expect(checkServerFlags(loaded.flags).listen).toEqual([
      { host: '0.0.0.0', port: 7000 },
      { host: '127.0.0.1', port: 8080, path: '/plait' },
    ]);
    const bad = file(['listen: wss://127.0.0.1:8443/plait', `secret-file: ${SECRET_FILE}`].join('\n'));
    const { loaded: l2 } = await load<ServerFlags>('server', ['--config', bad]);
    const check = (): unknown => {
      try {
        return checkServerFlags(l2.flags);
      } catch (e) {
        throw l2.explain(e);
      }
    };
    expect(await usage(check)).toMatch(new RegExp(`^${bad}: listen: the server takes ws:// only`));
  });

  it("a client's ca is a path relative to the config file, read and checked like --ca", async () => {
    const sub = mkdtempSync(join(dir, 'ca-'));
    writeFileSync(join(sub, 'ca.pem'), readFileSync(testOnlyTls().caPath));
    const f = join(sub, 'client.yaml');
    writeFileSync(f, ['server: wss://vps.example/plait', 'ca: ca.pem', `secret-file: ${SECRET_FILE}`, 'socks: 1080'].join('\n'));
    const { loaded } = await load<ClientFlags>('client', ['--config', f]);
    expect(loaded.flags.ca).toBe(join(sub, 'ca.pem'));
    expect(checkClientFlags(loaded.flags).ca?.toString()).toContain('BEGIN CERTIFICATE');
  });
});
