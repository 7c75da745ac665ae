// The renderer on its own in Chromium: dismissible: false (SPEC §10.1),
// retractions that send no ack, and renderPreview (SPEC §10.6: the console's
// live preview). fixtures/renderer.html plays the server through a WebSocket
// stand-in, so a frame the node does not send yet can be drawn; the tests
// marked "waits for the server" do the same against the real node.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { expectControl, openDemo, perFile, screenshot, sel, uniqueUser, until } from './support.mjs';

const env = perFile({ before, after });

async function fixture(options) {
  const page = await env.browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${env.herald.base}/__fixtures/renderer.html`);
  await page.waitForFunction(() => window.fixtureReady);
  if (options !== false) await page.evaluate((o) => window.startClient(o), options || {});
  const push = (frame) => page.evaluate((f) => window.server.push(f), frame);
  const acks = (id) => page.evaluate((i) => window.server.acks(i), id);
  return { page, push, acks, errors };
}

const msg = (id, extra) => ({ t: 'msg', id, kind: 'modal', priority: 'normal', reason: 'push', ...extra });
const backdropClick = (page) => page.mouse.click(5, 790);

test('dismissible: false: no close control, Escape and the backdrop do nothing, only a click acknowledges it', async () => {
  const { page, push, acks, errors } = await fixture();
  try {
    // Positive controls: an ordinary modal closes with Escape, another with the backdrop.
    await push(msg('p1', { title: 'Ordinary' }));
    await page.waitForSelector(sel('p1'), { state: 'visible' });
    assert.ok(await page.$(`${sel('p1')} .herald-close`), 'an ordinary modal has a close button');
    await page.keyboard.press('Escape');
    await page.waitForSelector(sel('p1'), { state: 'detached' });
    await push(msg('p2', { title: 'Ordinary too' }));
    await page.waitForSelector(sel('p2'), { state: 'visible' });
    await backdropClick(page);
    await page.waitForSelector(sel('p2'), { state: 'detached' });
    assert.deepEqual(await acks('p2'), ['displayed', 'dismissed']);

    await push(msg('nd', { title: 'Confirm your email', body: 'We sent you a link.', dismissible: false, actions: [{ id: 'resend', label: 'Resend the link' }] }));
    const modal = await page.waitForSelector(sel('nd'), { state: 'visible' });
    assert.equal(await modal.$('.herald-close'), null, 'no close control');
    await until('focus in the dialog', () => page.evaluate(() => !!document.activeElement.closest('[data-herald-id="nd"]')));
    await page.keyboard.press('Escape');
    await backdropClick(page);
    assert.equal(await page.evaluate(() => window.client.dismiss('nd')), false, 'dismiss() refuses it too');
    // Positive control that the page went on: a card pushed after is drawn.
    await push(msg('later', { kind: 'card', title: 'Later card', actions: [{ id: 'x', label: 'X' }] }));
    await page.waitForSelector(sel('later'), { state: 'visible' });
    assert.equal(await page.isVisible(sel('nd')), true, 'still on screen');
    assert.deepEqual(await acks('nd'), ['displayed']);
    await page.click(`${sel('nd')} [data-herald-action="resend"]`);
    await page.waitForSelector(sel('nd'), { state: 'detached' });
    assert.deepEqual(await acks('nd'), ['displayed', 'clicked:resend']);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('dismissible: false without buttons: a dialog gets an OK button that acks clicked; a banner stays until retracted, unacked', async () => {
  const { page, push, acks } = await fixture();
  try {
    await push(msg('d', { title: 'Service update', dismissible: false }));
    const dialog = await page.waitForSelector(sel('d'), { state: 'visible' });
    assert.equal(await dialog.$('.herald-close'), null);
    assert.equal(await dialog.$eval('.herald-action', (b) => b.textContent), 'OK');
    await dialog.$eval('.herald-action', (b) => b.click());
    await page.waitForSelector(sel('d'), { state: 'detached' });
    assert.deepEqual(await acks('d'), ['displayed', 'clicked:ok']);

    await push(msg('b', { kind: 'banner', title: 'Read-only mode during the migration', dismissible: false }));
    const banner = await page.waitForSelector(sel('b'), { state: 'visible' });
    assert.equal(await banner.$('button'), null, 'neither a close control nor a button');
    await screenshot(page, 'banner-not-dismissible');
    await push({ t: 'retract', id: 'b' });
    await page.waitForSelector(sel('b'), { state: 'detached' });
    // Positive control: a message pushed after the retraction is acked as displayed, so acks do go out.
    await push(msg('after', { kind: 'toast', title: 'After', actions: [{ id: 'ok', label: 'OK' }] }));
    await page.waitForSelector(sel('after'), { state: 'visible' });
    await until('the control acked', async () => (await acks('after')).includes('displayed'));
    assert.deepEqual(await acks('b'), ['displayed'], 'a retraction sends no ack');
  } finally {
    await page.close();
  }
});

test('end to end: a modal published with dismissible: false has no close control', async () => {
  const user = uniqueUser('nodismiss');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'modal', title: 'Accept the new terms', dismissible: false, actions: [{ id: 'accept', label: 'Accept' }] });
    const modal = await page.waitForSelector(sel(id), { state: 'visible' });
    const frame = await wire.waitReceived('the msg', (f) => f.t === 'msg' && f.id === id);
    assert.equal(frame.dismissible, false, 'the msg frame carries dismissible');
    assert.equal(await modal.$('.herald-close'), null);
    await page.keyboard.press('Escape');
    await expectControl(env.herald, page, wire, { users: [user] }, { kind: 'card', title: 'Control', actions: [{ id: 'ok', label: 'OK' }] });
    assert.equal(await page.isVisible(sel(id)), true);
    await page.click(`${sel(id)} [data-herald-action="accept"]`);
    await wire.waitAck(id, 'clicked');
    assert.equal(wire.ack(id, 'dismissed'), undefined);
  } finally {
    await page.close();
  }
});

test('end to end: dismissed in one tab, the message leaves the other tab, which sends no ack for it', async () => {
  const user = uniqueUser('twotabs');
  const a = await openDemo(env.browser.context, env.herald, user);
  const b = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'card', title: 'New: shared carts' });
    await a.page.waitForSelector(sel(id), { state: 'visible' });
    await b.page.waitForSelector(sel(id), { state: 'visible' });
    await b.wire.waitAck(id, 'displayed');
    await a.page.click(`${sel(id)} .herald-close`);
    await a.wire.waitAck(id, 'dismissed');
    await b.wire.waitReceived('the retraction', (f) => f.t === 'retract' && f.id === id);
    await b.page.waitForSelector(sel(id), { state: 'detached' });
    // Positive control on tab b: it still acks what it shows.
    const control = await expectControl(env.herald, b.page, b.wire, { users: [user] });
    await b.wire.waitAck(control.id, 'displayed');
    assert.deepEqual(b.wire.sent.filter((f) => f.t === 'ack' && f.id === id).map((f) => f.status), ['displayed'], 'no ack from the tab it was retracted from');
  } finally {
    await a.page.close();
    await b.page.close();
  }
});

// --- renderPreview --------------------------------------------------------

const SAMPLES = {
  banner: { title: 'Payments are degraded', body: 'Card payments may take a few minutes.', theme: { severity: 'warning' }, actions: [{ id: 'status', label: 'Status page' }] },
  modal: { title: 'Export more with Pro', body: 'Unlimited exports, priority support and a team workspace.', actions: [{ id: 'upgrade', label: 'Upgrade' }, { id: 'later', label: 'Maybe later' }] },
  card: { title: 'Your order shipped', body: 'It arrives on Friday. We will email you when it is out for delivery.', actions: [{ id: 'track', label: 'Track it' }] },
  toast: { title: 'Saved', body: 'Your changes are live.', actions: [{ id: 'undo', label: 'Undo' }] },
  tooltip: { title: 'New: bulk edit', body: 'Select several rows, then edit them at once.', anchor: '#bulk-edit' },
  fullscreen: { title: 'Welcome to Northwind', body: 'Three steps and your shop is live.', actions: [{ id: 'start', label: 'Get started' }, { id: 'skip', label: 'Skip' }] },
};

test('renderPreview draws inside its container with the live drawing code, and leaves the host page alone', async () => {
  const { page, push } = await fixture({});
  try {
    // The same message drawn live (through the client) and as a preview: the same markup.
    const m = { id: 'same', kind: 'modal', priority: 'normal', ...SAMPLES.modal };
    await push({ t: 'msg', reason: 'push', ...m });
    await page.waitForSelector(`.herald-root:not(.herald-preview) ${sel('same')}`, { state: 'visible' });
    const shape = (root) =>
      page.$eval(`${root} ${sel('same')}`, (el) => {
        const walk = (n) => `${n.tagName}.${[...n.classList].join('.')}[${n.getAttribute('role') || ''}]${n.children.length ? '(' + [...n.children].map(walk).join(',') + ')' : ':' + n.textContent}`;
        return walk(el);
      });
    const live = await shape('.herald-root:not(.herald-preview)');
    await page.keyboard.press('Escape');
    await page.waitForSelector(`.herald-root:not(.herald-preview) ${sel('same')}`, { state: 'detached' });

    await page.focus('#host-input');
    await page.evaluate((msg) => {
      window.actions = [];
      window.pv = window.renderPreview(document.getElementById('preview'), msg, { theme: 'dark', onAction: (a) => window.actions.push(a.id) });
    }, m);
    const previewSel = `#preview .herald-root.herald-preview ${sel('same')}`;
    await page.waitForSelector(previewSel, { state: 'visible' });
    assert.equal(await shape('#preview .herald-preview'), live, 'the preview is drawn by the same code as a live message');

    // Inside the container: the backdrop covers the container, not the viewport.
    const [box, backdrop] = await Promise.all([page.$eval('#preview', (e) => e.getBoundingClientRect().toJSON()), page.$eval(previewSel, (e) => e.getBoundingClientRect().toJSON())]);
    assert.deepEqual([backdrop.x, backdrop.y, backdrop.width, backdrop.height].map(Math.round), [box.x + 1, box.y + 1, box.width - 2, box.height - 2].map(Math.round));
    // Dark whatever the page's scheme (light here).
    assert.equal(await page.$eval(`${previewSel} [role="dialog"]`, (d) => getComputedStyle(d).backgroundColor), 'rgb(29, 32, 39)');
    // The host keeps focus, its keyboard, Tab order and scrolling.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'host-input', 'focus was not moved into the preview');
    await page.keyboard.press('Escape');
    assert.deepEqual(await page.evaluate(() => window.server.keys.at(-1)), { key: 'Escape', prevented: false }, 'Escape is the host page\'s');
    assert.equal(await page.isVisible(previewSel), true, 'Escape does not close a preview');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'host-button', 'Tab moves on in the host page, not into a trap');
    assert.equal(await page.evaluate(() => document.documentElement.style.overflow), '', 'the page still scrolls');
    // For screen readers: a dialog in a preview does not hide the host page (aria-modal), the area is named.
    assert.equal(await page.$eval(`${previewSel} [role="dialog"]`, (d) => d.getAttribute('aria-modal')), null);
    assert.equal(await page.$eval('#preview .herald-preview', (r) => `${r.getAttribute('role')}:${r.getAttribute('aria-label')}`), 'group:Message preview');
    // Buttons report to the console, never to a server.
    await page.click(`${previewSel} [data-herald-action="upgrade"]`);
    assert.deepEqual(await page.evaluate(() => window.actions), ['upgrade']);
    assert.equal(await page.isVisible(previewSel), true, 'a preview stays after a click');
    assert.deepEqual(await page.evaluate(() => window.server.sent.filter((f) => f.t === 'ack' && f.id === 'same').map((f) => f.status)), ['displayed', 'dismissed'], 'only the live copy was acked');

    // update() redraws in place; destroy() leaves nothing behind.
    await page.evaluate(() => window.pv.update({ id: 'same', kind: 'card', title: 'Now a card' }));
    await page.waitForSelector(`#preview [data-herald-kind="card"]`, { state: 'visible' });
    assert.equal(await page.$$eval('#preview [data-herald-id]', (n) => n.length), 1);
    await page.evaluate(() => window.pv.destroy());
    assert.equal(await page.$eval('#preview', (p) => p.children.length), 0);
  } finally {
    await page.close();
  }
});

test('renderPreview: every kind, light and dark, desktop and phone widths (screenshots)', async () => {
  const { page } = await fixture(false);
  try {
    for (const [width, height, label] of [[960, 560, 'desktop'], [375, 667, 'phone']]) {
      await page.setViewportSize({ width: width + 48, height: height + 120 });
      await page.$eval('#preview', (p, [w, h]) => Object.assign(p.style, { width: `${w}px`, height: `${h}px` }), [width, height]);
      for (const theme of ['light', 'dark']) {
        for (const [kind, sample] of Object.entries(SAMPLES)) {
          await page.evaluate(([k, s, t]) => {
            window.pv?.destroy();
            window.pv = window.renderPreview(document.getElementById('preview'), { id: `p-${k}`, kind: k, ...s }, { theme: t });
          }, [kind, sample, theme]);
          const el = await page.waitForSelector(`#preview ${sel(`p-${kind}`)}`, { state: 'visible' });
          const [box, drawn] = await Promise.all([page.$eval('#preview', (e) => e.getBoundingClientRect().toJSON()), el.boundingBox()]);
          assert.ok(drawn.x >= box.x && drawn.y >= box.y && drawn.x + drawn.width <= box.x + box.width + 0.5 && drawn.y + drawn.height <= box.y + box.height + 0.5, `${kind} ${label} inside its container: ${JSON.stringify({ box, drawn })}`);
          const shot = await page.$('#preview');
          await screenshotOf(shot, `preview-${kind}-${theme}-${label}`);
        }
      }
    }
    // custom is the app's to draw: the preview says so instead of guessing.
    await page.evaluate(() => {
      window.pv.destroy();
      window.pv = window.renderPreview(document.getElementById('preview'), { id: 'c', kind: 'custom', data: { x: 1 } });
    });
    assert.match(await page.textContent('#preview .herald-preview-custom'), /drawn by the app/);
  } finally {
    await page.close();
  }
});

async function screenshotOf(el, name) {
  const { mkdir } = await import('node:fs/promises');
  const { SCREENSHOTS } = await import('./support.mjs');
  await mkdir(SCREENSHOTS, { recursive: true });
  await el.screenshot({ path: `${SCREENSHOTS}/${name}.png`, animations: 'disabled' });
}
