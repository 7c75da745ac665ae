// The builder and the bundled schemas, without a node. (That the node
// refuses the same envelopes, naming the same fields, is in http.test.mjs.)

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkCampaign, checkEnvelope, InvalidMessage, Message, newId } from '@herald/client';
import { load, REPO } from './support.mjs';

const json = (path) => JSON.parse(readFileSync(path, 'utf8'));
const bundled = new URL('../schemas/', import.meta.url);

for (const name of ['envelope.schema.json', 'campaign.schema.json']) {
  test(`the bundled ${name} is the repository's`, () => {
    assert.deepEqual(
      json(new URL(name, bundled)),
      json(join(REPO, 'schemas', name)),
      `clients/node/schemas/${name} differs from schemas/${name}; refresh it with: cp schemas/${name} clients/node/schemas/`,
    );
  });
}

test('every example envelope and campaign passes', () => {
  const dir = (d) => readdirSync(join(REPO, 'examples', d)).filter((f) => f.endsWith('.json')).map((f) => join(REPO, 'examples', d, f));
  const [envelopes, campaigns] = [dir('envelopes'), dir('campaigns')];
  assert.ok(envelopes.length >= 10 && campaigns.length >= 5);
  for (const f of envelopes) checkEnvelope(json(f));
  for (const f of campaigns) checkCampaign(json(f));
});

test('the builder writes the envelope', () => {
  const msg = Message.banner('Payments degraded', 'Card payments may fail')
    .toAll().priority('urgent').sticky().collapseKey('incident')
    .theme({ severity: 'critical' }).ttl(1800).id('incident-42');
  assert.deepEqual(JSON.parse(msg.toJSONString()), {
    kind: 'banner', title: 'Payments degraded', body: 'Card payments may fail', to: 'all', priority: 'urgent',
    sticky: true, collapse_key: 'incident', theme: { severity: 'critical' }, ttl_s: 1800, id: 'incident-42',
  });
  const tip = Message.tooltip('#export', 'Export here').toUsers('u1', 'u2').where('attrs.plan == "free"')
    .action('ok', 'Got it').action('more', 'Learn more', '/docs/export')
    .locale('fr', { title: 'Exportez ici', actions: [{ id: 'ok', label: 'Compris' }] })
    .data({ step: 1 }).requireAck().fallback().campaign('tour');
  assert.deepEqual(tip.validate().toJSON(), {
    kind: 'tooltip', title: 'Export here', anchor: '#export',
    to: { users: ['u1', 'u2'], where: 'attrs.plan == "free"' },
    actions: [{ id: 'ok', label: 'Got it' }, { id: 'more', label: 'Learn more', url: '/docs/export' }],
    locales: { fr: { title: 'Exportez ici', actions: [{ id: 'ok', label: 'Compris' }] } },
    data: { step: 1 }, require_ack: true, fallback: true, campaign: 'tour',
  });
  assert.deepEqual(Message.custom({ confetti: true }).toSegments(['beta']).toJSON(), {
    kind: 'custom', data: { confetti: true }, to: { segments: ['beta'] },
  });
  assert.equal(JSON.stringify(Message.toast('x').toAll()), '{"kind":"toast","title":"x","to":"all"}');
  assert.deepEqual(Message.toast('x').expiresAt(new Date(1_900_000_000_000)).toJSON().expires_at, 1_900_000_000_000);
  assert.equal(Message.banner('Maintenance').sendAt(new Date('2026-12-24T09:00:00Z')).toJSON().send_at, 1_798_102_800_000);
});

test('a message is a template', () => {
  const base = Message.toast('Export ready').action('open', 'Open');
  const a = base.toUsers('a');
  const b = base.toUsers('b').action('share', 'Share');
  assert.equal(base.toJSON().to, undefined);
  assert.equal(base.toJSON().actions.length, 1);
  assert.deepEqual([a.toJSON().to, a.toJSON().actions.length], [{ users: ['a'] }, 1]);
  assert.deepEqual([b.toJSON().to, b.toJSON().actions.length], [{ users: ['b'] }, 2]);
});

test('ids are ULIDs in time order', () => {
  const [a, b] = [newId(1_700_000_000_000), newId(1_700_000_000_001)];
  assert.match(a, /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/);
  assert.ok(a < b);
});

for (const c of load('refusals.json')) {
  test(`refuses what the node refuses, naming ${c.field}`, () => {
    assert.throws(() => checkEnvelope(c.envelope), (e) => {
      assert.ok(e instanceof InvalidMessage, e);
      assert.equal(e.field, c.field, e.message);
      assert.ok(e.message.startsWith(`${c.field}: `), e.message);
      return true;
    });
  });
}

test('builder refusals name the field', () => {
  const refuses = (m, message) => assert.throws(() => m.validate(), (e) => e instanceof InvalidMessage && message.test(e.message));
  refuses(Message.banner().toAll(), /^title: a title or a body is required$/);
  refuses(Message.banner('No audience'), /^to: required$/);
  refuses(Message.toast('x').toAll().ttl(0), /^ttl_s: must be at least 1$/);
  let m = Message.modal('x').toAll();
  for (let i = 0; i < 4; i++) m = m.action(`a${i}`, 'A');
  refuses(m, /^actions: at most 3 entries$/);
  const big = Message.custom({ blob: 'x'.repeat(70_000) }).toAll();
  refuses(big, /^envelope: \d+ bytes is over the 65536-byte limit$/);
  big.validate({ maxBytes: 128 * 1024 });
});

test('campaign refusals name the field', () => {
  const good = json(join(REPO, 'examples/campaigns/upsell-export.json'));
  checkCampaign(good);
  const field = (c) => {
    try {
      checkCampaign(c);
    } catch (e) {
      assert.ok(e instanceof InvalidMessage);
      return e.field;
    }
    assert.fail('accepted');
  };
  assert.equal(field({ ...good, message: { ...good.message, to: 'all' } }), 'message');
  assert.equal(field({ ...good, frequency: { max: 2, until: 'forever' } }), 'frequency.until');
  assert.equal(field({ ...good, trigger: {} }), 'trigger');
});
