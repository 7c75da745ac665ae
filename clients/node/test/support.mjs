// Fixtures: real `herald serve` processes on free ports (embedded, on a
// Redis, on a Redis Cluster), real redis-server processes, and WebSocket
// sessions that see what a user's app would see.
//
// The herald binary is <repo>/target/debug/herald (`cargo build --bin
// herald`) unless HERALD_BIN names another. Missing tools fail the tests
// with the command that installs them; nothing is skipped.

import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../../..');
export const TESTDATA = join(REPO, 'clients/testdata');
export const API_KEY = 'client-tests-key-0123456789';
export const PATIENCE = 15000;

const deps = await Promise.all([import('ws'), import('redis')]).catch((e) => {
  throw new Error(`the tests need their devDependencies (${e.message}); install them with: npm ci (in clients/node)`);
});
const [{ default: WebSocket }, { createClient }] = deps;

export const load = (name) => JSON.parse(readFileSync(join(TESTDATA, name), 'utf8'));

/** Fails with how to get `tool` when it is not on the PATH. */
export function need(tool, install) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${tool} not found; install it with: ${install}`);
  }
}

export function heraldBin() {
  const bin = process.env.HERALD_BIN || join(REPO, 'target/debug/herald');
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(`no herald binary at ${bin}: build it with \`cargo build --bin herald\` (or point HERALD_BIN at one)`);
  }
  return bin;
}

/** A TCP port that was free a moment ago, below `below` (a cluster's bus port is 10000 above). */
export async function freePort(below = 65536) {
  for (;;) {
    const port = await new Promise((ok, fail) => {
      const srv = createServer();
      srv.on('error', fail);
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address();
        srv.close(() => ok(port));
      });
    });
    if (port < below) return port;
  }
}

/** Polls `check` (async, truthy when done) every `every` ms until `timeout` ms. */
export async function until(what, check, { timeout = PATIENCE, every = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      if (err instanceof Exited) throw new Error(`waiting for ${what}: ${err.message}`);
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

let counter = 0;
/** A user (or id) no other test uses. */
export const unique = (prefix = 'u') => `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;

class Exited extends Error {}

/** A child process; its output is kept (the last 200 kB) for failure messages. */
class Process {
  constructor(cmd, args, env = {}) {
    this.output = '';
    this.proc = spawn(cmd, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((r) => this.proc.once('exit', r));
    const keep = (chunk) => (this.output = (this.output + chunk).slice(-200000));
    this.proc.stdout.on('data', keep);
    this.proc.stderr.on('data', keep);
  }
  alive() {
    if (this.proc.exitCode !== null) throw new Exited(`${this.proc.spawnargs[0]} exited ${this.proc.exitCode}:\n${this.output.slice(-4000)}`);
    return true;
  }
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** One redis-server on a free port, keeping nothing on disk. */
export class RedisServer {
  static async start(extra = [], port) {
    need('redis-server', 'apt-get install -y redis-server');
    const s = new RedisServer();
    s.port = port ?? (await freePort());
    s.dir = mkdtempSync(join(tmpdir(), 'herald-client-redis-'));
    s.url = `redis://127.0.0.1:${s.port}`;
    s.process = new Process('redis-server', ['--port', `${s.port}`, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', s.dir, ...extra]);
    await until(`redis-server on ${s.port}`, async () => s.process.alive() && (await s.command('PING')) === 'PONG');
    return s;
  }
  /** One command on a fresh connection. */
  async command(...args) {
    const c = createClient({ url: this.url, socket: { reconnectStrategy: false } });
    c.on('error', () => {});
    await c.connect();
    try {
      return await c.sendCommand(args);
    } finally {
      c.destroy();
    }
  }
  async stop() {
    await this.process.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Three masters, created with redis-cli --cluster create. */
export class RedisCluster {
  static async start() {
    need('redis-cli', 'apt-get install -y redis-tools');
    const c = new RedisCluster();
    c.servers = [];
    for (let i = 0; i < 3; i++) {
      c.servers.push(await RedisServer.start(['--cluster-enabled', 'yes', '--cluster-node-timeout', '5000'], await freePort(55536)));
    }
    execFileSync('redis-cli', ['--cluster', 'create', ...c.servers.map((s) => `127.0.0.1:${s.port}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore', timeout: 60000 });
    for (const s of c.servers) {
      await until(`cluster state ok on ${s.port}`, async () => String(await s.command('CLUSTER', 'INFO')).includes('cluster_state:ok'));
    }
    c.url = c.servers[0].url;
    return c;
  }
  async stop() {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}

/** A WebSocket session as an app holds it: the frames it receives, in order. */
export class Session {
  static async open(url) {
    const s = new Session(new WebSocket(url));
    await new Promise((ok, fail) => {
      s.ws.once('open', ok);
      s.ws.once('error', fail);
    });
    s.hello = await s.recv();
    if (s.hello.t !== 'hello') throw new Error(`expected hello, got ${JSON.stringify(s.hello)}`);
    return s;
  }
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.wake = null;
    this.closeCode = null;
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()));
      this.wake?.();
    });
    ws.on('close', (code) => {
      this.closeCode = code;
      this.wake?.();
    });
  }
  /** The next frame; fails after `timeout` ms. */
  async recv(timeout = PATIENCE) {
    const deadline = Date.now() + timeout;
    while (this.frames.length === 0) {
      if (this.closeCode !== null) throw new Error(`session closed (${this.closeCode}) before the next frame`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeout} ms`);
      await new Promise((r) => {
        const timer = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(timer);
          r();
        };
      });
      this.wake = null;
    }
    return this.frames.shift();
  }
  /** The next frame, which must be a `msg`. */
  async recvMsg() {
    const f = await this.recv();
    if (f.t !== 'msg') throw new Error(`expected a msg frame, got ${JSON.stringify(f)}`);
    return f;
  }
  /** Resolves to the close code once the server closed the session. */
  async closed(timeout = PATIENCE) {
    await until('the session to close', () => this.closeCode !== null, { timeout });
    return this.closeCode;
  }
  close() {
    this.ws.close();
  }
}

/** `herald serve` in dev mode on free ports, with the test API key. */
export class Herald {
  static async start({ redis, env = {} } = {}) {
    const h = new Herald();
    h.port = await freePort();
    h.adminPort = await freePort();
    h.base = `http://127.0.0.1:${h.port}`;
    h.api = `http://127.0.0.1:${h.adminPort}`;
    h.sessions = [];
    const args = ['serve', '--listen', `127.0.0.1:${h.port}`, '--admin-listen', `127.0.0.1:${h.adminPort}`];
    if (redis) args.push('--redis', redis);
    h.process = new Process(heraldBin(), args, { HERALD_AUTH__API_KEYS: API_KEY, HERALD_LOG__LEVEL: 'info', ...env });
    await until(`herald on ${h.base} and ${h.api}`, async () => {
      h.process.alive();
      const [pub, adm] = await Promise.all([fetch(`${h.base}/healthz`), fetch(`${h.api}/readyz`)]);
      return pub.ok && adm.ok;
    });
    return h;
  }
  async token(user) {
    const res = await fetch(`${this.base}/dev/token?sub=${encodeURIComponent(user)}`);
    if (!res.ok) throw new Error(`dev token answered ${res.status}: ${await res.text()}`);
    return (await res.json()).token;
  }
  /** A session of `user` (resuming from `since` when given), hello received. */
  async connect(user, since) {
    const q = new URLSearchParams({ token: await this.token(user), ...(since ? { since } : {}) });
    const s = await Session.open(`ws://127.0.0.1:${this.port}/v1/ws?${q}`);
    this.sessions.push(s);
    return s;
  }
  closeSessions() {
    for (const s of this.sessions.splice(0)) s.close();
  }
  async stop() {
    this.closeSessions();
    await this.process.stop();
  }
}
