// End to end: resume. The page's socket is dropped while the node stays up
// (an operator disconnect, 1008, which the demo survives because it has
// getToken); the demo's token requests are held meanwhile, so the page stays
// away exactly as long as the test needs. The SDK must come back with
// ?since=<the last pos it saw>, and what it missed is replayed.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { expectControl, openDemo, perFile, screenshot, sel, tokenGate, uniqueUser, until } from './support.mjs';

const env = perFile({ before, after });

const sinceOf = (sock) => new URL(sock.url).searchParams.get('since');
const posOf = (pos) => {
  const [epoch, id] = pos.split('.');
  const [ms, seq] = id.split('-').map(BigInt);
  return { epoch, ms, seq };
};

/**
 * Drops the page's socket from the server side and keeps it away: resolves
 * once the SDK is asking for a token for its next attempt. `publish` runs
 * then; `gate.open()` lets it back in.
 */
async function dropAndHold(page, gate, user) {
  gate.close();
  await env.herald.disconnect(user);
  await page.waitForSelector('#conn-state:not([data-state="open"])');
  await gate.waitHeld();
}

test('a message published while the socket is down is replayed after the reconnect (since = the last pos)', async () => {
  const user = uniqueUser('resume');
  const to = { users: [user] };
  const { page, wire, errors } = await openDemo(env.browser.context, env.herald, user);
  const gate = await tokenGate(page);
  try {
    const first = await env.herald.publish({ to, kind: 'toast', title: 'Before the drop', actions: [{ id: 'ok', label: 'OK' }] });
    await page.waitForSelector(sel(first), { state: 'visible' });
    const firstFrame = await wire.waitReceived('the first message', (f) => f.id === first);
    assert.equal(firstFrame.reason, 'push');
    assert.match(firstFrame.pos, /^[0-9a-f]+\.[0-9]+-[0-9]+$/);
    await until('the SDK to hold the pos', async () => (await page.evaluate(() => window.heraldClient.lastPos)) === firstFrame.pos);
    assert.equal(sinceOf(wire.sockets[0]), null, 'the first connection has no since');

    await dropAndHold(page, gate, user);
    const missed = await env.herald.publishReach({ to, kind: 'card', title: 'Published while you were away', actions: [{ id: 'see', label: 'See' }] });
    assert.deepEqual(missed.offline, [user], 'the user had no session when it was published');
    assert.equal(wire.sockets.length, 1, 'no socket while the token is held');
    await gate.open();

    const second = await wire.waitSocket(2);
    assert.equal(sinceOf(second), firstFrame.pos, 'the reconnect carries since = the last pos');
    await page.waitForSelector(sel(missed.id), { state: 'visible' });
    const replayed = await until('the replay', () => second.received.find((f) => f.t === 'msg' && f.id === missed.id));
    assert.equal(replayed.reason, 'replay');
    assert.ok(posOf(replayed.pos).seq > posOf(firstFrame.pos).seq);
    const hello = second.received.find((f) => f.t === 'hello');
    assert.equal(hello.recovered, true);
    await wire.waitAck(missed.id, 'displayed');
    await screenshot(page, 'resumed-replay');

    // What the page had before the drop is not replayed (it is before since),
    // and stays on screen exactly once.
    const live = await expectControl(env.herald, page, second, to, { kind: 'banner', title: 'Live again' });
    assert.equal(second.received.filter((f) => f.id === first).length, 0);
    assert.equal(await page.$$eval(sel(first), (n) => n.length), 1);
    assert.equal((await page.evaluate(() => window.heraldClient.lastPos)), live.pos);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('the resume position never goes back to an older sticky message sent again on connect', async () => {
  const user = uniqueUser('resume-pos');
  const to = { users: [user] };
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  const gate = await tokenGate(page);
  try {
    // An old sticky banner (the oldest position), then a newer card.
    const sticky = await env.herald.publish({ to, kind: 'banner', title: 'Incident ongoing', sticky: true });
    await page.waitForSelector(sel(sticky), { state: 'visible' });
    const card = await env.herald.publish({ to, kind: 'card', title: 'Newer card', actions: [{ id: 'ok', label: 'OK' }] });
    await page.waitForSelector(sel(card), { state: 'visible' });
    const cardPos = (await wire.waitReceived('the card', (f) => f.id === card)).pos;

    // First drop: one missed message; the sticky banner comes again after the replay.
    await dropAndHold(page, gate, user);
    const missed = await env.herald.publish({ to, kind: 'toast', title: 'Missed once', actions: [{ id: 'ok', label: 'OK' }] });
    await gate.open();
    const second = await wire.waitSocket(2);
    assert.equal(sinceOf(second), cardPos);
    await page.waitForSelector(sel(missed), { state: 'visible' });
    const replayed = await until('the replay', () => second.received.find((f) => f.id === missed));
    const again = await until('the sticky banner sent again', () => second.received.find((f) => f.id === sticky));
    assert.equal(replayed.reason, 'replay');
    assert.equal(again.reason, 'sticky');
    assert.ok(posOf(again.pos).seq < posOf(replayed.pos).seq, 'the sticky banner carries its old position');
    assert.equal(await page.$$eval(sel(sticky), (n) => n.length), 1, 'shown once');

    // Second drop: the SDK resumes from the newest position it saw, not from the sticky banner's.
    await dropAndHold(page, gate, user);
    await gate.open();
    const third = await wire.waitSocket(3);
    // The newest position it knew: the replayed message's, or the later one
    // the second hello carried; never the sticky banner's older one.
    assert.ok(posOf(sinceOf(third)).seq >= posOf(replayed.pos).seq, 'the position did not go back');
    await until('the hello', () => third.received.find((f) => f.t === 'hello'));
    // Positive control, in the one slot still free (the card, toast and banner are on screen).
    await expectControl(env.herald, page, third, to, { kind: 'modal', title: 'Control' });
    assert.deepEqual(
      third.received.filter((f) => f.reason === 'replay').map((f) => f.id),
      [],
      'nothing the page already had is replayed',
    );
  } finally {
    await page.close();
  }
});

test('a sticky message does not give a fresh page a resume position from before it connected', async () => {
  const user = uniqueUser('resume-fresh');
  const to = { users: [user] };
  // Before the page exists: a sticky banner, then a plain message nobody saw.
  const sticky = await env.herald.publish({ to, kind: 'banner', title: 'Incident ongoing', sticky: true });
  const before = await env.herald.publish({ to, kind: 'card', title: 'Published before the page loaded' });
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  const gate = await tokenGate(page);
  try {
    await page.waitForSelector(sel(sticky), { state: 'visible' });
    assert.equal((await wire.waitReceived('the sticky banner', (f) => f.id === sticky)).reason, 'sticky');

    await dropAndHold(page, gate, user);
    await gate.open();
    const second = await wire.waitSocket(2);
    await until('the hello', () => second.received.find((f) => f.t === 'hello'));
    // Positive control: the reconnected page draws what is published now.
    await expectControl(env.herald, page, second, to);
    assert.deepEqual(wire.msgs(before), [], 'what was published before the page connected is never replayed to it');
    assert.equal(await page.$(sel(before)), null);
  } finally {
    await page.close();
  }
});

// Retractions are part of the resume history: a message retracted while the
// page was away is not replayed, and one it had drawn is taken down.

test('a message published and retracted while the page was away is not replayed', async () => {
  const user = uniqueUser('resume-retract');
  const to = { users: [user] };
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  const gate = await tokenGate(page);
  try {
    const first = await env.herald.publish({ to, kind: 'banner', title: 'Gives the page a position' });
    await page.waitForSelector(sel(first), { state: 'visible' });
    await dropAndHold(page, gate, user);
    const gone = await env.herald.publish({ to, kind: 'card', title: 'Published and retracted while away' });
    await env.herald.retract(gone);
    const kept = await env.herald.publish({ to, kind: 'toast', title: 'Published while away, kept', actions: [{ id: 'ok', label: 'OK' }] });
    await gate.open();
    const second = await wire.waitSocket(2);
    // Positive control: the message still active is replayed and drawn.
    await page.waitForSelector(sel(kept), { state: 'visible' });
    assert.equal((await until('the replay', () => second.received.find((f) => f.id === kept))).reason, 'replay');
    // A retract frame for it may follow (harmless); what must not come is the message.
    assert.deepEqual(second.received.filter((f) => f.t === 'msg' && f.id === gone), [], 'the retracted message is not replayed');
    assert.equal(await page.$(sel(gone)), null);
  } finally {
    await page.close();
  }
});

test('a message the page showed and that was retracted while it was away is taken down on resume', async () => {
  const user = uniqueUser('resume-retract-shown');
  const to = { users: [user] };
  const { page, wire } = await openDemo(env.browser.context, env.herald, user);
  const gate = await tokenGate(page);
  try {
    const shown = await env.herald.publish({ to, kind: 'banner', title: 'Shown, then retracted while away' });
    await page.waitForSelector(sel(shown), { state: 'visible' });
    await dropAndHold(page, gate, user);
    await env.herald.retract(shown);
    await gate.open();
    const second = await wire.waitSocket(2);
    await until('the hello', () => second.received.find((f) => f.t === 'hello' && f.recovered === true));
    // Positive control: a retract sent on the new socket takes a message down.
    const control = await env.herald.publish({ to, kind: 'card', title: 'Retracted live' });
    await page.waitForSelector(sel(control), { state: 'visible' });
    await env.herald.retract(control);
    await page.waitForSelector(sel(control), { state: 'detached' });
    assert.ok(second.received.some((f) => f.t === 'retract' && f.id === shown), 'the resume carries the retraction');
    assert.equal(await page.$(sel(shown)), null, 'the retracted banner is off screen');
  } finally {
    await page.close();
  }
});
