// End to end: campaigns stored over the admin API fire on what the demo page
// does (page views, connecting, staying idle), within their frequency limits.
// Each campaign's audience is one test's own user, so campaigns never reach
// another test's page.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { expectControl, openDemo, perFile, screenshot, sel, uniqueUser, until } from './support.mjs';

const env = perFile({ before, after });

const onlyUser = (user) => ({ where: `user == "${user}"` });
const decisions = (reason) => env.herald.metric('herald_campaign_decisions_total', { reason });
const campaignMsgs = (wire, campaign) => wire.received.filter((f) => f.t === 'msg' && f.campaign === campaign);

test('a campaign on page_view /pricing fires once in the demo; with frequency max 1 a second visit shows nothing', async () => {
  const user = uniqueUser('pricing');
  const campaign = `pricing-${user}`;
  const stored = await env.herald.putCampaign(campaign, {
    trigger: { event: 'page_view', where: 'props.path == "/pricing"' },
    audience: onlyUser(user),
    message: { kind: 'card', title: 'Questions about plans?', body: 'Talk to us.', actions: [{ id: 'chat', label: 'Chat with sales' }] },
    frequency: { max: 1 },
  });
  assert.equal(stored.id, campaign);
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const pricingViews = () => wire.sent.filter((f) => f.t === 'event' && f.name === 'page_view' && f.props.path === '/pricing').length;
    await page.click('nav a[data-route="/pricing"]');
    const frame = await wire.waitReceived('the campaign message', (f) => f.t === 'msg' && f.campaign === campaign);
    assert.equal(frame.reason, 'trigger');
    const card = await page.waitForSelector(sel(frame.id), { state: 'visible' });
    assert.equal(await card.$eval('.herald-title', (t) => t.textContent), 'Questions about plans?');
    await env.herald.waitEvent('the campaign delivery', (r) => r.type === 'delivered' && r.msg === frame.id && r.campaign === campaign && r.user === user);
    await screenshot(page, 'campaign-pricing');
    await card.$eval('.herald-close', (b) => b.click());
    await page.waitForSelector(sel(frame.id), { state: 'detached' });
    await env.herald.waitEvent('the dismissal with its campaign', (r) => r.type === 'dismissed' && r.msg === frame.id && r.campaign === campaign);
    assert.equal(pricingViews(), 1);

    // Second visit: the page reports it and the server decides against it.
    const heldBefore = await decisions('frequency');
    await page.click('nav a[data-route="/"]');
    await page.click('nav a[data-route="/pricing"]');
    await until('the second page_view for /pricing', () => pricingViews() === 2);
    await until('the server to hold the campaign back (frequency)', async () => (await decisions('frequency')) > heldBefore);
    // Positive control: a message published after that decision is drawn.
    await expectControl(env.herald, page, wire, { users: [user] }, { kind: 'card', title: 'Control card', actions: [{ id: 'ok', label: 'OK' }] });
    assert.equal(campaignMsgs(wire, campaign).length, 1, 'the campaign message came once');
    assert.equal(await page.$$eval('[data-herald-kind="card"]', (n) => n.length), 1, 'only the control card is on screen');
  } finally {
    await page.close();
    await env.herald.deleteCampaign(campaign);
  }
});

test('a connect campaign with until clicked shows on every page load until its button is clicked', async () => {
  const user = uniqueUser('welcome');
  const campaign = `welcome-${user}`;
  await env.herald.putCampaign(campaign, {
    trigger: { connect: true },
    audience: onlyUser(user),
    message: { kind: 'modal', title: 'What is new', actions: [{ id: 'tour', label: 'Take the tour' }] },
    frequency: { max: 5, until: 'clicked' },
  });
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const first = await wire.waitReceived('the connect campaign', (f) => f.t === 'msg' && f.campaign === campaign);
    assert.equal(first.reason, 'trigger');
    await page.waitForSelector(sel(first.id), { state: 'visible' });
    await page.reload();
    const second = (await wire.waitSocket(2)).received;
    const again = await until('the campaign on the second connect', () => second.find((f) => f.t === 'msg' && f.campaign === campaign));
    assert.notEqual(again.id, first.id, 'each display is a message of its own');
    await page.waitForSelector(sel(again.id), { state: 'visible' });
    await page.click(`${sel(again.id)} [data-herald-action="tour"]`);
    await env.herald.waitEvent('the click with its campaign', (r) => r.type === 'clicked' && r.msg === again.id && r.campaign === campaign && r.action === 'tour');

    const stoppedBefore = await decisions('until');
    await page.reload();
    const third = await wire.waitSocket(3);
    await until('the server to stop the campaign (until)', async () => (await decisions('until')) > stoppedBefore);
    await expectControl(env.herald, page, third, { users: [user] });
    assert.deepEqual(third.received.filter((f) => f.campaign === campaign), [], 'not shown again once clicked');
    assert.equal(campaignMsgs(wire, campaign).length, 2);
  } finally {
    await page.close();
    await env.herald.deleteCampaign(campaign);
  }
});

test('an idle_s campaign fires after the page has been quiet that long', async () => {
  const user = uniqueUser('idle');
  const campaign = `idle-${user}`;
  await env.herald.putCampaign(campaign, {
    trigger: { idle_s: 1 },
    audience: onlyUser(user),
    message: { kind: 'toast', title: 'Still there? Your cart is saved.', actions: [{ id: 'cart', label: 'View cart' }] },
    frequency: { max: 1 },
  });
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const frame = await wire.waitReceived('the idle campaign', (f) => f.t === 'msg' && f.campaign === campaign);
    assert.equal(frame.reason, 'trigger');
    await page.waitForSelector(sel(frame.id), { state: 'visible' });
    await wire.waitAck(frame.id, 'displayed');
  } finally {
    await page.close();
    await env.herald.deleteCampaign(campaign);
  }
});
