// What the node itself serves: the SDK's three modules at /sdk/, as they are
// in sdk/js (the binary embeds them when it is built: rebuild after changing
// them), importable cross-origin, and the demo page running on them with no
// help from the test harness (every other file serves the working tree's
// copies instead, see serveWorkingTree).

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Herald, REPO, launchBrowser, sel, uniqueUser } from './support.mjs';

let herald;
let browser;
before(async () => {
  herald = await new Herald().start();
  browser = await launchBrowser({ workingTree: false });
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

test('the node serves /sdk/herald.js, herald-core.js and herald-render.js as they are in sdk/js', async () => {
  for (const name of ['herald.js', 'herald-core.js', 'herald-render.js']) {
    const res = await fetch(`${herald.base}/sdk/${name}`, { headers: { origin: 'https://app.example' } });
    assert.equal(res.status, 200, `${name}: ${res.status}`);
    assert.match(res.headers.get('content-type'), /^text\/javascript/);
    assert.equal(res.headers.get('access-control-allow-origin'), '*', 'importable from an app on another origin');
    assert.equal(await res.text(), await readFile(join(REPO, 'sdk/js', name), 'utf8'), `${name} is the working tree's (rebuild the binary after changing it)`);
  }
});

test('the demo page, as the node serves it, imports the SDK from the node and draws a message', async () => {
  const user = uniqueUser('served');
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  try {
    await page.goto(`${herald.base}/?user=${user}`);
    await page.waitForSelector('#conn-state[data-state="open"]');
    const id = await herald.publish({ to: { users: [user] }, kind: 'banner', title: 'Served by the node' });
    await page.waitForSelector(sel(id), { state: 'visible' });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
