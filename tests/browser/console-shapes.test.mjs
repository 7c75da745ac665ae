// The console's parsing of API answers (console/shapes.js) and of the API's
// 400 reasons (console/api.js), without a browser: what the views draw
// from the shapes of SPEC 10.3-10.5 and from older nodes' answers.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as shapes from '../../console/shapes.js';
import { fieldOf } from '../../console/api.js';

test('the field a 400 reason names', () => {
  assert.equal(fieldOf('to.where: invalid CEL: ERROR: <input>:1:14: Syntax error'), 'to.where');
  assert.equal(fieldOf('titel: unknown field `titel`, expected one of `op`'), 'titel');
  assert.equal(fieldOf('campaign trigger.where: unknown variable "x"'), 'trigger.where');
  assert.equal(fieldOf('actions[0].label: must be 1 to 64 characters'), 'actions[0].label');
  assert.equal(fieldOf('missing or invalid API key'), null);
});

test('stats: this node alone (embedded), and the cluster from its heartbeats', () => {
  const alone = shapes.stats({ node: 'n1', mode: 'embedded', bus_up: true, draining: false, sessions: 2, users: 2, deliveries: 9, cluster: null });
  assert.deepEqual([alone.sessions, alone.users, alone.deliveries, alone.nodes.length, alone.nodes[0].state], [2, 2, 9, 1, 'ready']);
  const two = shapes.stats({ node: 'n2', mode: 'redis', draining: true, sessions: 1, users: 1, deliveries: 2, cluster: { sessions: 4, deliveries: 7, nodes: { n1: { sessions: 3, users: 2, deliveries: 5 }, n2: { sessions: 1, users: 1, deliveries: 2 } } } });
  assert.deepEqual([two.sessions, two.users, two.deliveries], [4, 3, 7]);
  assert.deepEqual(two.nodes.map((n) => [n.id, n.state, n.self]), [['n2', 'draining', true], ['n1', 'live', false]]);
  const down = shapes.stats({ node: 'n1', sessions: 1, cluster: { error: 'redis did not answer in time' } });
  assert.equal(down.clusterError, 'redis did not answer in time');
  assert.equal(down.sessions, 1);
});

test('counts, rates, actions and variants against the holdout', () => {
  const c = shapes.counts({
    id: 'm1', delivered: 10, displayed: 8, clicked: 2, dismissed: 4, suppressed: 1,
    actions: { later: 1, yes: 3 }, users: { delivered: 9, displayed: 7, clicked: 2 },
    variants: { b: { exposed: 10, converted: 1 }, holdout: { exposed: 5, converted: 0 }, a: { exposed: 10, converted: 2, rate: 0.2, diff: 0.2, ci: [0.05, 0.35] } },
  });
  assert.deepEqual([c.displayRate, c.clickRate, c.dismissRate], [0.8, 0.25, 0.5]);
  assert.deepEqual(c.actions, [{ id: 'yes', n: 3 }, { id: 'later', n: 1 }]);
  assert.deepEqual(c.variants.map((v) => [v.id, v.rate, v.diff, v.ci]), [['holdout', 0, null, null], ['a', 0.2, 0.2, [0.05, 0.35]], ['b', 0.1, null, null]]);
  // As the node writes them: conversion_rate and vs_holdout {difference, ci95}.
  const spec = shapes.variants({ holdout: { exposed: 4, converted: 1, conversion_rate: 0.25 }, default: { exposed: 8, converted: 4, conversion_rate: 0.5, vs_holdout: { difference: 0.25, ci95: [-0.2, 0.6] } }, b: { exposed: 0, conversion_rate: null, vs_holdout: { difference: null, ci95: null } } });
  assert.deepEqual(spec.map((v) => [v.id, v.rate, v.diff, v.ci]), [['holdout', 0.25, null, null], ['b', null, null, null], ['default', 0.5, 0.25, [-0.2, 0.6]]]);
  const empty = shapes.counts({});
  assert.deepEqual([empty.delivered, empty.displayRate, empty.variants, empty.hours], [0, null, [], []]);
});

test('hourly counts sorted by hour, entries without an hour dropped', () => {
  const h = shapes.hours([{ hour: 7200000, delivered: 2 }, { delivered: 9 }, { hour: 3600000, delivered: 1, clicked: 1 }]);
  assert.deepEqual(h.map((x) => [x.hour, x.delivered, x.clicked]), [[3600000, 1, 1], [7200000, 2, 0]]);
  assert.deepEqual(shapes.hours(undefined), []);
});

test('the trace, newest first, with a label for each decision of SPEC 10.5', () => {
  const t = shapes.trace({ decisions: [
    { at: 1, message: 'm1', decision: 'not_online', reason: 'no session' },
    { at: 3, campaign: { id: 'c1' }, decision: 'quiet_hours' },
    { at: 2, message: 'm2', decision: 'delivered' },
  ] });
  assert.deepEqual(t.map((d) => [d.at, d.message, d.campaign, d.label, d.shown]), [
    [3, null, 'c1', 'Quiet hours', false],
    [2, 'm2', null, 'Delivered', true],
    [1, 'm1', null, 'Not online', false],
  ]);
  assert.equal(shapes.trace([{ at: 1, message: 'x', decision: 'holdout' }])[0].label, 'In the holdout');
  for (const d of ['delivered', 'not_online', 'not_in_audience', 'capped', 'quiet_hours', 'outside_window', 'holdout', 'suppressed_by_client', 'dismissed_before', 'expired']) {
    assert.ok(shapes.DECISIONS[d], d);
  }
});

test('the preview count, the scheduled list and a publish answer', () => {
  assert.deepEqual(shapes.preview({ sessions: 3, users: 2, sample: ['u1', 'u2'] }), { sessions: 3, users: 2, sample: ['u1', 'u2'] });
  const s = shapes.scheduled({ messages: [{ id: 'b', send_at: 20, kind: 'toast' }, { id: 'a', send_at: 10, envelope: { kind: 'card' } }] });
  assert.deepEqual(s.map((m) => [m.id, m.sendAt, m.envelope.kind]), [['a', 10, 'card'], ['b', 20, 'toast']]);
  assert.deepEqual(shapes.published({ id: 'x', online: ['u1'], offline: [] }), { id: 'x', sendAt: null, online: ['u1'], offline: [] });
  assert.equal(shapes.published({ id: 'x', send_at: 5 }).sendAt, 5);
});
