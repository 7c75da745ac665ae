// @herald/react with real React in Chromium against a real node: a small app
// (fixtures/react-app.jsx) bundled here with esbuild, react and react-dom
// from sdk/node_modules (`cd sdk && npm ci`), no network. The app draws
// modals and custom messages with its own components and toasts with
// useHeraldMessages; the SDK's DOM renderer draws the rest.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FIXTURES, REPO, expectControl, perFile, sel, uniqueUser, until, watchWire } from './support.mjs';

const env = perFile({ before, after });
const SDK_MODULES = join(REPO, 'sdk/node_modules');

before(async () => {
  if (!existsSync(join(SDK_MODULES, 'react-dom'))) {
    throw new Error('react and esbuild are not installed in sdk/: run `(cd sdk && npm ci)`');
  }
  const { build } = createRequire(join(SDK_MODULES, 'x.js'))('esbuild');
  const out = await build({
    entryPoints: [join(REPO, 'tests/browser/fixtures/react-app.jsx')],
    bundle: true,
    format: 'esm',
    write: false,
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"development"' },
    nodePaths: [SDK_MODULES],
    logLevel: 'silent',
  });
  FIXTURES.set('react-app.js', { body: Buffer.from(out.outputFiles[0].contents), type: 'text/javascript; charset=utf-8' });
});

const app = (id) => `[data-app-id="${id}"]`;

async function openApp(user) {
  const page = await env.browser.context.newPage();
  const wire = watchWire(page);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${env.herald.base}/__fixtures/react-app.html?user=${encodeURIComponent(user)}`);
  await page.waitForSelector('#status[data-state="open"]');
  return { page, wire, errors };
}

test('the app draws modals with its own component: acks, one per slot, retract, collapse_key and expiry still apply', async () => {
  const user = uniqueUser('react-modal');
  const to = { users: [user] };
  const { page, wire, errors } = await openApp(user);
  try {
    assert.equal(await page.textContent('#who'), user);
    const first = await env.herald.publish({ to, kind: 'modal', title: 'Export more with Pro', actions: [{ id: 'upgrade', label: 'Upgrade' }] });
    const second = await env.herald.publish({ to, kind: 'modal', title: 'Queued behind the first', actions: [{ id: 'ok', label: 'OK' }] });
    await page.waitForSelector(app(first), { state: 'visible' });
    await wire.waitReceived('the second modal', (f) => f.id === second);
    assert.equal(await page.$(sel(first)), null, 'not drawn by the SDK\'s renderer');
    assert.equal(await page.$(app(second)), null, 'one modal at a time');
    await wire.waitAck(first, 'displayed');
    await page.click(`${app(first)} [data-app-action="upgrade"]`);
    const clicked = await env.herald.waitEvent('the click', (r) => r.type === 'clicked' && r.msg === first && r.user === user);
    assert.equal(clicked.action, 'upgrade');
    await page.waitForSelector(app(first), { state: 'detached' });
    await page.waitForSelector(app(second), { state: 'visible' });
    await wire.waitAck(second, 'displayed');

    // A retraction takes it away without an ack.
    await env.herald.retract(second);
    await page.waitForSelector(app(second), { state: 'detached' });
    // collapse_key replaces it in place; ttl_s removes it when it expires.
    const v1 = await env.herald.publish({ to, kind: 'modal', title: 'Incident: investigating', collapse_key: `k-${user}` });
    await page.waitForSelector(app(v1), { state: 'visible' });
    const v2 = await env.herald.publish({ to, kind: 'modal', title: 'Incident: resolved', collapse_key: `k-${user}`, ttl_s: 1 });
    await page.waitForSelector(app(v2), { state: 'visible' });
    assert.equal(await page.$(app(v1)), null);
    await page.waitForSelector(app(v2), { state: 'detached', timeout: 10000 });
    // The close control (dismissible) acks dismissed.
    const d = await env.herald.publish({ to, kind: 'modal', title: 'Closable' });
    await page.click(`${app(d)} .app-close`);
    await wire.waitAck(d, 'dismissed');
    await page.waitForSelector(app(d), { state: 'detached' });
    // Positive control for the missing ack: a banner (the SDK's renderer draws banners here) arrives and is acked.
    const control = await expectControl(env.herald, page, wire, to, { kind: 'banner', title: 'Control banner' });
    await wire.waitAck(control.id, 'displayed');
    assert.deepEqual(wire.sent.filter((f) => f.t === 'ack' && f.id === second).map((f) => f.status), ['displayed'], 'a retraction is not acked');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('kind custom in a component of the app: shown, acked by the app, retracted, collapsed and expired', async () => {
  const user = uniqueUser('react-custom');
  const to = { users: [user] };
  const { page, wire } = await openApp(user);
  try {
    const a = await env.herald.publish({ to, kind: 'custom', data: { widget: 'confetti' } });
    const b = await env.herald.publish({ to, kind: 'custom', data: { widget: 'survey' }, collapse_key: `s-${user}` });
    await page.waitForSelector(app(a), { state: 'visible' });
    await page.waitForSelector(app(b), { state: 'visible' });
    assert.equal(await page.getAttribute(app(a), 'data-widget'), 'confetti');
    await wire.waitAck(a, 'displayed');
    await page.click(`${app(a)} .app-close`);
    await page.waitForSelector(app(a), { state: 'detached' });
    await env.herald.waitEvent('the dismissal', (r) => r.type === 'dismissed' && r.msg === a && r.user === user);
    const b2 = await env.herald.publish({ to, kind: 'custom', data: { widget: 'survey v2' }, collapse_key: `s-${user}`, ttl_s: 1 });
    await page.waitForSelector(app(b2), { state: 'visible' });
    assert.equal(await page.$(app(b)), null, 'replaced by collapse_key');
    await page.waitForSelector(app(b2), { state: 'detached', timeout: 10000 });
    const c = await env.herald.publish({ to, kind: 'custom', data: { widget: 'retract me' } });
    await page.waitForSelector(app(c), { state: 'visible' });
    await env.herald.retract(c);
    await page.waitForSelector(app(c), { state: 'detached' });
    const control = await expectControl(env.herald, page, wire, to, { kind: 'banner', title: 'Control banner' });
    await wire.waitAck(control.id, 'displayed');
    assert.deepEqual(wire.sent.filter((f) => f.t === 'ack' && f.id === c).map((f) => f.status), ['displayed']);
  } finally {
    await page.close();
  }
});

test('useHeraldMessages draws toasts, useHeraldStatus follows the connection, useHerald().track sends events', async () => {
  const user = uniqueUser('react-hooks');
  const to = { users: [user] };
  const { page, wire } = await openApp(user);
  try {
    const t1 = await env.herald.publish({ to, kind: 'toast', title: 'Saved', actions: [{ id: 'undo', label: 'Undo' }] });
    const t2 = await env.herald.publish({ to, kind: 'toast', title: 'Saved again', priority: 'urgent', actions: [{ id: 'undo', label: 'Undo' }] });
    await page.waitForSelector(app(t2), { state: 'visible' });
    assert.equal(await page.$(app(t1)), null, 'the urgent one took the slot');
    assert.equal(await page.$(sel(t2)), null, 'drawn by the app, not the SDK');
    await page.click(`${app(t2)} .app-close`);
    await wire.waitAck(t2, 'dismissed');
    await page.waitForSelector(app(t1), { state: 'visible' });
    await wire.waitAck(t1, 'displayed');

    await page.click('#export');
    await wire.waitSent('feature_used', (f) => f.t === 'event' && f.name === 'feature_used' && f.props.feature === 'export');

    await env.herald.disconnect(user);
    await page.waitForSelector('#status[data-state="reconnecting"]');
    await page.waitForSelector('#status[data-state="open"]');
    assert.equal(wire.sockets.length, 2);
    const after = await env.herald.publish({ to, kind: 'card', title: 'Drawn by the SDK', actions: [{ id: 'ok', label: 'OK' }] });
    await page.waitForSelector(sel(after), { state: 'visible' });
    assert.ok(await page.isVisible(app(t1)), 'what the app drew stays across the reconnect');
  } finally {
    await page.close();
  }
});
