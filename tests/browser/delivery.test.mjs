// End to end: what the server keeps for a page that is not there yet (sticky
// and require_ack messages), what it records about what the page did (the
// events stream of the admin listener), and which locale it picks.
// Each test uses its own user id (and segment) so it sees only its own messages.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { expectControl, openDemo, perFile, screenshot, sel, uniqueUser, until } from './support.mjs';

const env = perFile({ before, after });


test('a sticky banner published before the page loads shows on page load', async () => {
  const user = uniqueUser('sticky');
  const segment = uniqueUser('seg');
  const to = { users: [user] };
  // Nobody is online yet: the publisher is told so.
  const sticky = await env.herald.publishReach({ to, kind: 'banner', title: 'Payments degraded', theme: { severity: 'warning' }, sticky: true });
  assert.deepEqual(sticky.offline, [user]);
  // A sticky message to a segment lives in the shared sticky set rather than the user's own.
  const forSegment = await env.herald.publish({ to: { segments: [segment] }, kind: 'card', title: 'Beta: new dashboard', sticky: true });
  // Neither sticky nor required: gone for someone who was not there.
  const plain = await env.herald.publish({ to, kind: 'toast', title: 'You missed me', actions: [{ id: 'ok', label: 'OK' }] });
  // Sticky, then retracted: sessions connecting later never get it.
  const retracted = await env.herald.publish({ to, kind: 'modal', title: 'Retracted before you came', sticky: true });
  await env.herald.retract(retracted);

  const { page, wire, errors } = await openDemo(env.browser.context, env.herald, user, '/', { segments: segment });
  try {
    const banner = await page.waitForSelector(sel(sticky.id), { state: 'visible' });
    assert.equal(await banner.$eval('.herald-title', (t) => t.textContent), 'Payments degraded');
    assert.equal((await wire.waitReceived('the sticky banner', (f) => f.id === sticky.id)).reason, 'sticky');
    await wire.waitAck(sticky.id, 'displayed');
    await page.waitForSelector(sel(forSegment), { state: 'visible' });
    assert.equal((await wire.waitReceived('the segment card', (f) => f.id === forSegment)).reason, 'sticky');
    await screenshot(page, 'sticky-on-load');

    // Positive control for what must not appear: a message published now is drawn...
    const live = await expectControl(env.herald, page, wire, to, { kind: 'toast', title: 'Published after load', actions: [{ id: 'ok', label: 'OK' }] });
    assert.equal(live.reason, 'push');
    // ...and what was neither sticky nor still active never came (replays come before anything live).
    assert.deepEqual(wire.msgs(plain), [], 'a plain message is not kept for later sessions');
    assert.deepEqual(wire.msgs(retracted), [], 'a retracted sticky message is not replayed');
    assert.equal(await page.$(sel(retracted)), null);
    assert.equal(wire.msgs(sticky.id).length, 1, 'the sticky banner came once');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('acks land in the events stream: displayed when the overlay is shown, clicked with the action id', async () => {
  const user = uniqueUser('events');
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({
      to: { users: [user] },
      kind: 'modal',
      title: 'Export more with Pro',
      actions: [
        { id: 'upgrade', label: 'Upgrade' },
        { id: 'later', label: 'Maybe later' },
      ],
    });
    const modal = await page.waitForSelector(sel(id), { state: 'visible' });
    const sid = await page.evaluate(() => window.heraldClient.sid);
    const mine = (type) => (r) => r.type === type && r.msg === id && r.user === user;
    const delivered = await env.herald.waitEvent(`delivered ${id}`, mine('delivered'));
    assert.equal(delivered.sid, sid);
    const displayed = await env.herald.waitEvent(`displayed ${id}`, mine('displayed'));
    assert.equal(displayed.sid, sid);
    assert.equal(displayed.action, undefined);

    await (await modal.$('[data-herald-action="upgrade"]')).click();
    await page.waitForSelector(sel(id), { state: 'detached' });
    const clicked = await env.herald.waitEvent(`clicked ${id}`, mine('clicked'));
    assert.equal(clicked.action, 'upgrade');
    assert.equal(clicked.sid, sid);
    assert.equal(clicked.campaign, undefined, 'published directly: no campaign');

    // The clicked record (positive control) came after everything the page sent before it.
    const records = await env.herald.events((r) => r.msg === id);
    assert.deepEqual(
      records.map((r) => r.type),
      ['delivered', 'displayed', 'clicked'],
      'delivered, displayed once, clicked; not dismissed',
    );
    assert.ok(Number(displayed.ts) <= Number(clicked.ts));
    assert.equal(wire.sent.filter((f) => f.t === 'ack' && f.id === id).length, 2);
  } finally {
    await page.close();
  }
});

test('a require_ack modal comes back after a reload until its button is clicked', async () => {
  const user = uniqueUser('reqack');
  const to = { users: [user] };
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({
      to,
      kind: 'modal',
      title: 'Updated terms',
      body: 'Please accept the new terms to continue.',
      require_ack: true,
      actions: [{ id: 'accept', label: 'Accept' }],
    });
    await page.waitForSelector(sel(id), { state: 'visible' });
    await wire.waitAck(id, 'displayed'); // displayed is not an acknowledgement

    for (let reload = 1; reload <= 2; reload++) {
      await page.reload();
      await page.waitForSelector('#conn-state[data-state="open"]');
      const sock = await wire.waitSocket(reload + 1);
      const modal = await page.waitForSelector(sel(id), { state: 'visible' });
      const again = await until(`the modal on socket #${reload + 1}`, () => sock.received.find((f) => f.t === 'msg' && f.id === id));
      assert.equal(again.reason, 'sticky', `sent again on connect #${reload + 1}`);
      assert.equal(await modal.$('.herald-close'), null, 'still no close button');
    }
    await page.click(`${sel(id)} [data-herald-action="accept"]`);
    await page.waitForSelector(sel(id), { state: 'detached' });
    await env.herald.waitEvent(`clicked ${id}`, (r) => r.type === 'clicked' && r.msg === id && r.user === user && r.action === 'accept');

    await page.reload();
    await page.waitForSelector('#conn-state[data-state="open"]');
    const sock = await wire.waitSocket(4);
    // Positive control: this page does draw what it is sent after the reload.
    await expectControl(env.herald, page, sock, to, { kind: 'card', title: 'After accepting', actions: [{ id: 'ok', label: 'OK' }] });
    assert.equal(sock.received.filter((f) => f.t === 'msg' && f.id === id).length, 0, 'not sent again once clicked');
    assert.equal(await page.$(sel(id)), null);
  } finally {
    await page.close();
  }
});

test('a require_ack notice dismissed with its OK button is not sent again either', async () => {
  const user = uniqueUser('reqok');
  const to = { users: [user] };
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  try {
    const id = await env.herald.publish({ to, kind: 'banner', title: 'Maintenance window on Sunday', require_ack: true });
    const banner = await page.waitForSelector(sel(id), { state: 'visible' });
    await page.reload();
    await page.waitForSelector(sel(id), { state: 'visible' });
    const second = await wire.waitSocket(2);
    await until('the notice on the second socket', () => second.received.some((f) => f.id === id));
    await banner.dispose();
    await page.click(`${sel(id)} .herald-action`); // the OK button the SDK adds
    await page.waitForSelector(sel(id), { state: 'detached' });
    await env.herald.waitEvent(`dismissed ${id}`, (r) => r.type === 'dismissed' && r.msg === id && r.user === user);

    await page.reload();
    await page.waitForSelector('#conn-state[data-state="open"]');
    const sock = await wire.waitSocket(3);
    // Positive control: this page does draw what it is sent after the reload.
    await expectControl(env.herald, page, sock, to);
    assert.equal(sock.received.filter((f) => f.id === id).length, 0, 'not sent again once dismissed');
  } finally {
    await page.close();
  }
});

test('locales: ?locale= picks the variant (fr-CA falls back to fr), else attrs.locale, else the base fields', async () => {
  const user = uniqueUser('locale');
  const pages = [];
  try {
    const fr = await openDemo(env.browser.context, env.herald, user, '/', { locale: 'fr-CA' });
    pages.push(fr.page);
    const de = await openDemo(env.browser.context, env.herald, user, '/', { attrs: 'locale=de' });
    pages.push(de.page);
    const base = await openDemo(env.browser.context, env.herald, user, '/', { locale: 'ja' });
    pages.push(base.page);
    const id = await env.herald.publish({
      to: { users: [user] },
      kind: 'card',
      title: 'Your order shipped',
      body: 'It arrives on Friday.',
      actions: [{ id: 'track', label: 'Track it' }],
      locales: {
        fr: { title: 'Votre commande est partie', body: 'Elle arrive vendredi.', actions: [{ id: 'track', label: 'La suivre' }] },
        de: { title: 'Ihre Bestellung ist unterwegs', body: 'Sie kommt am Freitag.' },
      },
    });
    const texts = async (page) => {
      const card = await page.waitForSelector(sel(id), { state: 'visible' });
      return card.evaluate((c) => [c.querySelector('.herald-title').textContent, c.querySelector('.herald-body').textContent, c.querySelector('.herald-action').textContent]);
    };
    assert.deepEqual(await texts(fr.page), ['Votre commande est partie', 'Elle arrive vendredi.', 'La suivre']);
    assert.deepEqual(await texts(de.page), ['Ihre Bestellung ist unterwegs', 'Sie kommt am Freitag.', 'Track it']);
    assert.deepEqual(await texts(base.page), ['Your order shipped', 'It arrives on Friday.', 'Track it']);
    assert.equal(new URL(fr.wire.sockets[0].url).searchParams.get('locale'), 'fr-CA');
    await screenshot(fr.page, 'card-fr');
  } finally {
    for (const p of pages) await p.close();
  }
});
