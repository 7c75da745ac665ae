// The console's views over the product API of SPEC 10.3-10.5: the audience
// preview count, scheduling, campaign windows / quiet hours / experiments /
// goals, Measure (counts, hourly charts, variants against the holdout) and
// the user trace. They expect the SPEC's shapes (console/shapes.js parses
// them). On a node whose build lacks those routes each test is marked todo
// (it runs and reports, without failing the suite), as known server gaps are.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, openDemo, sel, uniqueUser, until } from './support.mjs';
import { KEY, admin, axeCheck, needsRoutes, openConsole, startNode, startRedis } from './console-support.mjs';
import { scheduled } from '../../console/shapes.js';

const env = {};
before(async () => {
  env.redis = await startRedis();
  env.node = await startNode(env.redis, KEY);
  env.browser = await launchBrowser();
});
after(async () => {
  await env.browser?.close();
  await env.node?.stop();
  env.redis?.stop();
});

/** A datetime-local value `ms` from now, in the browser's own time zone. */
const localIn = (page, ms) =>
  page.evaluate((ms) => {
    const d = new Date(Date.now() + ms);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }, ms);

test('Compose: the preview count of who is online in the audience, as you type', async (t) => {
  await needsRoutes(t, env.node, [['POST', '/v1/audience/preview']]);
  const user = uniqueUser('count');
  const demo = await openDemo(env.browser.context, env.node, user, '/', { attrs: 'plan=free' });
  const { page, errors } = await openConsole(env.browser.context, env.node, 'compose');
  await page.locator('label.seg', { hasText: 'Narrow down' }).click();
  await page.getByLabel('Users').fill(user);
  await page.locator('[data-count="ok"] [data-sessions="1"]').waitFor();
  assert.ok(await page.locator('[data-count="ok"] [data-users="1"]').count());
  await page.getByLabel('Where (CEL)').fill('attrs.plan == "pro"');
  await page.locator('[data-count="ok"] [data-sessions="0"]').waitFor();
  await page.getByLabel('Where (CEL)').fill('attrs.plan == "free"');
  await page.locator('[data-count="ok"] [data-sessions="1"]').waitFor();
  await axeCheck(page, 'Compose with a preview count');
  assert.deepEqual(errors, []);
  await demo.page.close();
  await page.close();
});

test('Compose: schedule a message; Messages lists it, cancels another; it is drawn at its time', async (t) => {
  await needsRoutes(t, env.node, [['GET', '/v1/messages/scheduled']]);
  const user = uniqueUser('sched');
  const demo = await openDemo(env.browser.context, env.node, user);
  const { page, errors } = await openConsole(env.browser.context, env.node, 'compose');
  await page.getByLabel('Title', { exact: true }).fill('Later, as planned');
  await page.locator('label.seg', { hasText: 'Narrow down' }).click();
  await page.getByLabel('Users').fill(user);
  await page.locator('label.seg', { hasText: 'Schedule' }).click();
  await page.getByLabel('Send at (your local time)').fill(await localIn(page, 86400000));
  await page.getByRole('button', { name: 'Schedule message' }).click();
  await page.locator('[data-result="send_at"]').waitFor();
  const tomorrow = await page.textContent('[data-result="id"]');
  await page.getByLabel('Title', { exact: true }).fill('Soon');
  await page.getByLabel('Send at (your local time)').fill(await localIn(page, 4000));
  await page.getByRole('button', { name: 'Schedule message' }).click();
  await until('a second id', async () => (await page.textContent('[data-result="id"]')) !== tomorrow);
  const soon = await page.textContent('[data-result="id"]');

  const list = await openConsole(env.browser.context, env.node, 'messages');
  const row = list.page.locator(`tr[data-id="${tomorrow}"]`);
  await row.waitFor();
  await axeCheck(list.page, 'Messages with scheduled ones');
  await row.getByRole('button', { name: /^Cancel/ }).click();
  await list.page.getByRole('dialog', { name: 'Cancel this scheduled message?' }).getByRole('button', { name: 'Cancel message' }).click();
  await row.waitFor({ state: 'detached' });
  const waiting = await admin(env.node, 'GET', '/v1/messages/scheduled');
  assert.equal(waiting.status, 200);
  assert.ok(!scheduled(waiting.body).some((m) => m.id === tomorrow), 'cancelled');
  // The other one is drawn when its time comes.
  await demo.page.waitForSelector(sel(soon), { state: 'visible', timeout: 30000 });
  assert.equal(demo.wire.msgs(tomorrow).length, 0);
  assert.deepEqual(errors, []);
  await list.page.close();
  await demo.page.close();
  await page.close();
});

test('Campaigns: window, quiet hours, variants, holdout and goal are saved and edited', async (t) => {
  await needsRoutes(t, env.node, [['GET', '/v1/campaigns/none/stats']]);
  const { page, errors } = await openConsole(env.browser.context, env.node, 'campaigns');
  const id = uniqueUser('exp').slice(0, 60);
  await page.getByRole('button', { name: 'New campaign' }).click();
  await page.getByLabel('Campaign id').fill(id);
  await page.getByLabel('Event name').fill('opened');
  await page.locator('label.seg', { hasText: 'Experiment (variants)' }).click();
  for (const [i, title] of [[1, 'Variant A'], [2, 'Variant B']]) {
    const v = page.locator('fieldset.variant').nth(i - 1);
    await v.getByLabel('Title', { exact: true }).fill(title);
  }
  await page.getByLabel('Holdout (% of users shown nothing)').fill('60');
  await page.getByLabel('Starts at').fill(await localIn(page, -3600000));
  await page.getByLabel('Ends at').fill(await localIn(page, 7 * 86400000));
  await page.getByLabel('Quiet hours').check();
  await page.getByLabel('Quiet from').fill('22:00');
  await page.getByLabel('Quiet until').fill('07:30');
  await page.getByLabel('Count conversions').check();
  await page.getByLabel('Goal event').fill('purchase');
  await page.getByLabel('Within (hours)').fill('24');
  await page.getByRole('button', { name: 'Create campaign' }).click();
  // 60 is over the 50 % limit: the node's reason beside the field.
  await page.locator('.field.has-error', { has: page.getByLabel('Holdout (% of users shown nothing)') }).locator('.error', { hasText: 'holdout_pct' }).waitFor();
  await page.getByLabel('Holdout (% of users shown nothing)').fill('10');
  await page.getByRole('button', { name: 'Create campaign' }).click();
  await page.getByText(`Saved campaign ${id}`).waitFor();
  const stored = (await admin(env.node, 'GET', `/v1/campaigns/${id}`)).body;
  assert.deepEqual(stored.variants.map((v) => [v.id, v.weight, v.message.title]), [['a', 50, 'Variant A'], ['b', 50, 'Variant B']]);
  assert.equal(stored.holdout_pct, 10);
  assert.deepEqual(stored.quiet_hours, { from: '22:00', to: '07:30' });
  assert.deepEqual(stored.goal, { event: 'purchase', within_s: 86400 });
  assert.ok(stored.starts_at < Date.now() && stored.ends_at > Date.now());
  await page.getByRole('button', { name: `Edit ${id}` }).click();
  assert.equal(await page.getByLabel('Holdout (% of users shown nothing)').inputValue(), '10');
  assert.equal(await page.getByLabel('Goal event').inputValue(), 'purchase');
  assert.equal(await page.getByLabel('Quiet until').inputValue(), '07:30');
  assert.equal(await page.locator('fieldset.variant').nth(1).getByLabel('Title', { exact: true }).inputValue(), 'Variant B');
  await axeCheck(page, 'the campaign editor with an experiment');
  assert.deepEqual(errors, []);
  await page.close();
  await admin(env.node, 'DELETE', `/v1/campaigns/${id}`);
});

test('Measure: a message’s counts and hourly chart after a demo page showed and clicked it', async (t) => {
  await needsRoutes(t, env.node, [['GET', '/v1/messages/none/stats']]);
  const user = uniqueUser('measure');
  const demo = await openDemo(env.browser.context, env.node, user);
  const { body } = await admin(env.node, 'POST', '/v1/messages', { to: { users: [user] }, kind: 'modal', title: 'Measure me', actions: [{ id: 'yes', label: 'Yes' }] });
  await demo.page.waitForSelector(sel(body.id), { state: 'visible' });
  await demo.page.click(`${sel(body.id)} [data-herald-action="yes"]`);
  await demo.wire.waitAck(body.id, 'clicked');
  const { page, errors } = await openConsole(env.browser.context, env.node, `measure/message/${encodeURIComponent(body.id)}`);
  await until('the click counted', async () => (await page.locator('[data-count="clicked"]').textContent().catch(() => '')) === '1', { timeout: 20000 });
  assert.equal(await page.textContent('[data-count="delivered"]'), '1');
  assert.equal(await page.textContent('[data-count="displayed"]'), '1');
  assert.match(await page.textContent('[data-action="yes"]'), /1$/);
  await page.locator('.chart canvas').waitFor();
  await axeCheck(page, 'Measure (a message)');
  assert.deepEqual(errors, []);
  await demo.page.close();
  await page.close();
});

test('Measure: a campaign’s variants against the holdout with the confidence interval', async (t) => {
  await needsRoutes(t, env.node, [['GET', '/v1/campaigns/none/stats']]);
  const id = uniqueUser('ab').slice(0, 60);
  const users = [uniqueUser('ab1'), uniqueUser('ab2'), uniqueUser('ab3')];
  await admin(env.node, 'PUT', `/v1/campaigns/${id}`, {
    trigger: { event: 'opened' },
    audience: { users },
    variants: [
      { id: 'a', weight: 50, message: { kind: 'toast', title: 'A' } },
      { id: 'b', weight: 50, message: { kind: 'toast', title: 'B' } },
    ],
    holdout_pct: 20,
    goal: { event: 'purchase', within_s: 3600 },
  });
  for (const user of users) {
    const demo = await openDemo(env.browser.context, env.node, user);
    await demo.page.evaluate(() => window.heraldClient.track('opened'));
    await demo.wire.waitSent('the trigger', (f) => f.t === 'event' && f.name === 'opened');
    await demo.page.evaluate(() => window.heraldClient.track('purchase'));
    await demo.wire.waitSent('the goal', (f) => f.t === 'event' && f.name === 'purchase');
    await demo.page.close();
  }
  const { page, errors } = await openConsole(env.browser.context, env.node, `measure/campaign/${encodeURIComponent(id)}`);
  await page.locator('table[aria-label="Variants"]').waitFor();
  await until('three exposures', async () => {
    const n = await page.locator('tr[data-variant] td:nth-child(2)').allTextContents();
    return n.reduce((t, x) => t + Number(x), 0) === 3;
  }, { timeout: 20000 });
  assert.ok(await page.locator('tr[data-variant="holdout"]').count(), 'the holdout row');
  assert.ok(await page.locator('tr[data-variant="a"]').count(), 'variant a');
  assert.ok(await page.locator('tr[data-variant="b"]').count(), 'variant b');
  assert.match(await page.textContent('tr[data-variant="a"] [data-rate]'), /%|–/);
  await page.locator('.chart canvas').first().waitFor();
  await axeCheck(page, 'Measure (a campaign)');
  assert.deepEqual(errors, []);
  await page.close();
});

test('User trace: why a user saw a message, or why not', async (t) => {
  await needsRoutes(t, env.node, [['GET', '/v1/users/none/trace']]);
  const user = uniqueUser('trace');
  const missed = (await admin(env.node, 'POST', '/v1/messages', { to: { users: [user] }, kind: 'toast', title: 'While away' })).body.id;
  const demo = await openDemo(env.browser.context, env.node, user);
  const seen = (await admin(env.node, 'POST', '/v1/messages', { to: { users: [user] }, kind: 'toast', title: 'Seen', actions: [{ id: 'ok', label: 'OK' }] })).body.id;
  await demo.page.waitForSelector(sel(seen), { state: 'visible' });
  const { page, errors } = await openConsole(env.browser.context, env.node, `trace/${encodeURIComponent(user)}`);
  await page.locator('.presence[data-online="true"]').waitFor();
  await page.locator('li[data-decision="delivered"]', { hasText: seen }).waitFor({ timeout: 20000 });
  await page.locator('li[data-decision="not_online"]', { hasText: missed }).waitFor();
  await page.getByLabel('Only this message or campaign (optional)').fill(missed);
  await until('only the missed one', async () => (await page.locator('li[data-decision]').count()) === 1);
  await axeCheck(page, 'User trace');
  assert.deepEqual(errors, []);
  await demo.page.close();
  await page.close();
});
