// The SDK's pure parts: no DOM, no sockets, no timers.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LruSet, Scheduler, backoffDelay, isDismissible, isExpired, jwtExp, nextPos, parsePos, priorityRank, reconnectPlan, refreshDelay, safeUrl, wsUrl } from '../herald.js';

const fixed = (v) => () => v;

describe('backoffDelay', () => {
  test('full jitter: uniform below min(cap, base * 2^attempt)', () => {
    assert.equal(backoffDelay(0, { random: fixed(0) }), 0);
    assert.equal(backoffDelay(0, { random: fixed(0.999999) }), 499);
    assert.equal(backoffDelay(3, { random: fixed(0.5) }), 2000); // 0.5 * 500 * 8
    assert.equal(backoffDelay(10, { random: fixed(0.5) }), 15000); // capped at 30 s
    assert.equal(backoffDelay(1000, { random: fixed(0.5) }), 15000); // no overflow
  });

  test('stays within bounds with the real random', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt, { base: 100, cap: 2000 });
        assert.ok(d >= 0 && d < Math.min(2000, 100 * 2 ** attempt), `${attempt}: ${d}`);
      }
    }
  });
});

describe('reconnectPlan', () => {
  const half = { random: fixed(0.5) };

  test('network loss and server errors: backoff', () => {
    for (const code of [1000, 1001, 1006, 1009, 1011]) {
      assert.deepEqual(reconnectPlan(code, 2, half), { reconnect: true, delay: 1000, why: 'backoff' });
    }
  });

  test('1012 draining: at once, under a second of jitter, whatever the attempt', () => {
    assert.deepEqual(reconnectPlan(1012, 9, half), { reconnect: true, delay: 500, why: 'restart' });
    assert.ok(reconnectPlan(1012, 9, { random: fixed(0.999) }).delay < 1000);
  });

  test('4008, 4029, 4000 and 1013: slower, never under 5 s', () => {
    for (const code of [4008, 4029, 4000, 1013]) {
      const p = reconnectPlan(code, 0, { random: fixed(0) });
      assert.equal(p.delay, 5000);
      assert.equal(p.why, 'throttled');
      assert.equal(reconnectPlan(code, 1, half).delay, 5000 + 5000);
      assert.equal(reconnectPlan(code, 20, half).delay, 5000 + 60000);
    }
  });

  test('1008 policy: stop, unless a fresh token can be fetched', () => {
    assert.deepEqual(reconnectPlan(1008, 0, half), { reconnect: false, delay: 0, why: 'policy' });
    assert.deepEqual(reconnectPlan(1008, 0, { ...half, canRefreshToken: true }), { reconnect: true, delay: 250, why: 'policy' });
  });
});

describe('LruSet', () => {
  test('tells new ids from duplicates', () => {
    const s = new LruSet(10);
    assert.equal(s.add('a'), true);
    assert.equal(s.add('a'), false);
    assert.equal(s.has('a'), true);
    assert.equal(s.size, 1);
  });

  test('is bounded and forgets the least recently seen first', () => {
    const s = new LruSet(3);
    s.add('a');
    s.add('b');
    s.add('c');
    s.add('a'); // refreshes a
    s.add('d'); // evicts b
    assert.equal(s.size, 3);
    assert.equal(s.has('b'), false);
    assert.ok(s.has('a') && s.has('c') && s.has('d'));
    for (let i = 0; i < 1000; i++) s.add(`x${i}`);
    assert.equal(s.size, 3);
  });
});

const m = (id, kind = 'toast', extra = {}) => ({ id, kind, priority: 'normal', ...extra });
const kinds = (effects) => effects.map((e) => `${e.type}:${e.msg.id}${e.why ? ':' + e.why : ''}`);

describe('Scheduler', () => {
  test('one message per slot; others wait', () => {
    const s = new Scheduler();
    assert.deepEqual(kinds(s.offer(m('a'))), ['show:a']);
    assert.deepEqual(kinds(s.offer(m('b'))), []);
    assert.deepEqual(kinds(s.offer(m('c', 'banner'))), ['show:c']); // another slot
    assert.equal(s.current('toast').id, 'a');
    assert.deepEqual(s.queued('toast').map((x) => x.id), ['b']);
    assert.deepEqual(s.find('b'), { slot: 'toast', state: 'queued' });
    assert.deepEqual(kinds(s.remove('a')), ['hide:a:closed', 'show:b']);
    assert.deepEqual(kinds(s.remove('b')), ['hide:b:closed']);
    assert.equal(s.current('toast'), null);
  });

  test('modal and fullscreen share one slot', () => {
    const s = new Scheduler();
    s.offer(m('a', 'modal'));
    assert.deepEqual(kinds(s.offer(m('b', 'fullscreen'))), []);
    assert.deepEqual(kinds(s.remove('a')), ['hide:a:closed', 'show:b']);
  });

  test('custom and unknown kinds are not scheduled', () => {
    const s = new Scheduler();
    assert.deepEqual(s.offer(m('a', 'custom')), []);
    assert.deepEqual(s.offer(m('b', 'hologram')), []);
    assert.equal(s.find('a'), null);
  });

  test('the queue is ordered by priority, then arrival', () => {
    const s = new Scheduler();
    s.offer(m('first'));
    s.offer(m('low1', 'toast', { priority: 'low' }));
    s.offer(m('n1'));
    s.offer(m('high', 'toast', { priority: 'high' }));
    s.offer(m('n2'));
    s.offer(m('low2', 'toast', { priority: 'low' }));
    assert.deepEqual(s.queued('toast').map((x) => x.id), ['high', 'n1', 'n2', 'low1', 'low2']);
    const order = [];
    let id = 'first';
    for (;;) {
      const next = s.remove(id).find((e) => e.type === 'show');
      if (!next) break;
      id = next.msg.id;
      order.push(id);
    }
    assert.deepEqual(order, ['high', 'n1', 'n2', 'low1', 'low2']);
  });

  test('urgent preempts; the preempted one returns ahead of its peers', () => {
    const s = new Scheduler();
    s.offer(m('a', 'banner', { priority: 'high' }));
    s.offer(m('b', 'banner', { priority: 'high' }));
    assert.deepEqual(kinds(s.offer(m('u', 'banner', { priority: 'urgent' }))), ['hide:a:preempted', 'show:u']);
    assert.deepEqual(s.queued('banner').map((x) => x.id), ['a', 'b']);
    // urgent does not preempt urgent
    assert.deepEqual(kinds(s.offer(m('u2', 'banner', { priority: 'urgent' }))), []);
    assert.deepEqual(kinds(s.remove('u')), ['hide:u:closed', 'show:u2']);
    assert.deepEqual(kinds(s.remove('u2')), ['hide:u2:closed', 'show:a']);
  });

  test('collapse_key replaces the active message in place, whatever its priority', () => {
    const s = new Scheduler();
    s.offer(m('v1', 'banner', { collapse_key: 'incident', priority: 'urgent' }));
    s.offer(m('other', 'banner'));
    assert.deepEqual(kinds(s.offer(m('v2', 'banner', { collapse_key: 'incident', priority: 'low' }))), ['hide:v1:replaced', 'show:v2']);
    assert.deepEqual(s.queued('banner').map((x) => x.id), ['other']);
  });

  test('collapse_key replaces a waiting message too', () => {
    const s = new Scheduler();
    s.offer(m('a'));
    s.offer(m('k1', 'toast', { collapse_key: 'k' }));
    assert.deepEqual(kinds(s.offer(m('k2', 'toast', { collapse_key: 'k' }))), ['drop:k1:replaced']);
    assert.deepEqual(s.queued('toast').map((x) => x.id), ['k2']);
  });

  test('collapse_key across slots: the old one leaves its slot, which moves on', () => {
    const s = new Scheduler();
    s.offer(m('b1', 'banner', { collapse_key: 'promo' }));
    s.offer(m('b2', 'banner'));
    assert.deepEqual(kinds(s.offer(m('c1', 'card', { collapse_key: 'promo' }))), ['hide:b1:replaced', 'show:b2', 'show:c1']);
  });

  test('retract of a waiting message drops it without a show', () => {
    const s = new Scheduler();
    s.offer(m('a'));
    s.offer(m('b'));
    assert.deepEqual(kinds(s.remove('b', 'retracted')), ['drop:b:retracted']);
    assert.deepEqual(kinds(s.remove('zzz')), []);
  });

  test('expired messages never show and leave when they expire', () => {
    const s = new Scheduler();
    assert.deepEqual(kinds(s.offer(m('old', 'toast', { expires_at: 900 }), 1000)), ['drop:old:expired']);
    s.offer(m('a', 'toast', { expires_at: 2000 }), 1000);
    s.offer(m('b', 'toast', { expires_at: 1500 }), 1000);
    s.offer(m('c', 'toast'), 1000);
    assert.equal(s.nextExpiry(), 1500);
    assert.deepEqual(kinds(s.expire(1600)), ['drop:b:expired']);
    assert.deepEqual(kinds(s.expire(2000)), ['hide:a:expired', 'show:c']);
    assert.equal(s.nextExpiry(), null);
  });

  test('a promoted message that expired while waiting is skipped', () => {
    const s = new Scheduler();
    s.offer(m('a'), 1000);
    s.offer(m('b', 'toast', { expires_at: 1500 }), 1000);
    s.offer(m('c'), 1000);
    assert.deepEqual(kinds(s.remove('a', 'closed', 2000)), ['hide:a:closed', 'drop:b:expired', 'show:c']);
  });

  test('the queue is bounded: the lowest priority overflows', () => {
    const s = new Scheduler({ maxQueue: 2 });
    s.offer(m('on-screen'));
    s.offer(m('n1'));
    s.offer(m('low', 'toast', { priority: 'low' }));
    assert.deepEqual(kinds(s.offer(m('high', 'toast', { priority: 'high' }))), ['drop:low:overflow']);
    assert.deepEqual(kinds(s.offer(m('low2', 'toast', { priority: 'low' }))), ['drop:low2:overflow']);
    assert.deepEqual(s.queued('toast').map((x) => x.id), ['high', 'n1']);
  });
});

describe('helpers', () => {
  test('priorityRank orders low < normal < high < urgent; unknown counts as normal', () => {
    assert.deepEqual(['low', 'normal', 'high', 'urgent', undefined, 'bogus'].map(priorityRank), [0, 1, 2, 3, 1, 1]);
  });

  test('isExpired', () => {
    assert.equal(isExpired({ expires_at: 10 }, 10), true);
    assert.equal(isExpired({ expires_at: 11 }, 10), false);
    assert.equal(isExpired({}, 10), false);
  });

  test('wsUrl maps http(s) to ws(s) and appends /v1/ws with the query', () => {
    assert.equal(wsUrl('http://localhost:8080', { token: 't' }), 'ws://localhost:8080/v1/ws?token=t');
    assert.equal(wsUrl('https://h.example/herald/', { token: 'a b', since: '17-3', locale: 'fr' }), 'wss://h.example/herald/v1/ws?token=a+b&since=17-3&locale=fr');
    assert.equal(wsUrl('wss://h.example/v1/ws?old=1#x', { token: 't' }), 'wss://h.example/v1/ws?token=t');
    assert.equal(wsUrl('ws://h:1', {}), 'ws://h:1/v1/ws');
    assert.throws(() => wsUrl('ftp://h'), /http\(s\) or ws\(s\)/);
  });

  test('safeUrl lets through http(s) and same-origin paths only', () => {
    const origin = 'https://shop.example';
    assert.equal(safeUrl('/billing?x=1', origin), 'https://shop.example/billing?x=1');
    assert.equal(safeUrl('https://other.example/a', origin), 'https://other.example/a');
    assert.equal(safeUrl('http://other.example/', origin), 'http://other.example/');
    for (const bad of ['javascript:alert(1)', ' JavaScript:alert(1)', 'data:text/html,x', '//evil.example/x', '/\\evil.example', 'vbscript:x', 'billing', '', null, 42]) {
      assert.equal(safeUrl(bad, origin), null, String(bad));
    }
    assert.equal(safeUrl('/billing', null), null);
  });

  test('jwtExp reads the exp claim without verifying', () => {
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    assert.equal(jwtExp(`${b64({ alg: 'HS256' })}.${b64({ sub: 'u', exp: 1700000000 })}.sig`), 1700000000);
    assert.equal(jwtExp(`${b64({ alg: 'HS256' })}.${b64({ sub: 'u' })}.sig`), null);
    assert.equal(jwtExp('not a jwt'), null);
  });

  test('parsePos splits {epoch}.{ms}-{seq} and refuses anything else', () => {
    assert.deepEqual(parsePos('6be6a2073738a5dd.1795872659928-12'), { epoch: '6be6a2073738a5dd', ms: 1795872659928, seq: 12 });
    assert.deepEqual(parsePos('a.b.5-1'), { epoch: 'a.b', ms: 5, seq: 1 });
    for (const bad of ['p1', '42-0', '.5-1', 'e.5', 'e.5-', 'e.-1', 'e.x-1', 'e.5-1 ', '', null, 7]) {
      assert.equal(parsePos(bad), null, String(bad));
    }
  });

  test('nextPos moves forward only, ignores sticky redeliveries, and follows a new epoch', () => {
    const e = (ms, seq, epoch = 'ep') => `${epoch}.${ms}-${seq}`;
    assert.equal(nextPos(null, e(10, 1), 'push'), e(10, 1));
    assert.equal(nextPos(e(10, 1), e(10, 2), 'push'), e(10, 2));
    assert.equal(nextPos(e(10, 2), e(11, 3), 'replay'), e(11, 3));
    // Older than what is held (a late duplicate): kept back.
    assert.equal(nextPos(e(11, 3), e(10, 2), 'replay'), e(11, 3));
    assert.equal(nextPos(e(11, 3), e(11, 3), 'push'), e(11, 3));
    // Compared as numbers, not as text.
    assert.equal(nextPos(e(9, 9), e(10, 10), 'push'), e(10, 10));
    // A sticky (or require_ack) message sent again on connect never moves it, even from nothing.
    assert.equal(nextPos(e(11, 3), e(5, 1), 'sticky'), e(11, 3));
    assert.equal(nextPos(e(11, 3), e(12, 4), 'sticky'), e(11, 3));
    assert.equal(nextPos(null, e(5, 1), 'sticky'), null);
    // The server lost its history (new epoch): its positions replace ours.
    assert.equal(nextPos(e(11, 3), e(2, 1, 'new'), 'push'), e(2, 1, 'new'));
    // Opaque positions: the latest wins.
    assert.equal(nextPos('p2', 'p1', 'push'), 'p1');
    // No position: nothing changes.
    assert.equal(nextPos(e(11, 3), undefined, 'push'), e(11, 3));
    assert.equal(nextPos(e(11, 3), '', 'trigger'), e(11, 3));
  });
});

test('the hello position starts a fresh session and never moves an older one back', () => {
  assert.equal(nextPos(null, 'e1.100-5', 'hello'), 'e1.100-5');
  assert.equal(nextPos('e1.200-9', 'e1.100-5', 'hello'), 'e1.200-9');
  assert.equal(nextPos('e1.100-5', 'e1.300-9', 'hello'), 'e1.300-9');
  assert.equal(nextPos('e1.100-5', 'e2.1-1', 'hello'), 'e2.1-1', 'a new epoch replaces it');
});

test('refreshDelay: 80% of the lifetime or 60 s before expiry, whichever is sooner, never before half, less up to 10% jitter', () => {
  const none = () => 0;
  assert.equal(refreshDelay(3600_000, none), 2880_000); // 1 h: at 48 min
  assert.equal(refreshDelay(600_000, none), 480_000); // 10 min: 80% is sooner than 9 min
  assert.equal(refreshDelay(200_000, none), 140_000); // 200 s: 60 s before is sooner than 80%
  assert.equal(refreshDelay(20_000, none), 10_000); // 20 s: 60 s before is past; half of it
  assert.equal(refreshDelay(3600_000, () => 0.999999), 2520_000); // the most jitter: 42 min
  assert.equal(refreshDelay(0), 0);
  assert.equal(refreshDelay(-5), 0);
});

test('isDismissible: only an explicit false', () => {
  assert.equal(isDismissible({}), true);
  assert.equal(isDismissible({ dismissible: true }), true);
  assert.equal(isDismissible({ dismissible: false }), false);
});

test('jwtExp decodes without atob too (React Native engines)', () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = `${b64({ alg: 'HS256' })}.${b64({ sub: 'ü-user', exp: 1700000123 })}.sig`;
  const saved = globalThis.atob;
  try {
    globalThis.atob = undefined;
    assert.equal(jwtExp(token), 1700000123);
  } finally {
    globalThis.atob = saved;
  }
});
