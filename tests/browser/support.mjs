// Fixtures for the browser tests: a herald binary on free ports, Debian's
// chromium driven by playwright-core, and a view of the WebSocket frames the
// page really sends and receives (observed through the browser, not the SDK).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
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
    if (!existsSync(HERALD_BIN)) {
      throw new Error(`no herald binary at ${HERALD_BIN}: build it with \`cargo build --bin herald\`, or point HERALD_BIN at one`);
    }
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
    return (await this.publishReach(envelope)).id;
  }

  /** POST /v1/messages; returns the whole answer: {id, online?, offline?}. */
  async publishReach(envelope) {
    const res = await fetch(`${this.admin}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope),
    });
    const text = await res.text();
    if (res.status !== 202) throw new Error(`publish answered ${res.status}: ${text}`);
    return JSON.parse(text);
  }

  /** POST /v1/users/{user}/disconnect: every session of the user is closed with 1008. */
  async disconnect(user) {
    const res = await fetch(`${this.admin}/v1/users/${encodeURIComponent(user)}/disconnect`, { method: 'POST' });
    if (res.status !== 202) throw new Error(`disconnect answered ${res.status}: ${await res.text()}`);
  }

  /** PUT /v1/campaigns/{id}; returns the campaign as stored. */
  async putCampaign(id, campaign) {
    const res = await fetch(`${this.admin}/v1/campaigns/${encodeURIComponent(id)}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(campaign),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`PUT campaign answered ${res.status}: ${text}`);
    return JSON.parse(text);
  }

  async deleteCampaign(id) {
    const res = await fetch(`${this.admin}/v1/campaigns/${encodeURIComponent(id)}`, { method: 'DELETE' });
    if (!res.ok) throw new Error(`DELETE campaign answered ${res.status}: ${await res.text()}`);
  }

  /** GET /v1/streams/{name}?count=N on the admin listener: the newest records, newest first. */
  async stream(name = 'events', count = 1000) {
    const res = await fetch(`${this.admin}/v1/streams/${name}?count=${count}`);
    const text = await res.text();
    if (!res.ok) throw new Error(`GET /v1/streams/${name} answered ${res.status}: ${text}`);
    return JSON.parse(text).records;
  }

  /** The events records (oldest first) matching `pred`. */
  async events(pred = () => true) {
    return (await this.stream('events')).filter(pred).reverse();
  }

  /** Polls the events stream until a record matches `pred`; returns it. */
  waitEvent(what, pred, opts) {
    return until(`the events stream to record ${what}`, async () => (await this.stream('events')).find(pred), opts);
  }

  /** A counter of GET /metrics (summed over the series matching `labels`), 0 when absent. */
  async metric(name, labels = {}) {
    const text = await (await fetch(`${this.admin}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ([0-9.eE+-]+)$/);
      if (!m || m[1] !== name) continue;
      const have = Object.fromEntries([...(m[2] || '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
    }
    return sum;
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

/** Files a test made (a bundle, say), served at /__fixtures/NAME beside tests/browser/fixtures/. */
export const FIXTURES = new Map();

/** The demo's routes: the node answers them all with demo/index.html. */
const DEMO_PATHS = new Set(['/', '/pricing', '/product', '/checkout']);

/**
 * Answers the page's requests for the SDK (`/sdk/*.js`) and the demo page
 * from this working tree instead of the node, whose binary embeds the files
 * it was built with: the tests then test the SDK as it is now. The SDK's own
 * URLs and the demo's stay the same (same origin, same paths).
 * served.test.mjs checks what the node itself serves.
 */
export async function serveWorkingTree(context) {
  await context.route(
    (url) => url.hostname === '127.0.0.1' && (url.pathname.startsWith('/sdk/') || url.pathname.startsWith('/__fixtures/') || DEMO_PATHS.has(url.pathname)),
    async (route) => {
      const url = new URL(route.request().url());
      if (url.pathname.startsWith('/__fixtures/')) {
        const name = url.pathname.slice('/__fixtures/'.length);
        const made = FIXTURES.get(name);
        const body = made ? made.body : /^[a-z0-9-]+\.(html|js)$/.test(name) ? await readFile(join(here, 'fixtures', name)).catch(() => null) : null;
        if (!body) return route.fulfill({ status: 404, body: `no fixture ${name}` });
        const type = (made && made.type) || (name.endsWith('.html') ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8');
        return route.fulfill({ contentType: type, body });
      }
      if (DEMO_PATHS.has(url.pathname)) {
        if (route.request().resourceType() !== 'document') return route.fallback();
        return route.fulfill({ contentType: 'text/html; charset=utf-8', body: await readFile(join(REPO, 'demo/index.html')) });
      }
      const name = url.pathname.slice('/sdk/'.length);
      if (!/^[a-z-]+\.js$/.test(name)) return route.fallback();
      const body = await readFile(join(REPO, 'sdk/js', name)).catch(() => null);
      if (!body) return route.fulfill({ status: 404, body: 'not in sdk/js' });
      return route.fulfill({ contentType: 'text/javascript; charset=utf-8', headers: { 'access-control-allow-origin': '*' }, body });
    },
  );
}

/**
 * Debian's chromium through playwright-core, with a fresh user data dir.
 * `workingTree` (default true): the SDK and demo come from this checkout.
 */
export async function launchBrowser({ workingTree = true } = {}) {
  if (!existsSync(CHROMIUM_BIN)) {
    throw new Error(`no chromium at ${CHROMIUM_BIN}: install it with \`apt-get install -y chromium\`, or point CHROMIUM_BIN at one`);
  }
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
      // Pages the tests serve themselves (serveWorkingTree) have no address
      // space of their own; Chromium would then refuse their sockets to 127.0.0.1.
      '--disable-features=LocalNetworkAccessChecks',
    ],
    viewport: { width: 1280, height: 800 },
  });
  if (workingTree) await serveWorkingTree(context);
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
    const sock = { url: ws.url(), closed: false, sent: [], received: [] };
    wire.sockets.push(sock);
    ws.on('close', () => (sock.closed = true));
    const parse = (payload) => {
      try {
        return JSON.parse(typeof payload === 'string' ? payload : payload.toString());
      } catch {
        return { unparsed: String(payload) };
      }
    };
    ws.on('framesent', (f) => {
      const frame = parse(f.payload);
      wire.sent.push(frame);
      sock.sent.push(frame);
    });
    ws.on('framereceived', (f) => {
      const frame = parse(f.payload);
      wire.received.push(frame);
      sock.received.push(frame);
    });
  });
  /** Waits for a sent frame matching `pred`. */
  wire.waitSent = (what, pred, opts) => until(`the page to send ${what}`, () => wire.sent.find(pred), opts);
  wire.waitReceived = (what, pred, opts) => until(`the page to receive ${what}`, () => wire.received.find(pred), opts);
  wire.ack = (id, status) => wire.sent.find((f) => f.t === 'ack' && f.id === id && f.status === status);
  wire.waitAck = (id, status, opts) => wire.waitSent(`ack ${status} for ${id}`, (f) => f.t === 'ack' && f.id === id && f.status === status, opts);
  /** The `msg` frames for `id` received so far (on any socket). */
  wire.msgs = (id) => wire.received.filter((f) => f.t === 'msg' && f.id === id);
  /** Waits for the page to have opened its `n`-th socket (1-based) and returns it. */
  wire.waitSocket = (n, opts) => until(`socket #${n} to open`, () => wire.sockets[n - 1], opts);
  return wire;
}

/**
 * Opens the demo page as `user` (with more query parameters of the demo:
 * segments, attrs, locale) and waits until the SDK has its hello.
 */
export async function openDemo(context, herald, user, path = '/', query = {}) {
  const page = await context.newPage();
  const wire = watchWire(page);
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  const q = new URLSearchParams({ user, ...query });
  await page.goto(`${herald.base}${path}?${q}`);
  await page.waitForSelector('#conn-state[data-state="open"]');
  return { page, wire, errors };
}

/**
 * Holds the demo's token requests (GET /dev/token, made by getToken before
 * every connection attempt) while closed, so a test can keep the SDK
 * disconnected for exactly as long as it needs, without sleeping.
 */
export async function tokenGate(page) {
  let closed = false;
  const held = [];
  let requests = 0;
  await page.route(
    (url) => url.pathname === '/dev/token',
    (route) => {
      requests++;
      if (closed) held.push(route);
      else route.continue();
    },
  );
  return {
    /** Token requests seen so far (held or not). */
    get requests() {
      return requests;
    },
    close() {
      closed = true;
    },
    /** Waits until the SDK asks for a token while the gate is closed: it is between sockets. */
    waitHeld: (opts) => until('the SDK to ask for a token', () => held.length > 0, opts),
    async open() {
      closed = false;
      for (const route of held.splice(0)) await route.continue();
    },
  };
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

/** The selector of a message's overlay. */
export const sel = (id) => `[data-herald-id="${id}"]`;

/** The message `expectControl` publishes unless told otherwise: a toast that stays until dismissed. */
const CONTROL = { kind: 'toast', title: 'Control', actions: [{ id: 'ok', label: 'OK' }] };

/**
 * The positive control before a "nothing arrives" assertion: publishes
 * `message` (the envelope's fields but `to`) to `to`, waits until the page
 * draws it and until `sock` (one socket of `watchWire`, or the wire itself
 * for every socket) has received its `msg` frame, and returns that frame
 * (`frame.id` is the message's id). Whatever `sock` was to receive before
 * it has come by then.
 */
export async function expectControl(herald, page, sock, to, message = CONTROL) {
  const id = await herald.publish({ to, ...message });
  await page.waitForSelector(sel(id), { state: 'visible' });
  return until(`the control ${id} on the socket`, () => sock.received.find((f) => f.t === 'msg' && f.id === id));
}

/**
 * One node and one browser for a whole test file: registers the file's
 * `before` and `after` hooks and returns an object whose `herald` and
 * `browser` are set once `before` ran. `options` go to `new Herald` (its
 * `env`, say).
 */
export function perFile(hooks, options) {
  const env = { herald: null, browser: null };
  hooks.before(async () => {
    env.herald = await new Herald(options).start();
    env.browser = await launchBrowser();
  });
  hooks.after(async () => {
    await env.browser?.close();
    await env.herald?.stop();
  });
  return env;
}
