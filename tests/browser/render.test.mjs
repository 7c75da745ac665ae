// End to end: messages published over the admin API show up in the demo page,
// drawn by the SDK, and what the user does with them goes back as acks.
// Each test uses its own user id so it only sees its own messages.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { HERALD_BIN, imageServer, openDemo, perFile, screenshot, uniqueUser, until, sel } from './support.mjs';

const env = perFile({ before, after });
let images;

before(async () => {
  images = await imageServer();
});

after(() => images?.close());

/** What each kind looks like when it is drawn. */
const KINDS = {
  banner: { extra: { theme: { severity: 'warning' }, priority: 'urgent' }, role: 'alert' },
  modal: { extra: { actions: [{ id: 'later', label: 'Later' }] }, role: 'dialog', roleInside: true },
  card: { extra: { image: true, actions: [{ id: 'go', label: 'Take a look', url: '/product' }] }, role: 'region' },
  toast: { extra: { actions: [{ id: 'undo', label: 'Undo' }] }, role: 'status' },
  tooltip: { extra: { anchor: '#hero-cta' }, role: 'dialog' },
  fullscreen: { extra: { actions: [{ id: 'start', label: 'Get started' }, { id: 'skip', label: 'Skip' }] }, role: 'dialog' },
};

test('every kind is drawn, acked as displayed, and dismissed with its close button', async () => {
  const user = uniqueUser('kinds');
  const { page, wire, errors } = await openDemo(env.browser.context, env.herald, user);
  try {
    for (const [kind, spec] of Object.entries(KINDS)) {
      const title = `A ${kind} for ${user}`;
      const { image, ...extra } = spec.extra;
      if (image) extra.image_url = `${images.url}/notebook.svg`;
      const id = await env.herald.publish({ to: { users: [user] }, kind, title, body: `The body of the ${kind}.`, ...extra });
      const el = await page.waitForSelector(sel(id), { state: 'visible' });
      assert.equal(await el.getAttribute('data-herald-kind'), kind);
      const roleEl = spec.roleInside ? await el.$('[role]') : el;
      assert.equal(await roleEl.getAttribute('role'), spec.role, `${kind} role`);
      assert.equal(await el.$eval('.herald-title', (t) => t.textContent), title);
      // Labelled for assistive technology by its title.
      const labelled = await roleEl.getAttribute('aria-labelledby');
      assert.ok(kind === 'toast' || labelled, `${kind} has aria-labelledby`);
      if (image) {
        await until('the image to load', () => el.$eval('img.herald-image', (i) => i.complete && i.naturalWidth > 0));
        assert.equal(await el.$eval('img.herald-image', (i) => i.alt), '');
      }
      for (const a of spec.extra.actions || []) {
        assert.equal(await el.$eval(`[data-herald-action="${a.id}"]`, (b) => b.tagName + ':' + b.textContent), `BUTTON:${a.label}`);
      }
      await wire.waitAck(id, 'displayed');
      await screenshot(page, kind);
      await el.$eval('.herald-close', (b) => b.click());
      await page.waitForSelector(sel(id), { state: 'detached' });
      await wire.waitAck(id, 'dismissed');
    }
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('a tooltip waits for its anchor and follows it', async () => {
  const user = uniqueUser('tooltip');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    // #add-to-cart lives on the Product page, which is not shown yet.
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'tooltip', anchor: '#add-to-cart', title: 'Free shipping today' });
    // Positive control first: the message did arrive at the page.
    await wire.waitReceived('the tooltip', (f) => f.t === 'msg' && f.id === id);
    assert.equal(await page.isVisible(sel(id)), false, 'hidden while its anchor is not on screen');
    assert.equal(wire.ack(id, 'displayed'), undefined, 'not acked as displayed while hidden');
    await page.click('nav a[data-route="/product"]');
    const tip = await page.waitForSelector(sel(id), { state: 'visible' });
    await wire.waitAck(id, 'displayed');
    const [a, t] = await Promise.all([page.$eval('#add-to-cart', (e) => e.getBoundingClientRect().toJSON()), tip.boundingBox()]);
    assert.ok(Math.abs(t.y - (a.bottom + 10)) <= 2 || Math.abs(t.y + t.height - (a.top - 10)) <= 2, `tooltip next to its anchor: ${JSON.stringify({ a, t })}`);
    await screenshot(page, 'tooltip-anchored');
  } finally {
    await page.close();
  }
});

test('retract takes the overlay off screen', async () => {
  const user = uniqueUser('retract');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'banner', title: 'Scheduled maintenance tonight' });
    await page.waitForSelector(sel(id), { state: 'visible' });
    await env.herald.retract(id);
    await wire.waitReceived('the retract', (f) => f.t === 'retract' && f.id === id);
    await page.waitForSelector(sel(id), { state: 'detached' });
    assert.equal(wire.ack(id, 'dismissed'), undefined, 'a retract is not a dismissal');
  } finally {
    await page.close();
  }
});

test('Escape closes a modal, focus stays trapped inside it and returns afterwards', async () => {
  const user = uniqueUser('escape');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    await page.focus('#ev-purchase');
    const id = await env.herald.publish({
      to: { users: [user] },
      kind: 'modal',
      title: 'Export more with Pro',
      body: 'Unlimited exports, priority support.',
      actions: [
        { id: 'upgrade', label: 'Upgrade', url: '/pricing' },
        { id: 'later', label: 'Maybe later' },
      ],
    });
    await page.waitForSelector(sel(id), { state: 'visible' });
    const focusInModal = () => page.evaluate((s) => !!document.activeElement?.closest(s), sel(id));
    await until('focus to move into the modal', focusInModal);
    // Tab and Shift+Tab cycle through the modal's buttons and never leave it.
    const seen = new Set();
    for (const key of ['Tab', 'Tab', 'Tab', 'Tab', 'Shift+Tab', 'Shift+Tab']) {
      await page.keyboard.press(key);
      assert.ok(await focusInModal(), `focus stays in the modal after ${key}`);
      seen.add(await page.evaluate(() => document.activeElement.getAttribute('data-herald-action') || document.activeElement.className));
    }
    assert.ok(seen.has('upgrade') && seen.has('later') && seen.has('herald-close'), `every button is reachable: ${[...seen]}`);
    await page.keyboard.press('Escape');
    await page.waitForSelector(sel(id), { state: 'detached' });
    await wire.waitAck(id, 'dismissed');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'ev-purchase');
  } finally {
    await page.close();
  }
});

test('clicking an action sends a clicked ack the server receives, then follows its link', async () => {
  const user = uniqueUser('click');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({
      to: { users: [user] },
      kind: 'modal',
      title: 'Export more with Pro',
      actions: [
        { id: 'upgrade', label: 'Upgrade', url: '/pricing' },
        { id: 'later', label: 'Maybe later' },
      ],
    });
    const modal = await page.waitForSelector(sel(id), { state: 'visible' });
    await (await modal.$('[data-herald-action="upgrade"]')).click();
    const ack = await wire.waitAck(id, 'clicked');
    assert.deepEqual(ack, { t: 'ack', id, status: 'clicked', action: 'upgrade' });
    // The server parsed it: its session loop logs every ack it accepts.
    await until('the server to log the clicked ack', () =>
      env.herald.logs.find((l) => l.message === 'ack' && l.msg_id === id && l.status === 'clicked'),
    );
    await page.waitForSelector(sel(id), { state: 'detached' });
    // The same-origin link was followed (inside the single-page app) and reported as a page view.
    await page.waitForSelector('section[data-page="/pricing"]:not([hidden])');
    assert.equal(new URL(page.url()).pathname, '/pricing');
    await wire.waitSent('a page_view for /pricing', (f) => f.t === 'event' && f.name === 'page_view' && f.props.path === '/pricing');
    assert.equal(wire.ack(id, 'dismissed'), undefined, 'a click is not also a dismissal');
  } finally {
    await page.close();
  }
});

test('message text is inserted as text, never as HTML', async () => {
  const user = uniqueUser('text');
  const { page } = await openDemo(env.browser.context, env.herald, user);
  try {
    const title = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>';
    const body = '<script>document.title="pwned"</script>line 1\nline 2';
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'banner', title, body });
    const el = await page.waitForSelector(sel(id), { state: 'visible' });
    assert.equal(await el.$eval('.herald-title', (t) => t.textContent), title);
    assert.equal(await el.$eval('.herald-body', (t) => t.textContent), body);
    assert.equal(await el.$$eval('img, b, script', (n) => n.length), 0);
    assert.notEqual(await page.title(), 'pwned');
  } finally {
    await page.close();
  }
});

test('one message per slot: priority order, urgent preemption and collapse_key replacement', async () => {
  const user = uniqueUser('queue');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const to = { users: [user] };
    const stay = [{ id: 'ok', label: 'OK' }]; // toasts with actions do not time out
    const low = await env.herald.publish({ to, kind: 'toast', priority: 'low', title: 'low', actions: stay });
    await page.waitForSelector(sel(low), { state: 'visible' });
    const normal = await env.herald.publish({ to, kind: 'toast', priority: 'normal', title: 'normal', actions: stay });
    const high = await env.herald.publish({ to, kind: 'toast', priority: 'high', title: 'high', actions: stay });
    await wire.waitReceived('the high toast', (f) => f.id === high);
    // Both arrived (positive control above); the slot still shows only the first.
    assert.equal(await page.$$eval('[data-herald-kind="toast"]', (n) => n.length), 1);
    assert.equal(await page.isVisible(sel(low)), true);
    await page.click(`${sel(low)} .herald-close`);
    await page.waitForSelector(sel(high), { state: 'visible' }); // high before normal
    assert.equal(await page.$(sel(normal)), null);
    // An urgent one preempts what is on screen; the preempted one comes back after.
    const urgent = await env.herald.publish({ to, kind: 'toast', priority: 'urgent', title: 'urgent', actions: stay });
    await page.waitForSelector(sel(urgent), { state: 'visible' });
    assert.equal(await page.$(sel(high)), null);
    await page.click(`${sel(urgent)} .herald-close`);
    await page.waitForSelector(sel(high), { state: 'visible' });
    await page.click(`${sel(high)} .herald-close`);
    await page.waitForSelector(sel(normal), { state: 'visible' });
    assert.equal(wire.sent.filter((f) => f.t === 'ack' && f.id === high && f.status === 'displayed').length, 1, 'displayed is acked once');

    // collapse_key: the newer message replaces the active one in place.
    const v1 = await env.herald.publish({ to, kind: 'banner', title: 'Incident: investigating', collapse_key: 'status-line' });
    await page.waitForSelector(sel(v1), { state: 'visible' });
    const v2 = await env.herald.publish({ to, kind: 'banner', title: 'Incident: resolved', collapse_key: 'status-line' });
    await page.waitForSelector(sel(v2), { state: 'visible' });
    await page.waitForSelector(sel(v1), { state: 'detached' });
    assert.equal(await page.$$eval('[data-herald-kind="banner"]', (n) => n.length), 1);
  } finally {
    await page.close();
  }
});

test('an expired message is taken off screen', async () => {
  const user = uniqueUser('ttl');
  const { page } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'card', title: 'Flash sale: one second left', ttl_s: 1 });
    await page.waitForSelector(sel(id), { state: 'visible' });
    await page.waitForSelector(sel(id), { state: 'detached', timeout: 10000 });
  } finally {
    await page.close();
  }
});

test('a toast without buttons leaves by itself, unacked', async () => {
  const user = uniqueUser('toast');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'toast', title: 'Saved' });
    await page.waitForSelector(sel(id), { state: 'visible' });
    await wire.waitAck(id, 'displayed');
    await page.waitForSelector(sel(id), { state: 'detached', timeout: 15000 }); // 6 s by default
    assert.equal(wire.ack(id, 'dismissed'), undefined, 'the user did not dismiss it');
  } finally {
    await page.close();
  }
});

test('kind custom goes to the app and is never drawn', async () => {
  const user = uniqueUser('custom');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to: { users: [user] }, kind: 'custom', data: { confetti: true } });
    // Positive control: the SDK handed it to the app (the demo logs it).
    await page.waitForSelector('#log li:has-text("custom message for the app")');
    const next = await env.herald.publish({ to: { users: [user] }, kind: 'toast', title: 'Drawn', actions: [{ id: 'ok', label: 'OK' }] });
    await page.waitForSelector(sel(next), { state: 'visible' });
    assert.equal(await page.$(sel(id)), null, 'custom is not drawn');
    assert.equal(wire.ack(id, 'displayed'), undefined, 'custom is not acked by the SDK');
  } finally {
    await page.close();
  }
});

test('shouldShow vetoes a message: acked as suppressed and not drawn', async () => {
  const user = uniqueUser('veto');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    await page.click('nav a[data-route="/checkout"]');
    await page.check('#quiet-checkout');
    const vetoed = await env.herald.publish({ to: { users: [user] }, kind: 'card', title: 'Have you seen our pens?' });
    await wire.waitAck(vetoed, 'suppressed');
    // Positive control: on the same page an urgent message is allowed through.
    const urgent = await env.herald.publish({ to: { users: [user] }, kind: 'card', priority: 'urgent', title: 'Your card was declined' });
    await page.waitForSelector(sel(urgent), { state: 'visible' });
    assert.equal(await page.$(sel(vetoed)), null);
    assert.equal(wire.ack(vetoed, 'displayed'), undefined);
  } finally {
    await page.close();
  }
});

test('history navigation sends page_view events', async () => {
  const user = uniqueUser('pageview');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const views = () => wire.sent.filter((f) => f.t === 'event' && f.name === 'page_view').map((f) => f.props.path);
    await until('the initial page_view', () => views().includes('/'));
    await page.click('nav a[data-route="/pricing"]');
    await page.click('nav a[data-route="/product"]');
    await page.goBack();
    await until('page views for pricing, product and back', () => views().join(' ') === '/ /pricing /product /pricing');
    await page.click('#ev-feature');
    await wire.waitSent('feature_used', (f) => f.t === 'event' && f.name === 'feature_used' && f.props.feature === 'export');
  } finally {
    await page.close();
  }
});

test('a require_ack notice has no close button and ignores Escape and the backdrop until its button is pressed', async () => {
  const user = uniqueUser('ack');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  const to = { users: [user] };
  const backdrop = () => page.mouse.click(5, 790);
  try {
    // Positive controls: Escape and a click on the backdrop close an ordinary modal.
    const p1 = await env.herald.publish({ to, kind: 'modal', title: 'Ordinary one' });
    await page.waitForSelector(sel(p1), { state: 'visible' });
    await page.keyboard.press('Escape');
    await page.waitForSelector(sel(p1), { state: 'detached' });
    const p2 = await env.herald.publish({ to, kind: 'modal', title: 'Ordinary two' });
    await page.waitForSelector(sel(p2), { state: 'visible' });
    await backdrop();
    await page.waitForSelector(sel(p2), { state: 'detached' });
    await wire.waitAck(p2, 'dismissed');

    const id = await env.herald.publish({ to, kind: 'modal', title: 'Updated terms', body: 'Please read them.', require_ack: true });
    const modal = await page.waitForSelector(sel(id), { state: 'visible' });
    assert.equal(await modal.$('.herald-close'), null);
    await page.keyboard.press('Escape');
    await backdrop();
    // A later message drawn proves the page went on working meanwhile.
    const later = await env.herald.publish({ to, kind: 'card', title: 'Later card', actions: [{ id: 'x', label: 'X' }] });
    await page.waitForSelector(sel(later), { state: 'visible' });
    assert.equal(await page.isVisible(sel(id)), true);
    assert.equal(wire.ack(id, 'dismissed'), undefined);
    await (await modal.$('.herald-action')).click(); // the OK button the SDK adds
    await page.waitForSelector(sel(id), { state: 'detached' });
    await wire.waitAck(id, 'dismissed');
  } finally {
    await page.close();
  }
});

// Last in this file: a sticky broadcast goes to every session of this node.
test('a visitor with a guest id sees `herald broadcast`', async () => {
  const page = await env.browser.context.newPage();
  let id;
  try {
    await page.goto(`${env.herald.base}/`);
    await page.waitForSelector('#conn-state[data-state="open"]');
    const guest = await page.textContent('#user');
    assert.match(guest, /^guest-[0-9a-f]{8}$/);
    await page.reload();
    await page.waitForSelector('#conn-state[data-state="open"]');
    assert.equal(await page.textContent('#user'), guest, 'the guest id is kept in localStorage');

    const { stdout } = await promisify(execFile)(HERALD_BIN, ['broadcast', '--title', 'Payments degraded', '--api', env.herald.admin]);
    id = stdout.trim();
    const banner = await page.waitForSelector(sel(id), { state: 'visible' });
    assert.equal(await banner.getAttribute('data-herald-kind'), 'banner');
    assert.equal(await banner.getAttribute('role'), 'alert');
    assert.equal(await banner.$eval('.herald-title', (t) => t.textContent), 'Payments degraded');
    assert.ok(await banner.evaluate((b) => b.classList.contains('herald-sev-warning')), 'styled by theme.severity');
    await screenshot(page, 'broadcast');
  } finally {
    if (id) await env.herald.retract(id);
    await page.close();
  }
});

test('every kind on a phone, light and dark: inside the viewport, nothing cut off (screenshots)', async () => {
  const user = uniqueUser('phone');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const [kind, spec] of Object.entries(KINDS)) {
        const { image, ...extra } = spec.extra;
        if (image) extra.image_url = `${images.url}/notebook.svg`;
        if (kind === 'tooltip') extra.anchor = '#home-title';
        const id = await env.herald.publish({ to: { users: [user] }, kind, title: `A ${kind} on a phone`, body: `The body of the ${kind}, long enough to wrap on a narrow screen.`, ...extra });
        const el = await page.waitForSelector(sel(id), { state: 'visible' });
        await wire.waitAck(id, 'displayed');
        const boxes = await el.evaluate((e) => [e, ...e.querySelectorAll('*')].filter((n) => n.getClientRects().length).map((n) => n.getBoundingClientRect().toJSON()));
        for (const b of boxes) {
          assert.ok(b.left >= -0.5 && b.right <= 390.5, `${kind} (${scheme}) fits the phone's width: ${JSON.stringify(b)}`);
        }
        await screenshot(page, `${kind}-phone-${scheme}`);
        await el.$eval('.herald-close', (b) => b.click());
        await page.waitForSelector(sel(id), { state: 'detached' });
      }
    }
  } finally {
    await page.emulateMedia({ colorScheme: 'light' });
    await page.close();
  }
});
