/**
 * The published-port flags (README "Serving several households"): the
 * client's --publish, from argv and from a config file (a list), and the
 * server's --allow-publish, --publish-bind and --publish-max-conns. Every
 * mistake is one line naming the flag.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { CommandConfig, type LoadedFlags } from '../src/config-file.js';
import { buildProgram } from '../src/main.js';
import { parseAllowPublish, parsePublishBind, parsePublishFlags, parsePublishMaxConns } from '../src/publish-flags.js';
import { checkClientFlags, type ClientFlags } from '../src/run-client.js';
import { checkServerFlags, type ServerFlags } from '../src/run-server.js';

const dir = mkdtempSync(join(tmpdir(), 'plait-publish-flags-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const SECRET = 'Xy7-QpL2_mZ9vRt4sW1uB6nE3cHjKfGa0dY8kkkk';

async function load<T>(command: 'client' | 'server', argv: string[]): Promise<LoadedFlags<T>> {
  const program = buildProgram();
  const cmd = program.commands.find((c) => c.name() === command)!;
  let out: LoadedFlags<T> | undefined;
  cmd.action((_o: unknown, c: Command) => {
    out = new CommandConfig<T>(c).load();
  });
  await program.parseAsync([command, ...argv], { from: 'user' });
  return out!;
}

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('no UsageError');
}

describe('plait client --publish', () => {
  it('is repeatable, takes names, IPv4 and [IPv6] hosts, and is enough on its own (no --socks needed)', async () => {
    const loaded = await load<ClientFlags>('client', ['--server', '127.0.0.1:7000', '--secret', SECRET, '--publish', '8080:nas.lan:80', '--publish', '8443:[fd00::5]:443']);
    const checked = checkClientFlags(loaded.flags);
    expect(checked.publish).toEqual([
      { serverPort: 8080, target: { host: 'nas.lan', port: 80 } },
      { serverPort: 8443, target: { host: 'fd00::5', port: 443 } },
    ]);
  });

  it('comes from a config file as a list', async () => {
    const f = join(dir, 'client.yaml');
    writeFileSync(f, `server: 127.0.0.1:7000\nsecret: ${SECRET}\npublish: ["2222:192.168.1.5:22", "25565:game.lan:25565"]\n`);
    chmodSync(f, 0o600);
    const loaded = await load<ClientFlags>('client', ['--config', f]);
    expect(checkClientFlags(loaded.flags).publish.map((p) => p.serverPort)).toEqual([2222, 25565]);
  });

  it('a bad value is one line naming --publish', () => {
    expect(usage(() => parsePublishFlags(['8080:80']))).toBe('--publish: invalid publish spec "8080:80": expected SERVERPORT:HOST:PORT (IPv6 hosts in brackets)');
    expect(usage(() => parsePublishFlags(['0:nas:80']))).toMatch(/^--publish: .*server port "0"/);
    expect(usage(() => parsePublishFlags(['80:[nas]:80']))).toMatch(/^--publish: .*not a bracketed IPv6 address/);
    expect(usage(() => parsePublishFlags(['80:a:1', '80:b:2']))).toBe('--publish: server port 80 is published twice');
    expect(usage(() => parsePublishFlags(Array.from({ length: 17 }, (_, i) => `${1000 + i}:h:1`)))).toMatch(/^--publish: at most 16 ports/);
    for (const m of [usage(() => parsePublishFlags(['x:y:z']))]) expect(m.split('\n')).toHaveLength(1);
  });
});

describe('plait server publish flags', () => {
  it('defaults: nothing for the anonymous user, every IPv4 interface, 64 connections per port', async () => {
    const loaded = await load<ServerFlags>('server', ['--listen', '127.0.0.1:7000', '--secret', SECRET]);
    expect(checkServerFlags(loaded.flags).publish).toEqual({ anonymousPorts: [], bindHost: '0.0.0.0', maxConnections: 64 });
  });

  it('--allow-publish takes ports and comma lists, repeatable; --publish-bind an IP; --publish-max-conns a count', async () => {
    const loaded = await load<ServerFlags>('server', ['--listen', '127.0.0.1:7000', '--secret', SECRET, '--allow-publish', '8080,2222', '--allow-publish', '25565', '--publish-bind', '[::1]', '--publish-max-conns', '5']);
    expect(checkServerFlags(loaded.flags).publish).toEqual({ anonymousPorts: [8080, 2222, 25565], bindHost: '::1', maxConnections: 5 });
  });

  it('bad values are one line naming the flag', () => {
    expect(usage(() => parseAllowPublish(['80,http']))).toBe('--allow-publish: "http" is not a port (1-65535); give ports like 8080,2222');
    expect(usage(() => parseAllowPublish(['0']))).toMatch(/^--allow-publish: "0" is not a port/);
    expect(usage(() => parsePublishBind('example.org'))).toMatch(/^--publish-bind: "example.org" is not an IP address/);
    expect(usage(() => parsePublishMaxConns('0'))).toMatch(/^--publish-max-conns: expected a whole number from 1/);
  });
});
