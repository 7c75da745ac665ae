// App links (sdk.allowed_link_schemes) end to end: the node lists the
// schemes in hello, the core opens a listed one on click, and the node and
// the core agree on what they refuse.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Herald, linkSchemes, safeUrl } from '../herald-core.js';
import { HeraldNode, recordingWebSocket, uniqueUser, until } from '../test-helpers/herald-node.mjs';

let node;
const clients = [];
before(async () => {
  node = await new HeraldNode({ env: { HERALD_SDK__ALLOWED_LINK_SCHEMES: 'myapp, com.example.shop' } }).start();
});
after(async () => {
  for (const c of clients) c.close();
  await node?.stop();
});

test('safeUrl opens listed app schemes and never javascript: or data:', () => {
  const origin = 'https://shop.example';
  const schemes = linkSchemes(['MyApp://', 'javascript', 'data:', 'bad scheme', 7]);
  assert.deepEqual(schemes, ['myapp']);
  assert.equal(safeUrl('myapp://orders/42', origin, schemes), 'myapp://orders/42');
  assert.equal(safeUrl('myapp://orders/42', origin), null, 'no list: no app links');
  assert.equal(safeUrl('otherapp://x', origin, schemes), null);
  for (const bad of ['javascript:alert(1)', 'data:text/html,x', 'vbscript:x']) {
    assert.equal(safeUrl(bad, origin, ['javascript', 'data', 'vbscript']), null, bad);
  }
  assert.equal(safeUrl('https://a.example/', origin, schemes), 'https://a.example/');
});

test('a listed app link from the node is opened on click', async () => {
  const user = uniqueUser('links');
  const rec = recordingWebSocket();
  const opened = [];
  const client = Herald.connect({
    url: node.base,
    WebSocket: rec.WebSocket,
    getToken: () => node.token(user),
    navigate: (href) => opened.push(href),
    view: { show: () => {}, hide: () => {} },
  });
  clients.push(client);
  const seen = [];
  client.on('message', (m) => seen.push(m));
  await until('open', () => client.state === 'open');
  assert.deepEqual(rec.last().received[0].link_schemes, ['myapp', 'com.example.shop']);

  const id = await node.publish({
    to: { users: [user] },
    kind: 'modal',
    title: 'Your order shipped',
    actions: [{ id: 'open', label: 'Open in the app', url: 'com.example.shop://orders/42' }],
  });
  await until('the message', () => seen.find((m) => m.id === id));
  assert.ok(client.click(id, 'open'));
  await until('the app link opened', () => opened.length === 1);
  assert.equal(opened[0], 'com.example.shop://orders/42');

  // The node refuses what is not listed, naming the field.
  await assert.rejects(
    node.publish({ to: { users: [user] }, kind: 'modal', title: 'x', actions: [{ id: 'o', label: 'O', url: 'evil://x' }] }),
    /400.*actions\[0\]\.url/,
  );
  await assert.rejects(
    node.publish({ to: { users: [user] }, kind: 'modal', title: 'x', actions: [{ id: 'o', label: 'O', url: 'javascript:alert(1)' }] }),
    /400.*never/,
  );
});
