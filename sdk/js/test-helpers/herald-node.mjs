// Test helper (not a test file: node --test runs everything under test/).
// A real `herald serve` (embedded, dev mode) on free ports for the core's
// Node tests, and a WebSocket (the ws package) that records what goes over
// the wire. The binary: HERALD_BIN, else <repo>/target/debug/herald.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WS from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../../..');
export const HERALD_BIN = process.env.HERALD_BIN || resolve(REPO, 'target/debug/herald');

function freePort() {
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

/** Polls `check` until it returns something truthy; throws after `timeout` ms. */
export async function until(what, check, { timeout = 15000, every = 25 } = {}) {
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

export class HeraldNode {
  constructor({ env = {} } = {}) {
    this.env = env;
    this.output = '';
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
    this.port = await freePort();
    this.adminPort = await freePort();
    const proc = spawn(HERALD_BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, '--admin-listen', `127.0.0.1:${this.adminPort}`], {
      env: { PATH: process.env.PATH, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', r));
    const collect = (c) => (this.output = (this.output + c).slice(-100000));
    proc.stdout.on('data', collect);
    proc.stderr.on('data', collect);
    await until(`herald on ${this.base}`, async () => {
      if (proc.exitCode !== null) throw new Error(`herald exited ${proc.exitCode}:\n${this.output}`);
      const [a, b] = await Promise.all([fetch(`${this.base}/healthz`), fetch(`${this.admin}/readyz`)]);
      return a.ok && b.ok;
    });
    return this;
  }
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(t);
  }
  /** GET /dev/token: a token for `sub` (query: ttl, segments, attrs). */
  async token(sub, query = {}) {
    const res = await fetch(`${this.base}/dev/token?${new URLSearchParams({ sub, ...query })}`);
    if (!res.ok) throw new Error(`/dev/token answered ${res.status}: ${await res.text()}`);
    return (await res.json()).token;
  }
  async api(method, path, body) {
    const res = await fetch(`${this.admin}${path}`, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  }
  async publish(envelope) {
    return (await this.api('POST', '/v1/messages', envelope)).id;
  }
  retract(id) {
    return this.api('DELETE', `/v1/messages/${encodeURIComponent(id)}`);
  }
  disconnect(user) {
    return this.api('POST', `/v1/users/${encodeURIComponent(user)}/disconnect`);
  }
  /** The events stream's records (oldest first) matching `pred`. */
  async events(pred = () => true) {
    return (await this.api('GET', '/v1/streams/events?count=1000')).records.filter(pred).reverse();
  }
  waitEvent(what, pred, opts) {
    return until(`the events stream to record ${what}`, async () => (await this.events(pred))[0], opts);
  }
}

/**
 * A WebSocket class for the SDK's `WebSocket` option: the ws package,
 * recording every socket it opens and the frames each one sent and received.
 */
export function recordingWebSocket() {
  const sockets = [];
  class Recorded extends WS {
    constructor(url, ...rest) {
      super(url, ...rest);
      const rec = { url: new URL(url), sent: [], received: [], closed: null, ws: this };
      sockets.push(rec);
      this.on('message', (d) => rec.received.push(JSON.parse(String(d))));
      this.on('close', (code) => (rec.closed = code));
      const send = this.send.bind(this);
      this.send = (data, ...more) => {
        rec.sent.push(JSON.parse(String(data)));
        return send(data, ...more);
      };
    }
  }
  return { WebSocket: Recorded, sockets, last: () => sockets.at(-1) };
}

let n = 0;
export const uniqueUser = (p = 'core') => `${p}-${process.pid}-${++n}-${Math.random().toString(36).slice(2, 7)}`;
