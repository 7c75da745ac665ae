// Fixtures for the browser tests: a herald binary on free ports, Debian's
// chromium driven by playwright-core, and a view of the WebSocket frames the
// page really sends and receives (observed through the browser, not the SDK).

import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../..');
export const HERALD_BIN = process.env.HERALD_BIN || resolve(here, '../../target/debug/herald');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const SCREENSHOTS = join(REPO, 'target/browser-screenshots');

/** A TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** Polls `check` (async, truthy when done) every `every` ms until `timeout` ms. */
export async function until(what, check, { timeout = 15000, every = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * One `herald serve` in embedded dev mode. `start()` again after `kill()`
 * restarts it on the same ports. `logs` collects its JSON log lines.
 */
export class Herald {
  constructor({ env = {} } = {}) {
    this.env = env;
    this.proc = null;
    this.output = '';
    this.logs = [];
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }
  get admin() {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  async start() {
    if (!this.port) {
      this.port = await freePort();
      this.adminPort = await freePort();
    }
    const proc = spawn(
      HERALD_BIN,
      ['serve', '--listen', `127.0.0.1:${this.port}`, '--admin-listen', `127.0.0.1:${this.adminPort}`],
      {
        env: { PATH: process.env.PATH, HERALD_LOG__FORMAT: 'json', HERALD_LOG__LEVEL: 'info,herald=debug', ...this.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    let partial = '';
    const collect = (chunk) => {
      const text = chunk.toString();
      this.output = (this.output + text).slice(-200000);
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) {
        try {
          this.logs.push(JSON.parse(line));
        } catch {
          /* not a JSON log line */
        }
      }
    };
    proc.stdout.on('data', collect);
    proc.stderr.on('data', collect);
    await until(`herald on ${this.base} and ${this.admin}`, async () => {
      if (proc.exitCode !== null) throw new Error(`herald exited ${proc.exitCode}:\n${this.output}`);
      const [pub, adm] = await Promise.all([fetch(`${this.base}/healthz`), fetch(`${this.admin}/readyz`)]);
      return pub.ok && adm.ok;
    });
    return this;
  }

  /** SIGKILL: the node dies without draining. */
  async kill() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if it takes too long. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
  }

  /** POST /v1/messages; returns the message id. */
  async publish(envelope) {
    const res = await fetch(`${this.admin}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope),
    });
    const text = await res.text();
    if (res.status !== 202) throw new Error(`publish answered ${res.status}: ${text}`);
    return JSON.parse(text).id;
  }

  async retract(id) {
    const res = await fetch(`${this.admin}/v1/messages/${encodeURIComponent(id)}`, { method: 'DELETE' });
    if (!res.ok) throw new Error(`retract answered ${res.status}: ${await res.text()}`);
  }
}

/** A local HTTP server with one picture, for image_url (which must be http(s)). */
export async function imageServer() {
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="120" viewBox="0 0 320 120">' +
    '<defs><linearGradient id="g" x1="0" x2="1"><stop offset="0" stop-color="#f3c46b"/><stop offset="1" stop-color="#d9763c"/></linearGradient></defs>' +
    '<rect width="320" height="120" rx="10" fill="url(#g)"/></svg>';
  const server = createHttpServer((req, res) => {
    res.writeHead(200, { 'content-type': 'image/svg+xml' });
    res.end(svg);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Debian's chromium through playwright-core, with a fresh user data dir. */
export async function launchBrowser() {
  const profile = await mkdtemp(join(tmpdir(), 'herald-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Records every WebSocket the page opens and the frames it sends and
 * receives, as the browser saw them on the wire.
 */
export function watchWire(page) {
  const wire = { sockets: [], sent: [], received: [] };
  page.on('websocket', (ws) => {
    const sock = { url: ws.url(), closed: false };
    wire.sockets.push(sock);
    ws.on('close', () => (sock.closed = true));
    const parse = (payload) => {
      try {
        return JSON.parse(typeof payload === 'string' ? payload : payload.toString());
      } catch {
        return { unparsed: String(payload) };
      }
    };
    ws.on('framesent', (f) => wire.sent.push(parse(f.payload)));
    ws.on('framereceived', (f) => wire.received.push(parse(f.payload)));
  });
  /** Waits for a sent frame matching `pred`. */
  wire.waitSent = (what, pred, opts) => until(`the page to send ${what}`, () => wire.sent.find(pred), opts);
  wire.waitReceived = (what, pred, opts) => until(`the page to receive ${what}`, () => wire.received.find(pred), opts);
  wire.ack = (id, status) => wire.sent.find((f) => f.t === 'ack' && f.id === id && f.status === status);
  wire.waitAck = (id, status, opts) => wire.waitSent(`ack ${status} for ${id}`, (f) => f.t === 'ack' && f.id === id && f.status === status, opts);
  return wire;
}

/** Opens the demo page as `user` and waits until the SDK has its hello. */
export async function openDemo(context, herald, user, path = '/') {
  const page = await context.newPage();
  const wire = watchWire(page);
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  await page.goto(`${herald.base}${path}?user=${encodeURIComponent(user)}`);
  await page.waitForSelector('#conn-state[data-state="open"]');
  return { page, wire, errors };
}

export async function screenshot(page, name) {
  await mkdir(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), animations: 'disabled' });
}

let counter = 0;
/** A user id no other test uses, so each test sees only its own messages. */
export function uniqueUser(prefix = 'e2e') {
  return `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}
