// The fuzz engine: drives mutated and random handshakes, sealed records and
// frames into the REAL Acceptor and Session of @plait/core, in process, on a
// virtual clock and in-memory channels (no sockets, no real timers).
//
// Layers:
//   handshake  cleartext HELLO / JOIN / JOIN_CONFIRM / REJECT, valid ones
//              built with the real encoders and the secret, then mutated;
//              random bytes; valid handshakes followed by garbage.
//   records    a real session, then sealed records tampered with (bit flips,
//              length lies, skipped / replayed / reordered counters, wrong
//              keys, empty and oversized plaintext) and unsealed garbage.
//   frames     a real session, then correctly sealed records whose plaintext
//              is fuzzed frames (DATA, ACK, WINDOW, RESET, PING, CONTROL with
//              hostile MessagePack, stream headers with hostile MessagePack).
//
// Invariants: nothing throws out of the channel handlers or the clock's
// timers (that would crash a real server), no unhandled rejection or
// uncaught exception, a bad handshake leaves its channel closed and the
// pending-handshake count at 0, sessions stay within limits, server-side
// buffers stay bounded, every byte the server sends back is a well-formed
// record of well-formed frames, and a fresh valid client can still open a
// session and move bytes through it (checked every `healthEvery` cases and at
// the end).
import { createCipheriv, randomBytes } from 'node:crypto';
import {
  Acceptor,
  connectSession,
  decodeFrames,
  deriveSecretKeys,
  encodeHandshake,
  flushMicrotasks,
  HandshakeReader,
  helloMac,
  HELLO_MAC_OFFSET,
  joinHmacA,
  makeConfig,
  MsgType,
  RecordOpener,
  RecordSealer,
  startHello,
  VirtualClock,
  WIRE,
} from '@plait/core';
import { MemoryLink } from '@plait/testkit';
import { chunk, controlBody, headerBody, mpStr, mutate } from './mutate.mjs';
import { ByteWriter, caseSeed, concat, hexdump, INTERESTING_U16, INTERESTING_U32, Rng } from './rng.mjs';

export const SECRET = 'fuzz-secret-0123456789abcdef';
const WRONG_SECRET = 'fuzz-wrong-secret-0123456789';
export const LAYERS = ['handshake', 'records', 'frames'];
const LAYER_ID = { handshake: 0, records: 1, frames: 2 };
const OUTPUT_CAP = 1 << 20;
const MAX_SESSIONS = 32;
const BATCH = 64; // cases between clock jumps past the handshake timeout
const CTX_POOL = 3; // live fuzz clients on the record/frame layers
const CTX_LIFETIME = 400; // cases before a fuzz client is dropped

// Low-order X25519 points (RFC 7748 section 6.1 lists them), all refused.
const LOW_ORDER = [
  new Uint8Array(32),
  Uint8Array.of(1, ...new Uint8Array(31)),
  Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex'),
  Buffer.from('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', 'hex'),
  Buffer.from('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'),
  Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'),
  Buffer.from('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'),
];

class Failure extends Error {}

// ------------------------------------------------------------------ channel

/** The server's end of a fuzz connection; the fuzzer plays the client. */
class FuzzChannel {
  constructor(fx, label) {
    this.fx = fx;
    this.localLabel = 'fuzz:server';
    this.remoteLabel = label;
    this.handlers = undefined;
    this.early = [];
    this.held = [];
    this.heldBytes = 0;
    this.paused = false;
    this.closed = false;
    this.out = [];
    this.outBytes = 0;
    this.setCount = 0;
    /** Sometimes report backpressure, to exercise the drain path. */
    this.flaky = false;
    this.owesDrain = false;
  }
  setHandlers(h) {
    this.handlers = h;
    this.setCount++;
    const early = this.early;
    this.early = [];
    for (const c of early) this.feed(c);
  }
  write(data) {
    if (this.closed) return false;
    this.fx.stats.serverBytesOut += data.length;
    if (this.outBytes < OUTPUT_CAP) {
      this.out.push(Uint8Array.from(data)); // the sealer's buffers may be pooled views
      this.outBytes += data.length;
    } else this.outOverflow = true;
    if (this.flaky && this.fx.appRng.chance(0.3)) {
      this.owesDrain = true;
      return false;
    }
    return true;
  }
  end() {
    this.shutdown();
  }
  destroy() {
    this.shutdown();
  }
  pause() {
    this.paused = true;
  }
  resume() {
    this.paused = false;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const c of held) this.feed(c);
  }
  /** Client -> server bytes. Exceptions from the handler propagate: a real socket would crash the process. */
  feed(chunk) {
    if (this.closed) return;
    if (!this.handlers) this.early.push(chunk);
    else if (this.paused) {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
    } else this.handlers.data(chunk);
  }
  drainNow() {
    if (this.owesDrain && !this.closed) {
      this.owesDrain = false;
      this.handlers?.drain();
    }
  }
  /** The client hung up. */
  remoteClose() {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close();
  }
  shutdown() {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close();
  }
  takeOutput() {
    const o = concat(this.out);
    this.out = [];
    this.outBytes = 0;
    return o;
  }
}

// ------------------------------------------------------------------ fixture

/** A server (real Acceptor, virtual clock) plus counters. */
export function createFixture(seed = 1) {
  const clock = new VirtualClock();
  const config = makeConfig({});
  const secretKeys = deriveSecretKeys(SECRET);
  const wrongKeys = deriveSecretKeys(WRONG_SECRET);
  const fx = {
    clock,
    config,
    secretKeys,
    wrongKeys,
    appRng: new Rng(seed ^ 0x5eed5eed),
    stats: {
      serverBytesOut: 0,
      rejects: 0,
      sessionsOpened: 0,
      sessionsClosed: 0,
      streamsOpened: 0,
      healthChecks: 0,
      peakSessions: 0,
      peakRecvBuffered: 0,
      peakOpenStreams: 0,
      peakClosedIdIntervals: 0,
      peakReassemblyParts: 0,
    },
    failures: [],
    currentCase: undefined,
    channels: [],
    ctxs: [],
    lastHello: undefined,
  };
  fx.acceptor = new Acceptor({
    secretKeys,
    config,
    clock,
    maxSessions: MAX_SESSIONS,
    graceMs: 1000,
    advertise: [{ id: 1, host: '198.51.100.7', port: 4433 }],
    onSession: (session) => {
      fx.stats.sessionsOpened++;
      return {
        stream: (s, target) => serverApp(fx, s, target),
        // Like the server's UDP relay: answer some datagrams on their flow (exercises the datagram queue).
        datagram: (d) => {
          if (fx.appRng.chance(0.5)) session.sendDatagram({ ...d, payload: d.payload.subarray(0, 512) });
        },
        closed: () => void fx.stats.sessionsClosed++,
      };
    },
    onReject: () => void fx.stats.rejects++,
  });
  return fx;
}

/** What the server does with a stream: like the real server (accept or reset), plus an echo target for health checks. */
function serverApp(fx, s, target) {
  fx.stats.streamsOpened++;
  const guard = (fn) => (...a) => {
    try {
      fn(...a);
    } catch (e) {
      // write/end after the stream closed is an application misuse here, not a server bug.
      if (!s.isClosed) throw e;
    }
  };
  if (target.host === 'echo.test') {
    s.accept();
    s.setHandlers({
      data: guard((c) => {
        s.write(Uint8Array.from(c));
        s.release(c.length);
      }),
      end: guard(() => s.end()),
    });
    return;
  }
  const r = fx.appRng;
  const what = r.int(10);
  if (what < 6) {
    s.accept();
    const hold = r.chance(0.2); // a slow reader: never releases credit
    s.setHandlers({
      data: guard((c) => {
        if (!hold) s.release(c.length);
      }),
      end: guard(() => {
        if (r.chance(0.5)) s.end();
      }),
    });
    if (r.chance(0.3)) s.write(r.bytes(r.size(20000)));
    if (r.chance(0.1)) s.end();
  } else if (what < 8) {
    s.reset(r.range(0, 255), r.chance(0.5) ? 'refused by fuzz app' : '');
  }
  // else: leave it pending, like a slow dial
}

function recordFailure(fx, kind, err, extra = {}) {
  const c = fx.currentCase;
  const f = {
    kind,
    message: err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err),
    stack: err instanceof Error ? err.stack : undefined,
    layer: c?.layer,
    index: c?.index,
    seed: c?.seed,
    caseKind: c?.kind,
    inputs: c?.inputs ?? [],
    ...extra,
  };
  fx.failures.push(f);
  return f;
}

/** Run fn; any exception is a crash (it would have escaped a socket handler or a timer). */
function guarded(fx, what, fn) {
  try {
    return fn();
  } catch (e) {
    recordFailure(fx, 'crash', e, { where: what });
    throw new Failure(what);
  }
}

async function settleClock(fx, ms) {
  try {
    await fx.clock.advance(ms);
  } catch (e) {
    recordFailure(fx, 'crash', e, { where: 'timer' });
    throw new Failure('timer');
  }
}

function accept(fx, ch) {
  fx.acceptor.accept(ch).then(undefined, (e) => recordFailure(fx, 'rejection', e, { where: 'Acceptor.accept' }));
}

function check(fx, cond, message, extra) {
  if (!cond) {
    recordFailure(fx, 'invariant', new Error(message), extra);
    throw new Failure(message);
  }
}

// ------------------------------------------------------------------ handshake layer

function helloBytes(fx, rng, o = {}) {
  const full = new Uint8Array(107);
  const dv = new DataView(full.buffer);
  full[0] = o.version ?? WIRE.VERSION;
  full[1] = o.flags ?? (rng.chance(0.2) ? 1 : 0);
  full[2] = o.addrId ?? rng.int(4);
  const ts = o.timestamp ?? fx.clock.wallNow();
  if (Array.isArray(ts)) {
    dv.setUint32(3, ts[0]);
    dv.setUint32(7, ts[1]);
  } else {
    dv.setUint32(3, Math.floor(ts / 2 ** 32));
    dv.setUint32(7, ts >>> 0);
  }
  full.set(o.nonce ?? rng.bytes(32), 11);
  full.set(o.ephemeral ?? rng.bytes(32), 43);
  full.set(helloMac((o.keys ?? fx.secretKeys).authKey, full.subarray(0, HELLO_MAC_OFFSET)), HELLO_MAC_OFFSET);
  // Another size (another version's layout, or a lie): cut or zero-extend.
  const body = new Uint8Array(o.size ?? 107);
  body.set(full.subarray(0, Math.min(107, body.length)));
  const out = new Uint8Array(3 + body.length);
  out[0] = MsgType.HELLO;
  out[1] = body.length >>> 8;
  out[2] = body.length & 0xff;
  out.set(body, 3);
  return out;
}

function liveSessions(fx) {
  return fx.acceptor.allSessions().filter((s) => !s.isClosed);
}

function joinBytes(fx, rng, token, rA, o = {}) {
  return encodeHandshake({
    type: MsgType.JOIN,
    version: o.version ?? 1,
    flags: o.flags ?? 0,
    addrId: o.addrId ?? rng.int(8),
    ...(o.instance !== undefined ? { instance: o.instance } : {}),
    token,
    rA,
  });
}

function rejectBytes(rng) {
  const w = new ByteWriter();
  const reason = rng.chance(0.3) ? rng.bytes(rng.size(220)) : new TextEncoder().encode('nope');
  w.u8(MsgType.REJECT).u16(1 + reason.length).u8(rng.int(256)).raw(reason);
  return w.bytes();
}

/** A message of any type with plausible size, for sequences. */
function anyMessage(fx, rng) {
  const type = rng.pick([1, 2, 3, 4, 5, 0x0f, 0, 6, 0x10, 0xff, 0x16]);
  switch (type) {
    case 1: return helloBytes(fx, rng);
    case 3: return joinBytes(fx, rng, rng.bytes(16), rng.bytes(32));
    case 0x0f: return rejectBytes(rng);
    default: {
      const len = rng.pick([0, 1, 32, 40, 96, rng.size(1100)]);
      return new ByteWriter().u8(type).u16(len).raw(rng.bytes(len)).bytes();
    }
  }
}

const HANDSHAKE_KINDS = [
  [14, 'random'],
  [24, 'hello-mutated'],
  [12, 'hello-remac'],
  [10, 'hello-then'],
  [20, 'join'],
  [12, 'sequence'],
  [4, 'slow'],
  [4, 'wrong-secret'],
];

async function handshakeCase(fx, rng, c) {
  const kind = rng.weighted(HANDSHAKE_KINDS);
  c.kind = kind;
  const ch = new FuzzChannel(fx, `hs:${c.index}`);
  ch.flaky = rng.chance(0.1);
  fx.channels.push(ch);
  accept(fx, ch);
  const send = async (bytes) => {
    c.inputs.push(bytes);
    for (const piece of chunk(rng, bytes)) {
      guarded(fx, 'handshake data', () => ch.feed(piece));
      if (rng.chance(0.1)) await flushMicrotasks();
    }
    await flushMicrotasks();
  };
  const corpus = [helloBytes(fx, rng), joinBytes(fx, rng, rng.bytes(16), rng.bytes(32)), rejectBytes(rng)];
  switch (kind) {
    case 'random': {
      let b = rng.bytes(rng.size(2000));
      if (b.length && rng.chance(0.5)) b[0] = rng.pick([1, 2, 3, 4, 5, 0x0f]);
      if (b.length > 2 && rng.chance(0.5)) b[1] = 0; // plausible length
      await send(b);
      break;
    }
    case 'hello-mutated':
      await send(mutate(rng, helloBytes(fx, rng), corpus));
      break;
    case 'wrong-secret':
      await send(helloBytes(fx, rng, { keys: fx.wrongKeys }));
      break;
    case 'hello-remac': {
      const o = {};
      switch (rng.int(8)) {
        case 0: o.version = rng.pick([0, 2, 255]); o.size = rng.pick([107, 51, 200, 3, 0]); break;
        case 1: o.flags = rng.pick([2, 0x80, 0xff, 3]); break;
        case 2: o.timestamp = rng.pick([0, fx.clock.wallNow() - 30_001, fx.clock.wallNow() + 30_001, fx.clock.wallNow() + 30_000, [0xffffffff, 0xffffffff], [0x200000, 0]]); break;
        case 3: o.ephemeral = rng.pick(LOW_ORDER); break;
        case 4: o.nonce = fx.lastHello ?? rng.bytes(32); break; // replay
        case 5: o.addrId = 255; o.flags = 1; break;
        case 6: o.size = rng.pick([106, 108, 1024]); break;
        default: o.ephemeral = rng.bytes(32); break; // any 32 bytes but the low-order points is a key
      }
      const b = helloBytes(fx, rng, o);
      if (!o.nonce) fx.lastHello = b.subarray(14, 46).slice();
      await send(b);
      break;
    }
    case 'hello-then': {
      const hello = helloBytes(fx, rng);
      const tail = rng.pick([
        () => rng.bytes(rng.size(600)),
        () => new ByteWriter().u32(rng.pick(INTERESTING_U32)).raw(rng.bytes(rng.size(100))).bytes(),
        () => helloBytes(fx, rng),
        () => rejectBytes(rng),
        () => anyMessage(fx, rng),
        () => new Uint8Array(0),
      ])();
      await send(rng.chance(0.5) ? concat([hello, tail]) : hello);
      if (rng.chance(0.5)) await send(tail);
      break;
    }
    case 'join':
      await joinCase(fx, rng, c, ch, send);
      break;
    case 'sequence': {
      const parts = [];
      const n = rng.range(1, 5);
      for (let i = 0; i < n; i++) parts.push(rng.chance(0.2) ? mutate(rng, anyMessage(fx, rng), corpus) : anyMessage(fx, rng));
      await send(concat(parts));
      break;
    }
    case 'slow': {
      const b = rng.chance(0.5) ? helloBytes(fx, rng) : rng.bytes(rng.size(200));
      const cut = rng.int(b.length + 1);
      await send(b.subarray(0, cut));
      await settleClock(fx, rng.range(0, 6000));
      await send(b.subarray(cut));
      break;
    }
  }
  const end = rng.int(10);
  if (end < 3) ch.remoteClose();
  else if (end < 4) await settleClock(fx, rng.range(1, 200));
  ch.drainNow();
}

/** JOIN for a live session (or a random token), then a confirm that is valid, mutated, or something else. */
async function joinCase(fx, rng, c, ch, send) {
  const sessions = liveSessions(fx);
  const target = sessions.length > 0 && rng.chance(0.8) ? rng.pick(sessions) : undefined;
  const token = target ? target.keys.token : rng.bytes(16);
  const rA = rng.chance(0.05) && fx.lastRA ? fx.lastRA : rng.bytes(32);
  fx.lastRA = rA;
  // Some JOINs name an instance (PROTOCOL.md 4.2); a few of those without flag bit 3 (refused).
  const instance = rng.chance(0.2) ? rng.int(65536) : undefined;
  const flags = (rng.chance(0.9) ? rng.int(2) : rng.pick([2, 0xff])) | (instance !== undefined && rng.chance(0.9) ? 0x08 : 0);
  const addrId = rng.int(256);
  let join = joinBytes(fx, rng, token, rA, { flags, addrId, instance, version: rng.chance(0.95) ? 1 : rng.pick([0, 2]) });
  if (rng.chance(0.2)) join = mutate(rng, join, [helloBytes(fx, rng)]);
  await send(join);
  const out = ch.takeOutput();
  const reader = new HandshakeReader();
  reader.push(out);
  let ack;
  try {
    ack = reader.next();
  } catch (e) {
    recordFailure(fx, 'invariant', e, { where: 'server reply to JOIN is not a valid handshake message', output: out });
    throw new Failure('bad server reply');
  }
  if (!ack || ack.type !== MsgType.JOIN_ACK || !target) {
    if (rng.chance(0.5)) await send(rng.bytes(rng.size(64)));
    return;
  }
  let confirm = encodeHandshake({ type: MsgType.JOIN_CONFIRM, hmacA: joinHmacA(target.keys, rA, ack.rB, addrId, flags, instance) });
  const what = rng.int(10);
  if (what < 4) confirm = mutate(rng, confirm, [join]);
  else if (what < 5) confirm = rng.chance(0.5) ? join : rejectBytes(rng);
  else if (what < 6) confirm = concat([confirm, rng.bytes(rng.size(300))]); // valid join then garbage
  else if (what < 7) confirm = concat([confirm, confirm]);
  await send(confirm);
  if (rng.chance(0.3)) await send(rng.bytes(rng.size(300)));
}

/** After a batch: time passes, every unfinished handshake must be gone, every refused channel closed. */
async function handshakeBatchEnd(fx) {
  await settleClock(fx, fx.config.handshakeTimeoutMs + 1);
  check(fx, fx.acceptor.handshakesInProgress === 0, `handshakes still pending after the timeout: ${fx.acceptor.handshakesInProgress}`);
  const live = new Set();
  for (const s of liveSessions(fx)) for (const sf of s.liveSubflows) live.add(sf.channel);
  for (const ch of fx.channels) {
    check(fx, ch.closed || live.has(ch), `channel ${ch.remoteLabel} left open without a session after the handshake timeout`);
  }
  check(fx, fx.acceptor.sessionCount <= MAX_SESSIONS, `sessions ${fx.acceptor.sessionCount} above maxSessions`);
  // The strangers hang up; the sessions they made expire after the grace.
  for (const ch of fx.channels) ch.remoteClose();
  fx.channels = [];
}

// ------------------------------------------------------------------ a fuzz client with a real session

/** A real session from the client side, by hand: we hold the keys and the sealer. */
async function newClient(fx, rng) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const ch = new FuzzChannel(fx, 'fuzz-client');
    ch.flaky = rng.chance(0.15);
    accept(fx, ch);
    const hello = startHello(fx.secretKeys, { backup: rng.chance(0.2), addrId: rng.int(4) }, fx.clock);
    guarded(fx, 'handshake data', () => ch.feed(hello.message));
    await flushMicrotasks();
    const reader = new HandshakeReader();
    reader.push(ch.takeOutput());
    const msg = reader.next();
    if (msg && msg.type === MsgType.REJECT && msg.code === 8 /* BUSY */) {
      // Sessions full of fuzz leftovers: let them expire.
      ch.remoteClose();
      await settleClock(fx, 20_000);
      continue;
    }
    check(fx, msg && msg.type === MsgType.HELLO_ACK, `valid HELLO refused: ${msg ? (msg.type === MsgType.REJECT ? `REJECT ${msg.code} ${msg.reason}` : msg.type) : 'no answer'}`);
    const res = hello.finish(msg);
    const session = fx.acceptor.allSessions().find((s) => Buffer.compare(s.keys.token, res.keys.token) === 0);
    check(fx, session, 'no server session after HELLO_ACK');
    const ctx = {
      ch,
      session,
      keys: res.keys,
      sendKey: res.subflowKeys.send,
      recvKey: res.subflowKeys.recv,
      sealer: new RecordSealer(res.subflowKeys.send),
      opener: new RecordOpener(res.subflowKeys.recv),
      subflowId: 0,
      serverRecords: 0,
      nextStream: 1,
      streams: new Map(),
      uses: 0,
      dead: false,
    };
    const rest = reader.takeRest();
    readServer(fx, ctx, rest);
    check(fx, ctx.subflowId !== 0, 'no ok record after HELLO_ACK');
    return ctx;
  }
  check(fx, false, 'server stayed BUSY');
}

/** Open and check what the server sent: it must always be well-formed records of well-formed frames. */
function readServer(fx, ctx, bytes = ctx.ch.takeOutput()) {
  if (ctx.dead || bytes.length === 0) return;
  try {
    ctx.opener.push(bytes);
    for (let p = ctx.opener.next(); p; p = ctx.opener.next()) {
      ctx.serverRecords++;
      decodeFrames(p, (f) => {
        if (f.type === 6 && f.message.t === 'ok') ctx.subflowId = f.message.subflow;
        if (f.type === 6 && f.message.t === 'close') ctx.closing = true;
      });
    }
  } catch (e) {
    recordFailure(fx, 'invariant', e, { where: 'server output is not well-formed records/frames', output: bytes });
    throw new Failure('bad server output');
  }
}

function dropClient(fx, ctx) {
  ctx.dead = true;
  ctx.ch.remoteClose();
  fx.ctxs = fx.ctxs.filter((c) => c !== ctx);
}

async function getClient(fx, rng) {
  fx.ctxs = fx.ctxs.filter((c) => !c.dead && !c.ch.closed);
  if (fx.ctxs.length >= CTX_POOL || (fx.ctxs.length > 0 && rng.chance(0.7))) return rng.pick(fx.ctxs);
  const ctx = await newClient(fx, rng);
  fx.ctxs.push(ctx);
  return ctx;
}

/** Server-side state bounds for a session (memory must stay bounded whatever the peer sends). */
function checkSessionBounds(fx, session) {
  if (session.isClosed) return;
  const cfg = fx.config;
  const st = session.stats();
  fx.stats.peakRecvBuffered = Math.max(fx.stats.peakRecvBuffered, st.recvBufferedBytes);
  fx.stats.peakOpenStreams = Math.max(fx.stats.peakOpenStreams, st.openStreams);
  check(fx, st.openStreams <= cfg.maxStreams, `open streams ${st.openStreams} above maxStreams`);
  check(fx, st.recvBufferedBytes >= 0, `negative receive accounting: ${st.recvBufferedBytes}`);
  check(fx, st.recvBufferedBytes <= cfg.sessionRecvBudget + (1 << 20), `receive buffer ${st.recvBufferedBytes} above the session budget`);
  // Internals (TS-private, readable at run time): per-stream buffers and id memory.
  const streams = session.streams;
  let parts = 0;
  for (const s of streams?.values() ?? []) {
    parts = Math.max(parts, s.reassembly.parts);
    check(fx, s.recvBuffered <= cfg.streamWindow + WIRE.INITIAL_WINDOW, `stream ${s.id} holds ${s.recvBuffered} bytes, above its window`);
    check(fx, s.reassembly.parts <= cfg.reassemblyParts, `stream ${s.id} holds ${s.reassembly.parts} parts`);
  }
  fx.stats.peakReassemblyParts = Math.max(fx.stats.peakReassemblyParts, parts);
  const ids = session.peerIds?.ranges ?? 0;
  fx.stats.peakClosedIdIntervals = Math.max(fx.stats.peakClosedIdIntervals, ids);
  // PeerStreamIds ends a session whose peer leaves more than 4 x maxStreams gaps.
  check(fx, ids <= 4 * cfg.maxStreams + 1, `${ids} finished-id ranges remembered, above 4 x maxStreams`);
  for (const sf of session.liveSubflows) {
    check(fx, sf.inflightBytes <= 64 << 20, `subflow ${sf.id} has ${sf.inflightBytes} bytes in flight`);
  }
  check(fx, (session.controlQueue?.length ?? 0) <= 1 << 20, 'control queue unbounded');
}

// ------------------------------------------------------------------ frames

const te = new TextEncoder();

function pickOffset(rng, len) {
  return rng.pick([
    0, rng.int(1000), rng.int(1 << 20), WIRE.INITIAL_WINDOW - len, WIRE.INITIAL_WINDOW, WIRE.INITIAL_WINDOW - 1,
    4 << 20, (4 << 20) + WIRE.INITIAL_WINDOW, 2 ** 53 - 1 - len, 2 ** 53 - 1, 2 ** 53 - len, [0x1fffff, 0xffffffff], [0x200000, 0], [0xffffffff, 0xffffffff], 2 ** 40,
  ]);
}

function pickStreamId(rng, ctx) {
  const known = [...ctx.streams.keys()];
  return rng.pick([
    0, 1, 2, 3, 4, 0xffffffff, 0xfffffffe, rng.int(2 ** 32), rng.int(64), ctx.nextStream, ctx.nextStream + 2 * rng.int(100),
    known.length ? rng.pick(known) : 1, known.length ? rng.pick(known) : 5,
  ]);
}

function dataFrame(w, rng, { stream, offset, payload, fin, lenLie }) {
  w.u8(1).u8(fin ? (rng.chance(0.1) ? 0xff : 1) : rng.chance(0.05) ? 0xfe : 0);
  w.u16(lenLie ?? payload.length).u32(stream).u64(offset).raw(payload);
}

function headerOf(body) {
  return concat([Uint8Array.of(body.length >>> 8, body.length & 0xff), body]);
}

/** A stream header as the start of the byte sequence: u16 length | map. */
function streamHeader(rng) {
  const valid = rng.chance(0.75);
  const body = headerBody(rng, valid);
  let len = body.length;
  if (rng.chance(0.05)) len = rng.pick([0, 1, 1024, 1025, 0xffff, len + 1, Math.max(0, len - 1)]);
  return concat([Uint8Array.of(len >>> 8, len & 0xff), body]);
}

/** Plausible stream traffic: open, continue, reorder, duplicate, finish. */
function plausibleData(w, rng, ctx) {
  let st;
  if (ctx.streams.size === 0 || rng.chance(0.3)) {
    const id = ctx.nextStream + (rng.chance(0.1) ? 2 * rng.int(50) : 0);
    ctx.nextStream = id + 2;
    st = { id, bytes: ctx.gentle ? headerOf(headerBody(rng, true)) : streamHeader(rng), sent: 0, fin: false };
    ctx.streams.set(id, st);
    if (ctx.streams.size > 512) ctx.streams.delete(ctx.streams.keys().next().value);
  } else st = rng.pick([...ctx.streams.values()]);
  // Grow the stream's byte sequence as needed.
  const want = rng.size(8000);
  if (st.sent + want > st.bytes.length && st.bytes.length < 1 << 20) st.bytes = concat([st.bytes, rng.bytes(want)]);
  const mode = rng.int(10);
  let offset = st.sent;
  // A correct peer stays within the initial credit (the fuzz app may never release any).
  const limit = ctx.gentle ? WIRE.INITIAL_WINDOW - 1 : Infinity;
  if (mode === 0) offset = Math.max(0, st.sent - rng.int(2000)); // duplicate
  else if (mode === 1) offset = st.sent + rng.int(4000); // gap (out of order)
  if (offset >= limit) offset = st.sent;
  const len = Math.max(0, Math.min(rng.size(WIRE.DATA_MAX_PAYLOAD), st.bytes.length - offset, limit - offset));
  const payload = st.bytes.subarray(offset, offset + len);
  const fin = ctx.gentle ? mode > 1 && (rng.chance(0.08) || offset + len >= limit) : rng.chance(0.08);
  dataFrame(w, rng, { stream: st.id, offset, payload, fin });
  if (mode > 1) st.sent = offset + len;
  if (fin) ctx.streams.delete(st.id);
}

function wildData(w, rng, ctx) {
  const len = rng.size(rng.chance(0.05) ? 20000 : WIRE.DATA_MAX_PAYLOAD);
  const payload = rng.chance(0.3) ? concat([streamHeader(rng), rng.bytes(len)]).subarray(0, Math.max(len, 1)) : rng.bytes(len);
  dataFrame(w, rng, {
    stream: pickStreamId(rng, ctx),
    offset: pickOffset(rng, payload.length),
    payload,
    fin: rng.chance(0.2),
    lenLie: rng.chance(0.05) ? rng.pick(INTERESTING_U16) : undefined,
  });
}

/** A DATAGRAM (PROTOCOL.md 6.7); wild ones lie about address types, lengths and ports. */
function datagramFrame(w, rng, wild) {
  const atyp = wild && rng.chance(0.2) ? rng.pick([2, 5, 0xff]) : rng.pick([0, 1, 3, 4]);
  w.u8(7).u8(rng.chance(0.3) ? 1 : rng.int(wild ? 256 : 4)).u32(rng.pick([1, 2, 3, rng.int(2 ** 32)])).u32(rng.pick([0, 1, rng.int(2048), 0xffffffff, rng.int(2 ** 32)]));
  w.u8(atyp);
  if (atyp === 1) w.raw(rng.bytes(4));
  else if (atyp === 4) w.raw(rng.bytes(16));
  else if (atyp === 3) {
    const name = te.encode(rng.pick(['example.org', 'a', 'x'.repeat(255)]));
    w.u8(wild && rng.chance(0.1) ? rng.pick([0, 255]) : name.length).raw(name);
  }
  if (atyp !== 0) w.u16(wild && rng.chance(0.1) ? 0 : rng.range(1, 65535));
  const payload = rng.bytes(rng.size(wild && rng.chance(0.05) ? 17000 : 1500));
  w.u16(wild && rng.chance(0.05) ? rng.pick(INTERESTING_U16) : payload.length).raw(payload);
}

/** Frames a correct peer could send: the session should survive them and build up state. */
function gentleFrame(w, rng, ctx) {
  switch (rng.weighted([[60, 'data'], [10, 'ack'], [10, 'window'], [5, 'reset'], [10, 'ping'], [5, 'control'], [8, 'datagram']])) {
    case 'data': return plausibleData(w, rng, ctx);
    case 'datagram': return datagramFrame(w, rng, false);
    case 'ack':
      w.u8(2).u32(ctx.subflowId).u64(ctx.serverRecords);
      return;
    case 'window': // for a stream the server never opened: ignored
      w.u8(3).u8(0).u32(2 * rng.range(1000, 100000)).u64(0).u64(WIRE.INITIAL_WINDOW);
      return;
    case 'reset': {
      const known = [...ctx.streams.keys()];
      const id = known.length && rng.chance(0.5) ? rng.pick(known) : ctx.nextStream + 2 * rng.int(10);
      ctx.streams.delete(id);
      w.u8(4).u8(rng.range(1, 11)).u32(id).u8(0);
      return;
    }
    case 'ping':
      w.u8(5);
      return;
    default: {
      const body = new ByteWriter().u8(0x81);
      mpStr(body, 't');
      mpStr(body, rng.pick(['future-thing', 'x', 'ping2']));
      const b = body.bytes();
      w.u8(6).u16(b.length).raw(b);
    }
  }
}

function oneFrame(w, rng, ctx) {
  if (ctx.gentle) return gentleFrame(w, rng, ctx);
  switch (rng.weighted([[30, 'data'], [25, 'wild'], [8, 'ack'], [8, 'window'], [8, 'reset'], [5, 'ping'], [12, 'control'], [6, 'datagram'], [3, 'unknown']])) {
    case 'data': return plausibleData(w, rng, ctx);
    case 'datagram': return datagramFrame(w, rng, true);
    case 'wild': return wildData(w, rng, ctx);
    case 'ack':
      w.u8(2).u32(rng.pick([ctx.subflowId, ctx.subflowId, 0, 2, 0xffffffff, rng.int(2 ** 32)]));
      w.u64(rng.pick([ctx.serverRecords, ctx.serverRecords, ctx.serverRecords + 1, 0, rng.int(1000), 2 ** 53 - 1, [0x200000, 0], [0xffffffff, 0xffffffff]]));
      return;
    case 'window':
      w.u8(3).u8(rng.int(256)).u32(pickStreamId(rng, ctx)).u64(pickOffset(rng, 0)).u64(pickOffset(rng, 0));
      return;
    case 'reset': {
      const reason = rng.chance(0.8) ? te.encode(rng.pick(['', 'bye', 'é漢', '\ufeff'])) : rng.bytes(rng.size(255));
      let len = reason.length;
      if (rng.chance(0.05)) len = rng.pick([255, len + 1]);
      w.u8(4).u8(rng.int(256)).u32(pickStreamId(rng, ctx)).u8(len).raw(reason);
      return;
    }
    case 'ping':
      w.u8(5);
      return;
    case 'control': {
      const body = controlBody(rng);
      let len = body.length;
      if (rng.chance(0.05)) len = rng.pick([0, len + 1, Math.max(0, len - 1), 0xffff]);
      w.u8(6).u16(len).raw(body);
      return;
    }
    default:
      w.u8(rng.pick([0, 8, 0x10, 0x7f, 0x80, 0xff])).raw(rng.bytes(rng.size(32)));
  }
}

/** Many RESETs for scattered unknown peer ids in one record (id memory amplification). */
function resetFlood(w, rng) {
  const base = 2 * rng.int(2 ** 30) + 1;
  const n = rng.range(100, 9000);
  for (let i = 0; i < n; i++) w.u8(4).u8(1).u32((base + 4 * i) >>> 0 | 1).u8(0);
}

function framesPlaintext(rng, ctx) {
  const mode = ctx.gentle ? 'frames' : rng.weighted([[75, 'frames'], [12, 'mutated'], [8, 'random'], [2, 'reset-flood'], [3, 'big']]);
  if (mode === 'random') return rng.bytes(rng.range(1, rng.chance(0.1) ? 65536 : 512));
  const w = new ByteWriter();
  if (mode === 'reset-flood') {
    resetFlood(w, rng);
    return w.bytes();
  }
  const n = mode === 'big' ? 60 : rng.range(1, 6);
  for (let i = 0; i < n && w.len < 40_000; i++) oneFrame(w, rng, ctx);
  let b = w.bytes();
  if (mode === 'mutated') b = mutate(rng, b);
  if (b.length === 0) b = Uint8Array.of(5);
  return b.length > WIRE.RECORD_MAX_PLAINTEXT ? b.subarray(0, WIRE.RECORD_MAX_PLAINTEXT) : b;
}

// ------------------------------------------------------------------ records

/** Seal by hand: any counter, any plaintext size, any length field. */
function sealRaw(key, counter, plaintext, lengthField) {
  const iv = Buffer.alloc(12);
  iv.writeUInt32BE(Math.floor(counter / 2 ** 32), 4);
  iv.writeUInt32BE(counter >>> 0, 8);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(lengthField ?? plaintext.length + 16, 0);
  const c = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
  c.setAAD(header);
  const ct = c.update(plaintext);
  c.final();
  return concat([header, ct, c.getAuthTag()]);
}

function recordsInput(rng, ctx) {
  const pieces = [];
  const seal = (pt) => {
    const r = ctx.sealer.seal(pt);
    return Uint8Array.from(r);
  };
  const benign = () => (rng.chance(0.5) ? Uint8Array.of(5) : new ByteWriter().u8(2).u32(ctx.subflowId).u64(ctx.serverRecords).bytes());
  const n = rng.range(1, 5);
  for (let i = 0; i < n; i++) pieces.push(seal(rng.chance(0.7) ? benign() : framesPlaintext(rng, ctx)));
  const i = rng.int(pieces.length);
  const target = pieces[i];
  switch (rng.int(12)) {
    case 0: // bit flip anywhere (length, ciphertext, tag)
      target[rng.int(target.length)] ^= 1 << rng.int(8);
      break;
    case 1: { // length lie
      const v = rng.pick(INTERESTING_U32);
      new DataView(target.buffer, target.byteOffset).setUint32(0, v);
      break;
    }
    case 2: // skip a counter (a record lost)
      pieces.splice(i, 1);
      break;
    case 3: // replay
      pieces.splice(i, 0, target.slice());
      break;
    case 4: // reorder
      if (pieces.length > 1) pieces.push(pieces.shift());
      break;
    case 5: // wrong key (the server-to-client key, or a random one)
      pieces[i] = sealRaw(rng.chance(0.5) ? randomBytes(32) : ctx.recvKey, ctx.sealer.counter - 1, Uint8Array.of(5));
      break;
    case 6: // empty plaintext, correctly sealed at the next counter
      pieces.push(sealRaw(ctx.sendKey, ctx.sealer.counter, new Uint8Array(0)));
      break;
    case 7: // oversized plaintext, correctly sealed
      pieces.push(sealRaw(ctx.sendKey, ctx.sealer.counter, new Uint8Array(WIRE.RECORD_MAX_PLAINTEXT + rng.range(1, 64)).fill(5)));
      break;
    case 8: // unsealed garbage
      pieces.splice(i, 0, rng.bytes(rng.size(300)));
      break;
    case 9: // truncated record, then the client hangs up
      pieces[i] = target.subarray(0, rng.int(target.length));
      pieces.length = i + 1;
      ctx.hangup = true;
      break;
    case 10: // a counter far ahead (2^40 region)
      pieces.push(sealRaw(ctx.sendKey, rng.pick([2 ** 40 - 1, 2 ** 40, 2 ** 32, ctx.sealer.counter + 1]), Uint8Array.of(5)));
      break;
    default: // mutate the whole byte stream
      return [mutate(rng, concat(pieces))];
  }
  return pieces;
}

// ------------------------------------------------------------------ record / frame cases

async function sessionCase(fx, rng, c, layer) {
  const ctx = await getClient(fx, rng);
  c.kind = layer;
  ctx.uses++;
  // Most frame cases are what a correct peer might send, so sessions live and build up state.
  ctx.gentle = layer === 'frames' && rng.chance(0.75);
  if (ctx.gentle) c.kind = 'frames-gentle';
  const session = ctx.session;
  let pieces;
  if (layer === 'records') {
    pieces = recordsInput(rng, ctx);
  } else {
    pieces = [];
    const n = rng.range(1, 4);
    for (let i = 0; i < n; i++) {
      const pt = framesPlaintext(rng, ctx);
      c.inputs.push(pt); // plaintexts are what matter for a repro
      pieces.push(Uint8Array.from(ctx.sealer.seal(pt)));
    }
  }
  if (layer === 'records') c.inputs.push(...pieces);
  const wire = concat(pieces);
  for (const piece of chunk(rng, wire)) {
    guarded(fx, 'session data', () => ctx.ch.feed(piece));
    if (ctx.ch.closed) break;
  }
  await flushMicrotasks();
  if (rng.chance(0.15)) await settleClock(fx, rng.pick([1, 25, 210, 1000, 3100]));
  ctx.ch.drainNow();
  await flushMicrotasks();
  readServer(fx, ctx);
  checkSessionBounds(fx, session);
  // Keep the subflow alive sometimes: acknowledge what the server sent.
  if (!ctx.ch.closed && rng.chance(0.5) && ctx.subflowId) {
    const ack = new ByteWriter().u8(2).u32(ctx.subflowId).u64(ctx.serverRecords).bytes();
    guarded(fx, 'session data', () => ctx.ch.feed(Uint8Array.from(ctx.sealer.seal(ack))));
    await flushMicrotasks();
    readServer(fx, ctx);
  }
  if (ctx.hangup || ctx.ch.closed || session.isClosed || ctx.uses >= CTX_LIFETIME || ctx.ch.paused) dropClient(fx, ctx);
}

// ------------------------------------------------------------------ health check

/** A fresh, honest client must still get a session and move bytes through a stream. */
export async function healthCheck(fx, bytes = 200_000) {
  fx.stats.healthChecks++;
  // Strangers go away first; what they left must expire on its own.
  for (const ctx of [...fx.ctxs]) dropClient(fx, ctx);
  for (const ch of fx.channels) ch.remoteClose();
  fx.channels = [];
  await settleClock(fx, 20_000);
  check(fx, fx.acceptor.handshakesInProgress === 0, 'handshakes pending before the health check');
  const link = new MemoryLink(fx.clock, { delayMs: 5 });
  accept(fx, link.b);
  const connecting = connectSession(link.a, { secretKeys: fx.secretKeys, config: fx.config, clock: fx.clock });
  let done;
  connecting.then((v) => (done = { v }), (e) => (done = { e }));
  for (let i = 0; i < 200 && !done; i++) await settleClock(fx, 5);
  check(fx, done && done.v, `health check: no session (${done?.e?.message ?? 'timeout'})`);
  const { session } = done.v;
  const s = session.openStream({ host: 'echo.test', port: 7 });
  const data = new Rng(bytes).bytes(bytes);
  const got = [];
  let ended = false;
  s.setHandlers({
    data: (chunk) => {
      got.push(Uint8Array.from(chunk));
      s.release(chunk.length);
    },
    end: () => void (ended = true),
  });
  let off = 0;
  const pump = () => {
    while (off < data.length) {
      const n = Math.min(16384, data.length - off);
      const ok = s.write(data.subarray(off, off + n));
      off += n;
      if (!ok) return;
    }
    s.end();
  };
  s.setHandlers({ drain: pump });
  pump();
  for (let i = 0; i < 2000 && !ended; i++) await settleClock(fx, 5);
  const echoed = concat(got);
  check(fx, ended && echoed.length === data.length && Buffer.compare(echoed, data) === 0, `health check: echoed ${echoed.length}/${data.length} bytes, ended=${ended}`);
  session.close();
  await settleClock(fx, 50);
}

// ------------------------------------------------------------------ driver

/**
 * Run `cases` fuzz cases. Layers: 'all' interleaves the three (each case
 * picks one from its own seed). Resolves with the report; never throws for a
 * finding (findings are in report.failures).
 */
export async function runFuzz(opts = {}) {
  const cases = opts.cases ?? 1_000_000;
  const seed = (opts.seed ?? 1) >>> 0;
  const layer = opts.layer ?? 'all';
  const start = opts.start ?? 0;
  const healthEvery = opts.healthEvery ?? 50_000;
  const maxFailures = opts.maxFailures ?? 5;
  const progressEvery = opts.progressEvery ?? 0;
  const fx = createFixture(seed);
  const perLayer = { handshake: 0, records: 0, frames: 0 };
  const t0 = performance.now();
  let peakHeap = 0;
  let peakRss = 0;
  const heapSamples = [];
  const sampleMem = () => {
    const m = process.memoryUsage();
    peakHeap = Math.max(peakHeap, m.heapUsed);
    peakRss = Math.max(peakRss, m.rss);
    return m;
  };
  let done = 0;
  let sinceBatch = 0;
  for (let i = start; i < start + cases; i++) {
    const which = layer === 'all' ? LAYERS[caseSeed(seed, 9, i) % 3] : layer;
    const rng = new Rng(caseSeed(seed, LAYER_ID[which], i));
    const c = { layer: which, index: i, seed, kind: undefined, inputs: [] };
    fx.currentCase = c;
    try {
      if (which === 'handshake') await handshakeCase(fx, rng, c);
      else await sessionCase(fx, rng, c, which);
      perLayer[which]++;
      if (++sinceBatch >= BATCH) {
        sinceBatch = 0;
        await handshakeBatchEnd(fx);
      }
      if (healthEvery > 0 && (i - start + 1) % healthEvery === 0) {
        fx.currentCase = { layer: 'health', index: i, seed, kind: 'health', inputs: [] };
        await healthCheck(fx);
      }
    } catch (e) {
      if (!(e instanceof Failure)) recordFailure(fx, 'harness', e);
      // Start from a clean slate after a finding (a new server), keep going.
      if (fx.failures.length >= maxFailures) break;
      const failures = fx.failures;
      const stats = fx.stats;
      Object.assign(fx, createFixture(seed + i), { failures, stats });
      sinceBatch = 0;
    }
    done++;
    if ((done & 1023) === 0) {
      const m = sampleMem();
      if ((done & 0xffff) === 0) heapSamples.push({ cases: done, heapUsed: m.heapUsed });
      if (progressEvery && done % progressEvery < 1024) opts.onProgress?.({ done, elapsedMs: performance.now() - t0, heapUsed: m.heapUsed, rss: m.rss, failures: fx.failures.length });
    }
  }
  fx.currentCase = { layer: 'health', index: start + done, seed, kind: 'final-health', inputs: [] };
  try {
    if (fx.failures.length < maxFailures) {
      await handshakeBatchEnd(fx);
      await healthCheck(fx);
    }
  } catch (e) {
    if (!(e instanceof Failure)) recordFailure(fx, 'harness', e);
  }
  sampleMem();
  const elapsedMs = performance.now() - t0;
  return {
    seed,
    layer,
    start,
    cases: done,
    perLayer,
    elapsedMs,
    casesPerSec: done / (elapsedMs / 1000),
    failures: fx.failures,
    stats: fx.stats,
    peakHeap,
    peakRss,
    heapSamples,
  };
}

/** Human-readable description of one failure, with a hex dump of its input. */
export function describeFailure(f, maxBytes = 512) {
  const lines = [
    `${f.kind.toUpperCase()} in layer ${f.layer} case ${f.index} (seed ${f.seed}, kind ${f.caseKind ?? '?'})${f.where ? ` at ${f.where}` : ''}`,
    `  ${f.message}`,
    `  reproduce: node scripts/fuzz.mjs --seed ${f.seed} --layer ${f.layer === 'health' ? 'all' : f.layer} --start ${f.index} --cases 1`,
  ];
  if (f.stack) lines.push(f.stack.split('\n').slice(1, 8).join('\n'));
  f.inputs.forEach((b, k) => lines.push(`  input ${k} (${b.length} bytes):`, hexdump(b, maxBytes)));
  if (f.output) lines.push(`  server output (${f.output.length} bytes):`, hexdump(f.output, maxBytes));
  return lines.join('\n');
}
