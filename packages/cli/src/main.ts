import { randomBytes } from 'node:crypto';
import { generateIdentity } from '@plait/core';
import { Command, CommanderError } from 'commander';
import { checkClientFlags, runClient, type ClientFlags } from './run-client.js';
import { runDemo, type DemoFlags } from './run-demo.js';
import { checkServerFlags, runServer, type ServerFlags } from './run-server.js';
import { DEFAULT_LATENCY_PORTS } from '@plait/core';
import { routerSetupText, type RouterSetupFlags } from './router-setup.js';
import { collect, UsageError } from './args.js';
import { tuneHeapForThroughput } from '@plait/node';
import { CommandConfig, guessConfigKind, readConfigFile } from './config-file.js';
import { runRole, type RoleFlags } from './role-command.js';

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
    .option('--identity', "print a server identity key pair for --users instead: identity-key (the users file's, secret) and server-key (every user's --server-key)", false)
    .action((flags: { identity: boolean }) => {
      if (flags.identity) {
        const id = generateIdentity();
        process.stdout.write(`identity-key: ${Buffer.from(id.privateRaw).toString('base64url')}\nserver-key: ${Buffer.from(id.publicKey).toString('base64url')}\n`);
        return;
      }
      process.stdout.write(randomBytes(32).toString('base64url') + '\n');
    });

  const server = program
    .command('server')
    .description('accept sessions from plait clients and connect their streams to targets')
    // Required (one or more), but it may come from --config: checked in checkServerFlags.
    .option('--listen <host:port|ws-url>', 'accept subflows on HOST:PORT (TCP) or ws://HOST:PORT/PATH (WebSocket) (repeatable)', collect, [])
    .option('--secret-file <file>', 'read the secret from a file (mode 600; surrounding whitespace trimmed)')
    .option('--secret <secret>', 'pre-shared secret (visible in ps: prefer --secret-file or PLAIT_SECRET)')
    .option('--users <file>', 'named users, each with its own secret and limits (JSON or YAML; SIGHUP re-reads it); --secret then optional')
    .option('--state-dir <dir>', "keep the users' data cap usage here across restarts")
    .option('--stats <host:port>', 'serve GET /stats (JSON) and /metrics (Prometheus)')
    .option('--allow-private', 'allow targets on loopback, private and link-local networks', false)
    .option('--allow <cidr>', 'allow targets in this range (repeatable)', collect, [])
    .option('--advertise <host:port>', 'extra server address for clients to add subflows to (repeatable)', collect, [])
    .option('--max-sessions <n>', 'sessions held at once (1-100000)', '256')
    .option('--max-pending <n>', 'connections still proving the secret, held at once (1-100000)', '512')
    .option('--max-pending-per-source <n>', 'the same per source address (IPv6: per /64) (1-100000)', '64')
    .option('--cipher <name>', 'record ciphers clients may choose: any, aes-256-gcm, chacha20-poly1305', 'any')
    .option('--dns-upstream <ip:port>', "DNS resolver for clients' --dns (default: the first nameserver in /etc/resolv.conf)")
    .option('--udp-idle-timeout <seconds>', 'close a UDP association after this long without a datagram', '60')
    .option('--udp-duplicate', 'send each UDP reply on the two fastest subflows (the client keeps the first)', false)
    // Published ports (client --publish; README "Serving several households"):
    .option('--allow-publish <ports>', "ports the anonymous --secret user's clients may publish (comma list, repeatable; named users have their users-file publish list)", collect, [])
    .option('--publish-bind <ip>', 'the address published ports listen on', '0.0.0.0')
    .option('--publish-max-conns <n>', 'connections one published port carries at once (more are reset)', '64')
    // Scale-out (README "Scaling out"):
    .option('--instance-id <n>', 'this instance behind a load balancer (0-65535): JOINs name it so the balancer routes them here')
    .option('--drain-grace <seconds>', 'on SIGTERM, refuse new sessions and serve live ones this long, then end them (0: stop at once; default fits the 10 s stop timeouts of docker and the systemd unit)', '8')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace, silent', 'info')
    .option('--config <file>', 'read options from a JSON or YAML file (keys are the long flag names; flags given here override it; SIGHUP re-checks it)')
    .action(async (_flags: unknown, cmd: Command) => {
      const file = new CommandConfig<ServerFlags>(cmd);
      const loaded = file.load();
      try {
        await runServer(loaded.flags, { file, warnings: loaded.warnings });
      } catch (e) {
        throw loaded.explain(e);
      }
    });

  const client = program
    .command('client')
    .description('bond local links into one session to a plait server; serve SOCKS5 / HTTP CONNECT / forwards')
    .option('--server <host:port|ws-url>', 'plait server: HOST:PORT (TCP), ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (repeatable)', collect, [])
    .option('--ca <file>', 'trust the CA certificates in this PEM file (instead of the built-in list) for wss:// servers')
    .option('--fallback-server <host:port,...>', 'a second site, used while the --server site does not work (repeatable: one site per flag)', collect, [])
    .option('--failover-after <seconds>', 'with --fallback-server: move new streams to the next site after this long without a working session', '5')
    .option('--failback-after <seconds>', 'with --fallback-server: go back to the --server site once it has worked this long', '30')
    .option('--secret-file <file>', 'read the secret from a file (mode 600; surrounding whitespace trimmed)')
    .option('--secret <secret>', 'pre-shared secret (visible in ps: prefer --secret-file or PLAIT_SECRET)')
    .option('--user <name>', "name this client to a server with several users (its secret is the user's; needs --server-key)")
    .option('--server-key <key>', "the server's public identity key (from `plait keygen --identity`), with --user")
    .option('--bind <addr>', 'open a subflow from this local address (repeatable)', collect, [])
    .option('--via <iface>', "open subflows from this interface's addresses, following changes (repeatable)", collect, [])
    .option('--backup <addr|iface>', 'use this path only when no regular or overflow one works (repeatable)', collect, [])
    .option('--overflow <addr|iface>', 'use this path only for what the regular ones cannot take (repeatable)', collect, [])
    .option('--cap <path=size>', 'data cap: PATH=SIZE[/day|/month][:backup|:off], e.g. wwan0=10GiB/month (repeatable)', collect, [])
    .option('--cap-action <action>', 'what a path at its cap becomes: backup or off', 'backup')
    .option('--state-dir <dir>', 'keep data cap usage here across restarts (created mode 700)')
    .option('--socks <host:port>', 'SOCKS5 listen address')
    .option('--http <host:port>', 'HTTP CONNECT proxy listen address')
    .option('--proxy-auth-file <file>', 'require USER:PASS (read from this file) on the SOCKS5 and HTTP proxies (or PLAIT_PROXY_AUTH)')
    .option('--proxy-auth <user:pass>', 'require USER:PASS on the SOCKS5 and HTTP proxies (visible in ps: prefer --proxy-auth-file)')
    .option('--socks-auth <user:pass>', 'old name of --proxy-auth (applies to the HTTP proxy too)')
    .option('--forward <lport:host:port>', 'forward a local port to HOST:PORT via the server (repeatable)', collect, [])
    .option('--publish <serverport:host:port>', 'ask the server to listen on SERVERPORT and carry its connections to HOST:PORT on this side, like ssh -R (repeatable)', collect, [])
    .option('--dns <host:port>', "answer DNS (UDP and TCP) here, resolved by the server's resolver through the session")
    .option('--udp-duplicate', 'send each UDP datagram on the two fastest subflows (the server keeps the first)', false)
    .option('--redirect <[host:]port>', 'accept connections the firewall redirected (nftables/iptables REDIRECT) and carry them to their original destination; see router-setup')
    .option('--tproxy <[host:]port>', 'the same for TPROXY rules (needs CAP_NET_ADMIN)')
    .option('--bypass-domain <name>', "send this domain and its subdomains around plait: addresses learned from --dns answers go to router-setup's nftables sets (repeatable)", collect, [])
    .option('--stats <host:port>', 'serve GET /stats (JSON) and /metrics (Prometheus)')
    .option('--scheduler <name>', 'how frames are spread over subflows, both directions (the server follows): earliest-arrival, round-robin, redundant', 'earliest-arrival')
    .option('--latency-ports <list>', 'target ports whose streams are latency class (sent on the two best subflows), comma list or none', DEFAULT_LATENCY_PORTS.join(','))
    .option('--cipher <name>', 'record cipher: auto (AES-256-GCM if the CPU has AES instructions, else ChaCha20-Poly1305), aes-256-gcm, chacha20-poly1305', 'auto')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace, silent', 'info')
    .option('--config <file>', 'read options from a JSON or YAML file (keys are the long flag names; flags given here override it; SIGHUP re-reads paths and roles)')
    .action(async (_flags: unknown, cmd: Command) => {
      const file = new CommandConfig<ClientFlags>(cmd);
      const loaded = file.load();
      try {
        await runClient(loaded.flags, { file, warnings: loaded.warnings });
      } catch (e) {
        throw loaded.explain(e);
      }
    });

  program
    .command('check-config')
    .description('check a client or server config file as `plait client/server --config FILE` would (exit 0 if valid, 2 if not)')
    .argument('<file>', 'JSON or YAML config file')
    .option('--client', 'check it as a client config')
    .option('--server', 'check it as a server config')
    .action((file: string, o: { client?: boolean; server?: boolean }) => {
      if (o.client && o.server) throw new UsageError('--server: give --client or --server, not both');
      let kind = o.client ? 'client' : o.server ? 'server' : undefined;
      if (!kind) {
        kind = guessConfigKind(readConfigFile(file).raw, new CommandConfig(client).keys, new CommandConfig(server).keys);
        if (!kind) throw new UsageError(`${file}: cannot tell a client config from a server one by its keys; give --client or --server`);
      }
      const cfg = new CommandConfig<ClientFlags & ServerFlags>(kind === 'client' ? client : server, file);
      const loaded = cfg.load();
      let warnings: string[];
      try {
        warnings = [...loaded.warnings, ...(kind === 'client' ? checkClientFlags(loaded.flags) : checkServerFlags(loaded.flags)).warnings];
      } catch (e) {
        // Everything here came from the file: name it and the key even for a missing option.
        const m = e instanceof UsageError ? /^--([\w-]+): (.*)$/s.exec(e.message) : null;
        throw m ? new UsageError(`${file}: ${m[1]}: ${m[2]}`) : e;
      }
      for (const w of warnings) process.stderr.write(`plait: warning: ${w}\n`);
      process.stdout.write(`${file}: a valid ${kind} config\n`);
    });

  program
    .command('role')
    .description("change the role of a running client's path: regular, backup or overflow (the server follows it)")
    .requiredOption('--stats <host:port>', "the client's --stats address")
    .argument('[subflow]', 'subflow id, as in the /stats of the client (none: list the paths with their subflow ids and roles)')
    .argument('[role]', 'regular, backup or overflow')
    .action(async (subflow: string | undefined, role: string | undefined, flags: RoleFlags) => runRole(subflow, role, flags));

  program
    .command('router-setup')
    .description('print the firewall and routing commands that send a LAN through plait client --redirect (pipe to sh)')
    .option('--lan <iface>', 'the LAN interface (e.g. br-lan)')
    .option('--redirect <port>', 'the port of plait client --redirect (NAT REDIRECT)')
    .option('--tproxy <port>', 'instead: the port of plait client --tproxy (TPROXY)')
    .option('--dns <port>', 'the port of plait client --dns: LAN DNS (UDP and TCP 53) goes there')
    .option('--server <host>', 'the plait server (never redirected; repeatable)', collect, [])
    .option('--uplink <iface=gateway>', 'an uplink to give its own routing table (repeatable)', collect, [])
    .option('--reject-quic', 'reject forwarded UDP 443 so browsers fall back from QUIC to bonded TCP', false)
    .option('--bypass <cidr>', 'send this destination straight out an uplink, not through plait (repeatable)', collect, [])
    .option('--bypass-domain <name>', 'the same for a domain and its subdomains, learned from DNS answers (repeatable)', collect, [])
    .option('--bypass-device <addr|mac>', 'the same for everything a LAN device sends (repeatable)', collect, [])
    .option('--bypass-via <iface>', 'the uplink bypassed traffic leaves by (default: the first --uplink)')
    .option('--iptables', 'print iptables rules instead of nftables', false)
    .option('--rules-only', 'print only the nftables file (nft -f) or iptables-restore input', false)
    .option('--undo', 'print the commands that remove it all', false)
    .action(async (flags: RouterSetupFlags) => {
      process.stdout.write(await routerSetupText(flags));
    });

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
