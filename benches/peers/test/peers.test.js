// Each peer of herald-bench compare against a real Redis over real sockets:
// it starts, accepts a valid token, refuses a bad one, and forwards a Redis
// PUBLISH on Herald's channels to the right sessions. Run: npm test (in
// benches/peers, after npm ci); scripts/test runs it too.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const net = require('node:net');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const WebSocket = require('ws');
const Redis = require('ioredis');

const SECRET = 'peer-test-secret-0123456789abcdef';
const PREFIX = 'peertest';

if (spawnSync('redis-server', ['--version']).error) {
  throw new Error('redis-server not found; install it with: apt-get install -y redis-server');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function mint(sub, secret = SECRET, exp = Math.floor(Date.now() / 1000) + 3600) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc({ sub, exp })}`;
  const sig = crypto.createHmac('sha256', secret).update(head).digest('base64url');
  return `${head}.${sig}`;
}

async function until(what, f, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peers-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const client = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {}); // refused until the server is up
  await until('redis', async () => {
    await client.connect().catch(() => {});
    return (await client.ping()) === 'PONG';
  });
  return { port, proc, client };
}

async function startPeer(file, redisPort) {
  const port = await freePort();
  const proc = spawn(process.execPath, [path.join(__dirname, '..', file)], {
    env: { ...process.env, PEER_PORT: String(port), PEER_REDIS_URL: `redis://127.0.0.1:${redisPort}`, PEER_PREFIX: PREFIX, PEER_SECRET: SECRET },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  await until(`${file} /readyz`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok);
  return { port, proc, output: () => out };
}

// A session speaking the peer's protocol; `frames` collects text frames.
function connect(kind, port, token) {
  const url = kind === 'uws'
    ? `ws://127.0.0.1:${port}/v1/ws?token=${token}`
    : `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket&token=${token}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const frames = [];
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error('refused'), { status: res.statusCode })));
    ws.on('error', reject);
    ws.on('message', (data) => {
      const t = data.toString();
      if (kind === 'socketio') {
        if (t.startsWith('0{')) return ws.send('40');
        if (t === '2') return ws.send('3');
      }
      frames.push(t);
      if (t.includes('"hello"')) resolve({ ws, frames });
    });
  });
}

for (const [kind, file] of [['uws', 'uws.js'], ['socketio', 'socketio.js']]) {
  test(`${kind}: token checked, hello sent, Redis PUBLISH forwarded to the right sessions`, async (t) => {
    const redis = await startRedis();
    t.after(() => { redis.client.disconnect(); redis.proc.kill(); });
    const peer = await startPeer(file, redis.port);
    t.after(() => peer.proc.kill());

    if (kind === 'uws') assert.match(peer.output(), /native uws_linux_x64_\d+\.node/);

    await assert.rejects(connect(kind, peer.port, mint('ada', 'another-secret-0123456789abcdef')), (e) => e.status >= 400);
    await assert.rejects(connect(kind, peer.port, mint('ada', SECRET, 1000)), (e) => e.status >= 400);
    await assert.rejects(connect(kind, peer.port, 'not-a-jwt'), (e) => e.status >= 400);

    const ada = await connect(kind, peer.port, mint('ada'));
    const bob = await connect(kind, peer.port, mint('bob'));
    t.after(() => { ada.ws.terminate(); bob.ws.terminate(); });
    const stats = await (await fetch(`http://127.0.0.1:${peer.port}/v1/stats`)).json();
    assert.equal(stats.sessions, 2);

    // Subscriptions are in place once Redis counts a subscriber on ada's channel.
    await until('user channel subscribed', async () => {
      const [, n] = await redis.client.pubsub('NUMSUB', `${PREFIX}:user:ada`);
      return n === 1;
    });

    const toAda = '{"to":{"users":["ada"]},"kind":"toast","data":{"ts":1700000000000001}}';
    assert.equal(await redis.client.publish(`${PREFIX}:user:ada`, toAda), 1);
    const broadcast = '{"to":"all","kind":"banner","data":{"ts":1700000000000002}}';
    assert.equal(await redis.client.publish(`${PREFIX}:broadcast`, broadcast), 1);

    const wrap = (p) => (kind === 'uws' ? p : `42["msg",${p}]`);
    await until('ada gets both', () => ada.frames.includes(wrap(toAda)) && ada.frames.includes(wrap(broadcast)));
    // Bob receives the broadcast (positive control), and never ada's message,
    // which was published before the broadcast.
    await until('bob gets the broadcast', () => bob.frames.includes(wrap(broadcast)));
    assert.ok(!bob.frames.some((f) => f.includes('1700000000000001')), `bob got ${bob.frames}`);
  });
}
