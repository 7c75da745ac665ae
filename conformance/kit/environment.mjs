// A real Redis and a real Herald node (Redis mode) for the conformance kit,
// on free loopback ports, and what the kit needs from them: tokens signed
// with the node's HS256 secret, the admin API, the events stream.

import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Socket, createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../..');
export const HERALD_BIN = process.env.HERALD_BIN || resolve(REPO, 'target/debug/herald');

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

/** Polls `check` until it returns something truthy; throws after `timeout` ms. */
/** How long a check waits for what it expects (HERALD_CONFORMANCE_PATIENCE_MS, default 20 s). */
export const PATIENCE_MS = Number(process.env.HERALD_CONFORMANCE_PATIENCE_MS) || 20000;

export async function until(what, check, { timeout = PATIENCE_MS, every = 25 } = {}) {
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

function need(cmd, install) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  if (r.error) throw new Error(`${cmd} not found: install it with \`${install}\``);
}

function b64(obj) {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

/** Redis and one Herald node; `stop()` ends both. */
export class Environment {
  async start() {
    need('redis-server', 'apt-get install -y redis-server');
    if (!existsSync(HERALD_BIN)) {
      throw new Error(`no herald binary at ${HERALD_BIN}: build it with \`cargo build --bin herald\`, or point HERALD_BIN at one`);
    }
    this.secret = randomBytes(24).toString('hex');
    this.redisPort = await freePort();
    this.redis = spawn('redis-server', ['--port', String(this.redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    this.port = await freePort();
    this.adminPort = await freePort();
    this.output = '';
    await until('redis-server', () => new Promise((ok) => {
      const s = new Socket();
      s.once('error', () => ok(false));
      s.connect(this.redisPort, '127.0.0.1', () => {
        s.end();
        ok(true);
      });
    }));
    this.node = spawn(
      HERALD_BIN,
      ['serve', '--listen', `127.0.0.1:${this.port}`, '--admin-listen', `127.0.0.1:${this.adminPort}`, '--redis', `redis://127.0.0.1:${this.redisPort}`],
      {
        env: { PATH: process.env.PATH, HERALD_AUTH__HS256_SECRET: this.secret, HERALD_LOG__LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const collect = (c) => (this.output = (this.output + c).slice(-100000));
    this.node.stdout.on('data', collect);
    this.node.stderr.on('data', collect);
    this.nodeExited = new Promise((r) => this.node.once('exit', r));
    await until(`herald on ${this.base}`, async () => {
      if (this.node.exitCode !== null) throw new Error(`herald exited ${this.node.exitCode}:\n${this.output}`);
      const r = await fetch(`${this.admin}/readyz`);
      return r.ok;
    });
    return this;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  get admin() {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  async stop() {
    if (this.node && this.node.exitCode === null) {
      this.node.kill('SIGTERM');
      const t = setTimeout(() => this.node.kill('SIGKILL'), 10000);
      await this.nodeExited;
      clearTimeout(t);
    }
    if (this.redis && this.redis.exitCode === null) this.redis.kill('SIGKILL');
  }

  /** An HS256 token for `sub`, living `ttl` seconds. */
  token(sub, ttl = 3600) {
    const now = Math.floor(Date.now() / 1000);
    const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, iat: now, exp: now + ttl, jti: randomBytes(8).toString('hex') })}`;
    return `${head}.${createHmac('sha256', this.secret).update(head).digest('base64url')}`;
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

  disconnect(user) {
    return this.api('POST', `/v1/users/${encodeURIComponent(user)}/disconnect`);
  }

  /** The events stream's records matching `pred`. */
  async events(pred = () => true) {
    return (await this.api('GET', '/v1/streams/events?count=1000')).records.filter(pred);
  }
}
