// The Node snippet in examples/publish, run as a user runs it, against a live node.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { promisify } from 'node:util';
import { API_KEY, Herald, freePort, REPO } from './support.mjs';

const USER = 'u_123'; // the user the example envelopes are addressed to
const SNIPPET = join(REPO, 'examples/publish/publish.mjs');

let node;
before(async () => {
  if (!existsSync(join(REPO, 'examples/publish/node_modules/@herald/client'))) {
    throw new Error('examples/publish has no node_modules: run npm ci --prefix examples/publish (it links clients/node)');
  }
  node = await Herald.start();
});
afterEach(() => node.closeSessions());
after(() => node?.stop());

async function run(file, env) {
  try {
    const { stdout, stderr } = await promisify(execFile)('node', [SNIPPET, file], { cwd: REPO, env: { PATH: process.env.PATH, ...env }, timeout: 15000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    if (typeof e.code !== 'number') throw e;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('publish.mjs publishes and stores campaigns with the key', async () => {
  const env = { HERALD_API_URL: node.api, HERALD_API_KEY: API_KEY };
  const session = await node.connect(USER);
  const r = await run('examples/envelopes/transaction-confirmation.json', env);
  assert.equal(r.code, 0, r.stderr);
  const answer = JSON.parse(r.stdout);
  assert.deepEqual([answer.online, answer.offline], [[USER], []]);
  const f = await session.recvMsg();
  assert.deepEqual([f.id, f.title], [answer.id, 'Transfer sent']);

  const c = await run('examples/campaigns/trial-expiry-on-connect.json', env);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(JSON.parse(c.stdout).id, 'trial-expiry-on-connect');
});

test('publish.mjs exit codes: 1 refused, 2 unreachable', async () => {
  const session = await node.connect(USER);
  const noKey = await run('examples/envelopes/error-toast.json', { HERALD_API_URL: node.api });
  assert.equal(noKey.code, 1);
  assert.match(noKey.stderr, /401/);
  const away = await run('examples/envelopes/error-toast.json', { HERALD_API_URL: `http://127.0.0.1:${await freePort()}` });
  assert.equal(away.code, 2);
  assert.match(away.stderr, /cannot reach Herald/);
  // Nothing of those arrived: the next frame is this one.
  const ok = await run('examples/envelopes/success-toast.json', { HERALD_API_URL: node.api, HERALD_API_KEY: API_KEY });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await session.recvMsg()).id, JSON.parse(ok.stdout).id);
});
