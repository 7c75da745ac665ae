// The SDK's core in a Web Worker (no DOM, no window, no history), in Chromium
// against a real node: it connects, receives, acks and tracks.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { perFile, uniqueUser, until } from './support.mjs';

const env = perFile({ before, after });

test('the core runs in a module worker: connects with getToken, receives a message, its ack reaches the server', async () => {
  const user = uniqueUser('worker');
  const page = await env.browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  try {
    await page.goto(`${env.herald.base}/__fixtures/renderer.html`);
    await page.evaluate((u) => {
      window.fromWorker = [];
      window.worker = new Worker('/__fixtures/core-worker.js', { type: 'module' });
      window.worker.onmessage = ({ data }) => window.fromWorker.push(data);
      window.worker.onerror = (e) => window.fromWorker.push({ type: 'error', message: e.message });
      window.worker.postMessage({ cmd: 'connect', user: u });
    }, user);
    const got = () => page.evaluate(() => window.fromWorker);
    const ready = await until('the worker to start', async () => (await got()).find((d) => d.type === 'ready' || d.type === 'error'));
    assert.deepEqual(ready, { type: 'ready', hasDocument: false, hasWindow: false });
    await until('the worker to be open', async () => (await got()).find((d) => d.type === 'state' && d.state === 'open' && d.user === user));
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'custom', data: { from: 'worker test' } });
    const msg = await until('the message in the worker', async () => (await got()).find((d) => d.type === 'message' && d.msg.id === id));
    assert.deepEqual(msg.msg.data, { from: 'worker test' });
    await page.evaluate((i) => window.worker.postMessage({ cmd: 'ack', id: i, status: 'clicked', action: 'open' }), id);
    const clicked = await env.herald.waitEvent('the worker\'s ack', (r) => r.type === 'clicked' && r.msg === id && r.user === user);
    assert.equal(clicked.action, 'open');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
