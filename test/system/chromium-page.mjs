#!/usr/bin/env node
// Loads a page in headless Chromium, lets it run in real time for --wait ms (its WebSockets and
// timers run as in a browser: no virtual time, which would fire a page's timers long before a
// server's once-a-second pushes arrive), then writes the rendered DOM and a screenshot. Drives
// Chromium over the DevTools protocol (the `ws` package), so nothing but Debian's `chromium` is needed.
//
//   node test/system/chromium-page.mjs URL --dom OUT.html [--screenshot OUT.png] [--wait 3500] [--size 1200x800]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const url = args[0];
const domOut = opt('dom');
const shotOut = opt('screenshot');
const waitMs = Number(opt('wait', '3500'));
const [width, height] = opt('size', '1200x800').split('x').map(Number);
if (!url || !domOut) {
  process.stderr.write('usage: chromium-page.mjs URL --dom OUT.html [--screenshot OUT.png] [--wait MS] [--size WxH]\n');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const profile = mkdtempSync(join(tmpdir(), 'plait-chromium-'));
const chrome = spawn(
  'chromium',
  [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, `--window-size=${width},${height}`,
    '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0', 'about:blank',
  ],
  // Its own process group, so its helper processes (renderer, zygote, crashpad) end with it.
  { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
);
let chromeErr = '';
chrome.stderr.on('data', (d) => (chromeErr = (chromeErr + d).slice(-4000)));
const exited = new Promise((r) => chrome.once('exit', r));
const killGroup = (sig) => {
  try {
    process.kill(-chrome.pid, sig);
  } catch {
    // already gone
  }
};
const done = async (code, msg) => {
  if (msg) process.stderr.write(`chromium-page: ${msg}\n`);
  // A clean shutdown first (it stops its helpers), then the whole group by force.
  killGroup('SIGTERM');
  await Promise.race([exited, sleep(5_000)]);
  killGroup('SIGKILL');
  await exited;
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  } catch (e) {
    // A leftover temp profile is not the page's fault: say so, keep the result.
    process.stderr.write(`chromium-page: could not remove ${profile}: ${e instanceof Error ? e.message : String(e)}\n`);
  }
  process.exit(code);
};
setTimeout(() => done(1, `timed out\n${chromeErr}`), 60_000 + waitMs).unref();

// Chromium writes its DevTools port to the profile once it listens.
let port;
for (let i = 0; i < 200 && !port; i++) {
  try {
    port = Number(readFileSync(join(profile, 'DevToolsActivePort'), 'utf8').split('\n')[0]);
  } catch {
    await sleep(50);
  }
}
if (!port) await done(1, `chromium did not start\n${chromeErr}`);
let page;
for (let i = 0; i < 100 && !page; i++) {
  const list = await fetch(`http://127.0.0.1:${port}/json/list`).then((r) => r.json(), () => []);
  page = list.find((t) => t.type === 'page');
  if (!page) await sleep(50);
}
if (!page) await done(1, 'no page target');

const ws = new WebSocket(page.webSocketDebuggerUrl, { maxPayload: 256 * 1024 * 1024 });
await new Promise((r, j) => ws.once('open', r).once('error', j));
let nextId = 1;
const pending = new Map();
ws.on('message', (d) => {
  const m = JSON.parse(d.toString());
  if (m.id && pending.has(m.id)) {
    pending.get(m.id)(m);
    pending.delete(m.id);
  }
});
const call = (method, params = {}) =>
  new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
    ws.send(JSON.stringify({ id, method, params }));
  });

try {
  await call('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
  await call('Page.enable');
  await call('Page.navigate', { url });
  await sleep(waitMs);
  const { result } = await call('Runtime.evaluate', { expression: 'document.documentElement.outerHTML', returnByValue: true });
  writeFileSync(domOut, String(result.value));
  if (shotOut) {
    const { data } = await call('Page.captureScreenshot', { format: 'png' });
    writeFileSync(shotOut, Buffer.from(data, 'base64'));
  }
} catch (e) {
  await done(1, e instanceof Error ? e.message : String(e));
}
ws.close();
await done(0);
