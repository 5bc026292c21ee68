import { randomBytes } from 'node:crypto';
import { Command, CommanderError } from 'commander';
import { runClient, type ClientFlags } from './run-client.js';
import { runDemo, type DemoFlags } from './run-demo.js';
import { runServer, type ServerFlags } from './run-server.js';
import { collect, UsageError } from './args.js';
import { tuneHeapForThroughput } from '@plait/node';

/**
 * Commander's usage errors in the CLI's one-line form, `--flag: what is
 * wrong`, so every bad invocation reads the same way.
 */
export function commanderMessage(raw: string): string {
  const str = raw.replace(/^error: /, '').trim();
  let m = /^unknown option '([^']+)'(?:\s*\(Did you mean (\S+?)\?\))?/.exec(str);
  if (m) return `${m[1]}: unknown option${m[2] ? ` (did you mean ${m[2]}?)` : ''}`;
  m = /^option '(-[\w-]+)(?:, (--[\w-]+))?(?: <([^>]+)>)?' argument missing/.exec(str);
  if (m) return `${m[2] ?? m[1]}: a value is required${m[3] ? ` (${m[3].toUpperCase()})` : ''}`;
  m = /^required option '(-[\w-]+)(?:, (--[\w-]+))?(?: <([^>]+)>)?' not specified/.exec(str);
  if (m) return `${m[2] ?? m[1]}: this option is required${m[3] ? ` (${m[3].toUpperCase()})` : ''}`;
  return str.split('\n').join(' ');
}

export function buildProgram(): Command {
  const program = new Command('plait')
    .description('Bond several network links into one fast, resilient tunnel (multipath SOCKS5 / HTTP CONNECT proxy).')
    .version('0.1.0')
    .showHelpAfterError(false)
    .configureOutput({ outputError: (str, write) => write(`plait: ${commanderMessage(str)}\n`) })
    .exitOverride();

  program
    .command('keygen')
    .description('print a new random secret (32 bytes, base64url)')
    .action(() => {
      process.stdout.write(randomBytes(32).toString('base64url') + '\n');
    });

  program
    .command('server')
    .description('accept sessions from plait clients and connect their streams to targets')
    .requiredOption('--listen <host:port>', 'address to accept subflows on')
    .option('--secret-file <file>', 'read the secret from a file (mode 600; surrounding whitespace trimmed)')
    .option('--secret <secret>', 'pre-shared secret (visible in ps: prefer --secret-file or PLAIT_SECRET)')
    .option('--stats <host:port>', 'serve GET /stats (JSON) and /metrics (Prometheus)')
    .option('--allow-private', 'allow targets on loopback, private and link-local networks', false)
    .option('--allow <cidr>', 'allow targets in this range (repeatable)', collect, [])
    .option('--advertise <host:port>', 'extra server address for clients to add subflows to (repeatable)', collect, [])
    .option('--max-sessions <n>', 'sessions held at once (1-100000)', '256')
    .option('--max-pending <n>', 'connections still proving the secret, held at once (1-100000)', '512')
    .option('--max-pending-per-source <n>', 'the same per source address (IPv6: per /64) (1-100000)', '64')
    .option('--cipher <name>', 'record ciphers clients may choose: any, aes-256-gcm, chacha20-poly1305', 'any')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace, silent', 'info')
    .action(async (flags: ServerFlags) => void (await runServer(flags)));

  program
    .command('client')
    .description('bond local links into one session to a plait server; serve SOCKS5 / HTTP CONNECT / forwards')
    .option('--server <host:port>', 'plait server address (repeatable)', collect, [])
    .option('--secret-file <file>', 'read the secret from a file (mode 600; surrounding whitespace trimmed)')
    .option('--secret <secret>', 'pre-shared secret (visible in ps: prefer --secret-file or PLAIT_SECRET)')
    .option('--bind <addr>', 'open a subflow from this local address (repeatable)', collect, [])
    .option('--via <iface>', "open subflows from this interface's addresses, following changes (repeatable)", collect, [])
    .option('--backup <addr|iface>', 'use this path only when no regular one works (repeatable)', collect, [])
    .option('--socks <host:port>', 'SOCKS5 listen address')
    .option('--http <host:port>', 'HTTP CONNECT proxy listen address')
    .option('--proxy-auth-file <file>', 'require USER:PASS (read from this file) on the SOCKS5 and HTTP proxies (or PLAIT_PROXY_AUTH)')
    .option('--proxy-auth <user:pass>', 'require USER:PASS on the SOCKS5 and HTTP proxies (visible in ps: prefer --proxy-auth-file)')
    .option('--socks-auth <user:pass>', 'old name of --proxy-auth (applies to the HTTP proxy too)')
    .option('--forward <lport:host:port>', 'forward a local port to HOST:PORT via the server (repeatable)', collect, [])
    .option('--stats <host:port>', 'serve GET /stats (JSON) and /metrics (Prometheus)')
    .option('--scheduler <name>', 'how frames are spread over subflows: earliest-arrival, round-robin, redundant', 'earliest-arrival')
    .option('--cipher <name>', 'record cipher: auto (AES-256-GCM if the CPU has AES instructions, else ChaCha20-Poly1305), aes-256-gcm, chacha20-poly1305', 'auto')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace, silent', 'info')
    .action(async (flags: ClientFlags) => void (await runClient(flags)));

  program
    .command('demo')
    .description('run a server and a client bonding 127.0.0.1 + 127.0.0.2 on this machine, with live link stats')
    .option('--socks <host:port>', 'SOCKS5 listen address, loopback only (default 127.0.0.1:1080 or the next free port)')
    .option('--interval <seconds>', 'seconds between stats tables', '3')
    .option('--duration <seconds>', 'exit after this many seconds (default: run until Ctrl-C)')
    .option('--cipher <name>', 'record cipher: auto, aes-256-gcm, chacha20-poly1305', 'auto')
    .action(async (flags: DemoFlags) => runDemo(flags));

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  // The commands that relay bytes for a long time get the GC tuning (heap-tuning.ts says why).
  program.hook('preAction', (_program, action) => {
    if (['server', 'client', 'demo'].includes(action.name())) tuneHeapForThroughput();
  });
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; every usage error exits 2.
      process.exit(e.exitCode === 0 ? 0 : 2);
    }
    if (e instanceof UsageError) {
      process.stderr.write(`plait: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}
