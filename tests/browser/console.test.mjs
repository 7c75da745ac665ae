// The web console (SPEC §10.6, issue 14) end to end in Chromium: two nodes
// on a Redis of the test's own, one with API keys (signed in) and one
// without; what the console sends is drawn by a demo page on the keyed
// node's public listener. Views whose API is not on every node yet
// (Measure, Trace, preview count, scheduling, experiments) are in
// console-product.test.mjs.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { launchBrowser, openDemo, sel, uniqueUser, until } from './support.mjs';
import { KEY, admin, axeCheck, consoleShot, focusOnHeading, focusVisible, go, openConsole, startNode, startRedis, tabTo } from './console-support.mjs';

const env = {};
before(async () => {
  env.redis = await startRedis();
  env.keyed = await startNode(env.redis, KEY);
  env.open = await startNode(env.redis, null);
  env.browser = await launchBrowser();
});
after(async () => {
  await env.browser?.close();
  await env.keyed?.stop();
  await env.open?.stop();
  env.redis?.stop();
});

test('sign-in: the key is asked once, refused when wrong, kept for the tab only', async () => {
  const page = await env.browser.context.newPage();
  await page.goto(`${env.keyed.admin}/console`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await axeCheck(page, 'the sign-in form');
  await page.getByLabel('API key').fill('not-the-key-at-all');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('This key was refused').waitFor();
  assert.equal(await page.getByLabel('API key').getAttribute('aria-invalid'), 'true');
  await page.getByLabel('API key').fill(KEY);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#page-title');
  assert.equal(await page.textContent('#page-title'), 'Now');
  assert.match(await page.textContent('[data-auth="key"]'), /Signed in with an API key/);
  // A reload in the same tab stays signed in…
  await page.reload();
  await page.waitForSelector('#page-title');
  // …another tab asks again (sessionStorage: this tab only).
  const other = await env.browser.context.newPage();
  await other.goto(`${env.keyed.admin}/console`);
  await other.getByRole('heading', { name: 'Sign in' }).waitFor();
  await other.close();
  // Signing out forgets the key.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.close();
});

test('without API keys the console opens directly and says so', async () => {
  const { page, errors } = await openConsole(env.browser.context, env.open);
  assert.equal(await page.textContent('#page-title'), 'Now');
  assert.match(await page.textContent('[data-auth="keyless"]'), /No API keys on this node/);
  assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the first load is under 150 KB gzipped, and nothing comes from another origin', async () => {
  const page = await env.browser.context.newPage();
  const bodies = [];
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(env.open.admin) && !r.url().startsWith('data:')) foreign.push(r.url());
  });
  page.on('response', async (r) => bodies.push(r.body().then((b) => ({ url: r.url(), gz: gzipSync(b).length })).catch(() => null)));
  await page.goto(`${env.open.admin}/console`);
  await page.waitForSelector('[data-stat="sessions"]');
  const sizes = (await Promise.all(bodies)).filter(Boolean);
  const total = sizes.reduce((t, s) => t + s.gz, 0);
  assert.ok(sizes.some((s) => s.url.endsWith('/console/sdk/herald-render.js')), 'the SDK renderer is part of the first load');
  assert.ok(total < 150 * 1024, `first load ${total} bytes gzipped: ${JSON.stringify(sizes)}`);
  assert.deepEqual(foreign, []);
  await page.close();
});

test('Now: sessions, users and nodes across the cluster, refreshed without reloading', async () => {
  const { page, errors } = await openConsole(env.browser.context, env.keyed);
  await until('both nodes in the table', async () => (await page.locator('tr[data-node]').count()) === 2);
  const before = Number((await page.textContent('[data-stat="sessions"]')).replace(/,/g, ''));
  const user = uniqueUser('now');
  // A session on the keyless node: the keyed node's console counts it (cluster-wide).
  const demo = await openDemo(env.browser.context, env.open, user);
  await until('the new session in the sessions tile', async () => Number((await page.textContent('[data-stat="sessions"]')).replace(/,/g, '')) >= before + 1, { timeout: 20000 });
  assert.match(await page.textContent('[data-stat="nodes"]'), /^2$/);
  assert.match(await page.textContent('tr[data-node] .tag'), /this node/);
  // Deliveries per second: a number once two samples were taken.
  await until('a delivery rate', async () => /^[0-9.,]+$/.test(await page.textContent('[data-stat="rate"]')));
  await axeCheck(page, 'Now');
  assert.deepEqual(errors, []);
  await demo.page.close();
  await page.close();
});

test('Incident banner: raise, update in place, resolve, drawn on a demo page; keyboard only', async () => {
  const { page, errors } = await openConsole(env.browser.context, env.keyed, 'incident');
  const user = uniqueUser('inc');
  const demo = await openDemo(env.browser.context, env.keyed, user);
  await page.getByRole('status').filter({ hasText: 'No active incident' }).waitFor();
  await axeCheck(page, 'Incident banner (empty)');

  // Raise, with the keyboard only.
  await tabTo(page, 'input[name="severity"][value="critical"], input[name="severity"]:checked');
  await page.keyboard.press('ArrowRight'); // warning → critical
  assert.equal(await page.evaluate(() => document.querySelector('input[name="severity"]:checked').value), 'critical');
  assert.ok(await focusVisible(page), 'the severity choice shows focus');
  await tabTo(page, '#inc-title');
  assert.ok(await focusVisible(page), 'the title field shows focus');
  await page.keyboard.type('Payments are delayed');
  await page.keyboard.press('Tab');
  await page.keyboard.type('We are on it.');
  await tabTo(page, 'button[type="submit"]');
  assert.ok(await focusVisible(page), 'the button shows focus');
  await page.keyboard.press('Enter');
  await page.getByText(/Banner raised/).waitFor();
  const first = await page.locator('li[data-id]').getAttribute('data-id');
  const banner = await demo.page.waitForSelector(sel(first), { state: 'visible' });
  assert.equal(await banner.$eval('.herald-title', (t) => t.textContent), 'Payments are delayed');
  assert.ok(await banner.evaluate((b) => b.classList.contains('herald-sev-critical')));
  await demo.wire.waitAck(first, 'displayed');
  const frame = demo.wire.msgs(first)[0];
  assert.equal(frame.sticky, true);
  assert.equal(frame.priority, 'urgent', 'critical is urgent');
  assert.ok(frame.expires_at > Date.now() + 3600000, 'expires by itself (2 hours by default)');
  await axeCheck(page, 'Incident banner (active)');

  // Update in place: same collapse_key, the page's banner is replaced.
  await page.getByRole('button', { name: 'Update “Payments are delayed”' }).click();
  assert.equal(await page.locator('#inc-title').inputValue(), 'Payments are delayed');
  await page.locator('#inc-title').fill('Payments recovering');
  await page.getByRole('button', { name: 'Update banner' }).click();
  await page.getByText(/Banner updated in place/).waitFor();
  await until('the active set to hold the new banner only', async () => {
    const ids = await page.locator('li[data-id]').evaluateAll((els) => els.map((e) => e.dataset.id));
    return ids.length === 1 && ids[0] !== first;
  });
  const second = await page.locator('li[data-id]').getAttribute('data-id');
  await demo.page.waitForSelector(sel(second), { state: 'visible' });
  assert.equal(await demo.page.$eval(`${sel(second)} .herald-title`, (t) => t.textContent), 'Payments recovering');
  await demo.page.waitForSelector(sel(first), { state: 'detached' });

  // Resolve: confirmed first; cancelling keeps it.
  await page.getByRole('button', { name: 'Resolve “Payments recovering”' }).click();
  const dialog = page.getByRole('dialog', { name: 'Resolve this incident?' });
  await dialog.waitFor();
  await axeCheck(page, 'the confirm dialog');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await page.locator('li[data-id]').count(), 1);
  await page.getByRole('button', { name: 'Resolve “Payments recovering”' }).focus();
  await page.keyboard.press('Enter');
  await dialog.waitFor();
  await page.keyboard.press('Tab'); // Cancel has focus; Tab to the confirm button
  await page.keyboard.press('Enter');
  await page.getByText(/Resolved: “Payments recovering” retracted everywhere/).waitFor();
  await demo.page.waitForSelector(sel(second), { state: 'detached' });
  await page.getByRole('status').filter({ hasText: 'No active incident' }).waitFor();
  // A new page load no longer gets it: the positive control arrives, the banner does not.
  const later = await openDemo(env.browser.context, env.keyed, user);
  const control = await admin(env.keyed, 'POST', '/v1/messages', { to: { users: [user] }, kind: 'toast', title: 'Control', actions: [{ id: 'ok', label: 'OK' }] });
  await later.page.waitForSelector(sel(control.body.id), { state: 'visible' });
  assert.equal(later.wire.msgs(second).length, 0);
  assert.deepEqual(errors, []);
  await later.page.close();
  await demo.page.close();
  await page.close();
});

test('Compose: the SDK draws the preview (light, dark, phone, placeholders filled); sent to a user and drawn by the demo', async () => {
  const { page, errors } = await openConsole(env.browser.context, env.keyed, 'compose');
  const user = uniqueUser('compose');
  const demo = await openDemo(env.browser.context, env.keyed, user, '/', { attrs: 'name=Grace' });
  await axeCheck(page, 'Compose');
  const preview = page.locator('.preview-stage .herald-root.herald-preview');
  // Every kind is drawn by the renderer (custom: the app's placeholder).
  for (const kind of ['banner', 'modal', 'card', 'toast', 'tooltip', 'fullscreen', 'custom']) {
    await page.getByLabel('Kind').selectOption(kind);
    await preview.locator(`[data-herald-kind="${kind}"]`).first().waitFor();
  }
  await page.getByLabel('Kind').selectOption('modal');
  await page.getByLabel('Title', { exact: true }).fill('Hi {{attrs.name|there}}, exports are here');
  await page.getByLabel('Body', { exact: true }).fill('Export as CSV.');
  await page.getByLabel('Button 1 label').fill('Try it');
  await page.getByLabel('Button 1 id').fill('try');
  await until('the sample user in the preview', async () => (await preview.locator('.herald-title').textContent()) === 'Hi Ada, exports are here');
  await page.locator('.sample summary').click();
  await page.getByLabel('Attributes (JSON)').fill('{}');
  await until('the fallback in the preview', async () => (await preview.locator('.herald-title').textContent()) === 'Hi there, exports are here');
  await page.getByLabel('Attributes (JSON)').fill('{"name": "Ada"}');
  // A translation, previewed in its locale.
  await page.getByRole('button', { name: '+ Add translation' }).click();
  await page.getByLabel('Locale 1', { exact: true }).fill('fr');
  await page.getByLabel('Title (fr)').fill('Bonjour {{attrs.name}}');
  await page.getByLabel('Locale', { exact: true }).selectOption('fr');
  await until('the French preview', async () => (await preview.locator('.herald-title').textContent()) === 'Bonjour Ada');
  await page.getByLabel('Locale', { exact: true }).selectOption('');
  // Dark and phone.
  await page.locator('label.seg', { hasText: 'Dark' }).click();
  await page.waitForSelector('.preview-stage .herald-root.herald-preview.herald-dark');
  await page.locator('label.seg', { hasText: 'Phone' }).click();
  await until('a 375 px preview', async () => (await page.locator('.preview-stage .preview-frame').evaluate((e) => e.getBoundingClientRect().width)) === 375);
  await axeCheck(page, 'Compose (dark preview, phone)');

  // A CEL mistake is shown inline with the parser's message, as you type.
  await page.locator('label.seg', { hasText: 'Narrow down' }).click();
  await page.getByLabel('Where (CEL)').fill('attrs.plan ==');
  await page.locator('.audience .error', { hasText: 'Syntax error' }).waitFor();
  await page.getByLabel('Where (CEL)').fill('atrs.plan == "free"');
  await page.locator('.audience .error', { hasText: 'unknown variable "atrs"' }).waitFor();
  await page.getByLabel('Where (CEL)').fill('');
  await page.locator('.audience .error').waitFor({ state: 'detached' });
  await page.getByLabel('Users').fill(`${user}, nobody-${user}`);
  await page.getByLabel('Require acknowledgement').check();
  await page.getByRole('button', { name: 'Send message' }).click();
  await page.locator('[data-result="id"]').waitFor();
  const id = await page.textContent('[data-result="id"]');
  assert.equal(await page.textContent('[data-result="online"]'), user);
  assert.equal(await page.textContent('[data-result="offline"]'), `nobody-${user}`);
  // The demo page draws it, personalized by the node with its own attrs.
  const modal = await demo.page.waitForSelector(sel(id), { state: 'visible' });
  assert.equal(await modal.$eval('.herald-title', (t) => t.textContent), 'Hi Grace, exports are here');
  const frame = await demo.wire.waitReceived('the message', (f) => f.t === 'msg' && f.id === id);
  assert.equal(frame.require_ack, true);
  assert.equal(frame.kind, 'modal');
  // An invalid message gets the API's reason next to the field.
  await page.getByLabel('Image URL').fill('javascript:alert(1)');
  await page.getByRole('button', { name: 'Send message' }).click();
  await page.locator('.field.has-error', { has: page.getByLabel('Image URL') }).locator('.error').waitFor();
  assert.match(await page.locator('.outcome-bad').textContent(), /Not sent: image_url/);
  assert.deepEqual(errors, []);
  await demo.page.close();
  await page.close();
});

test('Messages: the active set with a confirmed retract on each entry', async () => {
  const user = uniqueUser('active');
  const demo = await openDemo(env.browser.context, env.keyed, user, '/', { segments: user });
  // The shared sticky set holds all and segment audiences (a user's own are kept per user).
  const { body } = await admin(env.keyed, 'POST', '/v1/messages', { to: { segments: [user] }, kind: 'card', title: 'Sticky card', sticky: true });
  await demo.page.waitForSelector(sel(body.id), { state: 'visible' });
  const { page, errors } = await openConsole(env.browser.context, env.keyed, 'messages');
  const row = page.locator(`tr[data-id="${body.id}"]`);
  await row.waitFor();
  await axeCheck(page, 'Messages');
  await row.getByRole('button', { name: 'Retract Sticky card' }).click();
  await page.getByRole('dialog', { name: 'Retract this message?' }).getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await row.count(), 1);
  await row.getByRole('button', { name: 'Retract Sticky card' }).click();
  await page.getByRole('dialog', { name: 'Retract this message?' }).getByRole('button', { name: 'Retract' }).click();
  await row.waitFor({ state: 'detached' });
  await demo.page.waitForSelector(sel(body.id), { state: 'detached' });
  assert.deepEqual(errors, []);
  await demo.page.close();
  await page.close();
});

test('Campaigns: create (the API’s 400 next to the field), fire on a demo page, edit, deactivate, activate, delete', async () => {
  const { page, errors } = await openConsole(env.browser.context, env.keyed, 'campaigns');
  const user = uniqueUser('camp');
  const id = `welcome-${user}`.slice(0, 60);
  await page.getByRole('status').filter({ hasText: 'No campaigns yet' }).waitFor();
  await axeCheck(page, 'Campaigns (empty)');
  await page.getByRole('button', { name: 'New campaign' }).click();
  await axeCheck(page, 'the campaign editor');
  await page.getByLabel('Campaign id').fill(id);
  await page.getByLabel('Event name').fill('opened');
  await page.getByLabel('Event filter (CEL)').fill('props.plan ==');
  await page.locator('label.seg', { hasText: 'Narrow down' }).click();
  await page.getByLabel('Users').fill(user);
  // Checked by the node as it is typed, before saving.
  await page.locator('.field.has-error', { has: page.getByLabel('Event filter (CEL)') }).locator('.error', { hasText: 'Syntax error' }).waitFor();
  await page.getByLabel('Kind').selectOption('toast');
  await page.getByLabel('Title', { exact: true }).fill('Welcome aboard');
  await page.getByRole('button', { name: '+ Add button' }).click();
  await page.getByLabel('Button 1 label').fill('Thanks');
  await page.getByRole('button', { name: 'Create campaign' }).click();
  // The node's reason, next to the trigger filter, and focus moved there.
  const filterField = page.locator('.field.has-error', { has: page.getByLabel('Event filter (CEL)') });
  await page.locator('.outcome-bad', { hasText: 'Not saved: trigger.where' }).waitFor();
  await filterField.locator('.error', { hasText: 'trigger.where' }).waitFor();
  const filterId = await page.getByLabel('Event filter (CEL)').getAttribute('id');
  await until('focus on the refused field', async () => (await page.evaluate(() => document.activeElement.id)) === filterId);
  assert.equal((await admin(env.keyed, 'GET', `/v1/campaigns/${id}`)).status, 404, 'nothing stored');
  // Fixed: on connect instead.
  await page.locator('label.seg', { hasText: 'On connect' }).click();
  await page.getByLabel('At most (displays)').fill('3');
  await page.getByRole('button', { name: 'Create campaign' }).click();
  await page.getByText(`Saved campaign ${id}`).waitFor();
  const row = page.locator(`tr[data-campaign="${id}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), /on connect/);
  assert.match(await row.textContent(), /active/);
  const stored = (await admin(env.keyed, 'GET', `/v1/campaigns/${id}`)).body;
  assert.deepEqual(stored.trigger, { connect: true });
  assert.deepEqual(stored.audience, { users: [user] });
  assert.deepEqual(stored.frequency, { max: 3 });
  await axeCheck(page, 'Campaigns (one)');

  // It fires on a demo page that connects.
  const demo = await openDemo(env.browser.context, env.keyed, user);
  const toast = await demo.page.waitForSelector('[data-herald-kind="toast"]', { state: 'visible' });
  assert.equal(await toast.$eval('.herald-title', (t) => t.textContent), 'Welcome aboard');
  await demo.page.close();

  // Edit: the form holds what is stored.
  await row.getByRole('button', { name: `Edit ${id}` }).click();
  assert.equal(await page.getByLabel('Title', { exact: true }).inputValue(), 'Welcome aboard');
  assert.equal(await page.getByLabel('Campaign id').isDisabled(), true);
  await page.getByLabel('Title', { exact: true }).fill('Welcome back');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.getByText(`Saved campaign ${id}`).waitFor();
  assert.equal((await admin(env.keyed, 'GET', `/v1/campaigns/${id}`)).body.message.title, 'Welcome back');

  // Deactivate, activate.
  await row.getByRole('button', { name: `Deactivate ${id}` }).click();
  await row.locator('.pill', { hasText: 'inactive' }).waitFor();
  assert.equal((await admin(env.keyed, 'GET', `/v1/campaigns/${id}`)).body.active, false);
  await row.getByRole('button', { name: `Activate ${id}` }).click();
  await row.locator('.pill', { hasText: /^active$/ }).waitFor();
  assert.equal((await admin(env.keyed, 'GET', `/v1/campaigns/${id}`)).body.active, true);

  // Delete, confirmed.
  await row.getByRole('button', { name: `Delete ${id}` }).click();
  await page.getByRole('dialog', { name: `Delete campaign ${id}?` }).getByRole('button', { name: 'Delete campaign' }).click();
  await row.waitFor({ state: 'detached' });
  assert.equal((await admin(env.keyed, 'GET', `/v1/campaigns/${id}`)).status, 404);
  assert.deepEqual(errors, []);
  await page.close();
});

test('every view passes axe-core in light and dark, and at phone width', async () => {
  for (const [colorScheme, width] of [['light', 1280], ['dark', 1280], ['light', 390]]) {
    const { page, errors } = await openConsole(env.browser.context, env.keyed, 'now', { colorScheme });
    await page.setViewportSize({ width, height: 800 });
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), colorScheme);
    for (const view of ['Now', 'Incident banner', 'Compose', 'Messages', 'Campaigns', 'Measure', 'User trace']) {
      await go(page, view);
      await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
      await axeCheck(page, `${view} (${colorScheme}, ${width} px)`);
    }
    assert.deepEqual(errors, []);
    await page.close();
  }
});

test('a route the node lacks is shown as "not available on this node"', async () => {
  const { page, errors } = await openConsole(env.browser.context, env.keyed, 'trace');
  // As an older node would: the request goes to a path this node does not
  // route, and the node's own fallback answers 404 "no such route".
  await page.route(
    (url) => url.pathname.endsWith('/trace'),
    (route) => route.continue({ url: route.request().url().replace('/trace', '/trace-on-a-later-build') }),
  );
  await page.getByLabel('User id').fill('ada');
  await page.getByRole('button', { name: 'Trace' }).click();
  await page.getByText('The user trace is not available on this node').waitFor();
  // The positive control: presence, which this node has, is answered.
  await page.locator('.presence', { hasText: 'ada is not online now' }).waitFor();
  await axeCheck(page, 'a view whose route is missing');
  assert.deepEqual(errors, []);
  await page.close();
});

test('Compose and Campaigns with the keyboard only', async () => {
  const { page, errors } = await openConsole(env.browser.context, env.keyed, 'compose');
  const user = uniqueUser('kbd');
  const demo = await openDemo(env.browser.context, env.keyed, user);
  const idOf = (label) => page.getByLabel(label, { exact: true }).getAttribute('id');
  await tabTo(page, `#${await idOf('Kind')}`);
  await page.keyboard.press('End'); // the last kind…
  await page.keyboard.press('Home'); // …and back to the first: banner
  assert.equal(await page.getByLabel('Kind').inputValue(), 'banner');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('Typed without a mouse');
  await tabTo(page, 'input[name="audience"]:checked');
  await page.keyboard.press('ArrowRight'); // Narrow down
  await tabTo(page, `#${await idOf('Users')}`);
  await page.keyboard.type(user);
  await tabTo(page, 'button[type="submit"]');
  assert.ok(await focusVisible(page));
  await page.keyboard.press('Enter');
  await page.locator('[data-result="id"]').waitFor();
  const id = await page.textContent('[data-result="id"]');
  await demo.page.waitForSelector(sel(id), { state: 'visible' });
  assert.equal(await demo.page.$eval(`${sel(id)} .herald-title`, (t) => t.textContent), 'Typed without a mouse');

  // A campaign created and deleted from the keyboard.
  await page.evaluate(() => (location.hash = '#/campaigns'));
  // Focus lands on the new view's heading (after the view is drawn): Tab
  // goes on from there. Pressing keys before it lands races the move.
  await focusOnHeading(page, 'Campaigns');
  await tabTo(page, 'button.btn-primary');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.campaign-editor');
  const cid = `kbd-${user}`.slice(0, 60);
  await tabTo(page, `#${await page.getByLabel('Campaign id').getAttribute('id')}`);
  await page.keyboard.type(cid);
  await tabTo(page, `#${await idOf('Event name')}`);
  await page.keyboard.type('opened');
  await tabTo(page, `#${await idOf('Title')}`);
  await page.keyboard.type('From the keyboard');
  await tabTo(page, 'button[type="submit"]');
  await page.keyboard.press('Enter');
  await page.getByText(`Saved campaign ${cid}`).waitFor();
  await focusOnHeading(page, 'Campaigns');
  await tabTo(page, `button[aria-label="Delete ${cid}"]`);
  await page.keyboard.press('Enter');
  await page.getByRole('dialog').waitFor();
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.locator(`tr[data-campaign="${cid}"]`).waitFor({ state: 'detached' });
  assert.equal((await admin(env.keyed, 'GET', `/v1/campaigns/${cid}`)).status, 404);
  assert.deepEqual(errors, []);
  await demo.page.close();
  await page.close();
});

test('a node that stops answering: the last figures stay, marked stale, until it is back', async () => {
  const { page } = await openConsole(env.browser.context, env.open);
  await page.locator('[data-stat="sessions"]').waitFor();
  await env.open.kill();
  await page.locator('.inline-warn', { hasText: 'Refresh failed: the node did not answer' }).waitFor();
  assert.ok(await page.locator('[data-stat="sessions"]').count(), 'the last figures are still shown');
  await env.open.start();
  await page.locator('.inline-warn').waitFor({ state: 'detached' });
  // A view opened while the node is down says so, with a way to try again.
  await env.open.kill();
  await page.evaluate(() => (location.hash = '#/campaigns'));
  await page.getByRole('alert').filter({ hasText: 'Could not load campaigns' }).waitFor();
  await env.open.start();
  await page.getByRole('button', { name: 'Try again' }).click();
  await page.locator('table[aria-label="Campaigns"], .state-empty').first().waitFor();
  assert.equal(await page.getByRole('alert').filter({ hasText: 'Could not load campaigns' }).count(), 0);
  await page.close();
});
