// End to end: the SDK's connection behaviour against a real node that is
// restarted, drained, and that disconnects users.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDemo, perFile, screenshot, uniqueUser, until, sel } from './support.mjs';

// A short heartbeat so the SDK's application pings show up quickly.
const env = perFile({ before, after }, { env: { HERALD_SESSION__HEARTBEAT: '1s' } });

const tokenOf = (url) => new URL(url).searchParams.get('token');

/** Collects the SDK's state changes in the page. */
async function recordStates(page) {
  await page.evaluate(() => {
    window.__states = [];
    window.heraldClient.on('state', (s) => window.__states.push(s));
  });
  return () => page.evaluate(() => window.__states);
}

test('the node killed and restarted on the same ports: the SDK reconnects with a fresh token and shows what follows', async () => {
  const user = uniqueUser('restart');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const states = await recordStates(page);
    const before = await env.herald.publish({ to: { users: [user] }, kind: 'banner', title: 'Before the restart' });
    await page.waitForSelector(sel(before), { state: 'visible' });

    await env.herald.kill();
    await page.waitForSelector('#conn-state[data-state="reconnecting"]');
    await env.herald.start(); // same ports, new dev signing secret: the old token is now worthless
    await page.waitForSelector('#conn-state[data-state="open"]', { timeout: 30000 });

    const after = await env.herald.publish({ to: { users: [user] }, kind: 'toast', title: 'After the restart', actions: [{ id: 'ok', label: 'OK' }] });
    await page.waitForSelector(sel(after), { state: 'visible' });
    await wire.waitAck(after, 'displayed');
    await screenshot(page, 'after-restart');

    const opened = wire.sockets.map((s) => tokenOf(s.url));
    assert.ok(opened.length >= 2, `a second socket was opened: ${opened.length}`);
    assert.notEqual(opened.at(-1), opened[0], 'the reconnect used a fresh token from getToken');
    assert.ok((await states()).some((s) => s.state === 'reconnecting' && s.code === 1006));
    // What was on screen stays there across the reconnect.
    assert.equal(await page.isVisible(sel(before)), true);
  } finally {
    await page.close();
  }
});

test('a draining node (1012) is left and rejoined at once', async () => {
  const user = uniqueUser('drain');
  const { page } = await openDemo(env.browser.context, env.herald, user);
  try {
    const states = await recordStates(page);
    await env.herald.stop(); // SIGTERM: the node closes every session with 1012
    const drained = await until('a 1012 close', async () => (await states()).find((s) => s.state === 'reconnecting' && s.code === 1012));
    assert.ok(drained.delay < 1000, `reconnects within a second of jitter, got ${drained.delay} ms`);
    await env.herald.start();
    await page.waitForSelector('#conn-state[data-state="open"]', { timeout: 30000 });
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'card', title: 'Back after the drain' });
    await page.waitForSelector(sel(id), { state: 'visible' });
  } finally {
    await page.close();
  }
});

test('an operator disconnect (1008) is followed by a reconnect when getToken can mint a new token', async () => {
  const user = uniqueUser('kick');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const states = await recordStates(page);
    const res = await fetch(`${env.herald.admin}/v1/users/${user}/disconnect`, { method: 'POST' });
    assert.equal(res.status, 202);
    await until('a 1008 close', async () => (await states()).some((s) => s.state === 'reconnecting' && s.code === 1008));
    await until('the state to be open again', async () => (await states()).at(-1).state === 'open');
    assert.equal(wire.sockets.length, 2);
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'banner', title: 'Welcome back' });
    await page.waitForSelector(sel(id), { state: 'visible' });
  } finally {
    await page.close();
  }
});

test('an idle socket sends application pings at the heartbeat interval', async () => {
  const user = uniqueUser('ping');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const hello = await wire.waitReceived('hello', (f) => f.t === 'hello');
    assert.equal(hello.heartbeat_s, 1);
    await wire.waitSent('a ping', (f) => f.t === 'ping', { timeout: 10000 });
    await wire.waitReceived('a pong', (f) => f.t === 'pong', { timeout: 10000 });
    // Still the same healthy session.
    assert.equal(wire.sockets.length, 1);
    assert.equal(await page.getAttribute('#conn-state', 'data-state'), 'open');
  } finally {
    await page.close();
  }
});

test('dark mode follows prefers-color-scheme', async () => {
  const user = uniqueUser('dark');
  const { page } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'modal', title: 'Night owl?', body: 'Dark mode comes with Pro.', actions: [{ id: 'ok', label: 'OK' }] });
    const dialog = `${sel(id)} [role="dialog"]`;
    await page.waitForSelector(dialog, { state: 'visible' });
    const bg = () => page.$eval(dialog, (d) => getComputedStyle(d).backgroundColor);
    await page.emulateMedia({ colorScheme: 'light' });
    const light = await bg();
    await page.emulateMedia({ colorScheme: 'dark' });
    await until('the dark background', async () => (await bg()) !== light);
    assert.equal(await bg(), 'rgb(29, 32, 39)');
    await screenshot(page, 'modal-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  } finally {
    await page.close();
  }
});
