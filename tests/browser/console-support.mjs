// Fixtures of the console tests: a redis-server of the test's own, Herald
// nodes on it (with API keys, or without), the console page signed in, the
// axe-core check, and keyboard-only navigation.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Herald, SCREENSHOTS, freePort, until } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const KEY = 'console-test-key-0123456789';

/** A redis-server on a free port, no persistence; `stop()` kills it. */
export async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const failed = new Promise((_, fail) =>
    proc.once('error', (e) => fail(new Error(`cannot start redis-server (${e.message}): install it with \`apt-get install -y redis-server\``))),
  );
  const ping = () =>
    new Promise((ok) => {
      const s = connect(port, '127.0.0.1');
      s.once('error', () => ok(false));
      s.once('data', (d) => (s.destroy(), ok(d.toString().startsWith('+PONG'))));
      s.once('connect', () => s.write('PING\r\n'));
    });
  await Promise.race([failed, until(`redis-server on ${port}`, ping)]);
  return { url: `redis://127.0.0.1:${port}`, stop: () => proc.kill('SIGKILL') };
}

/** A node on `redis`, with API keys when `key` is given. */
export async function startNode(redis, key) {
  const env = { HERALD_REDIS__URL: redis.url, HERALD_REDIS__HEARTBEAT: '1s' };
  if (key) env.HERALD_AUTH__API_KEYS = key;
  const h = new Herald({ env });
  await h.start();
  h.key = key || null;
  return h;
}

/** An admin API call with the node's key. */
export async function admin(h, method, path, body) {
  const headers = { 'content-type': 'application/json' };
  if (h.key) headers.authorization = `Bearer ${h.key}`;
  const res = await fetch(`${h.admin}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/**
 * Opens the console of `h` in a new page, signing in with the key when the
 * node has one; `errors` collects the page's uncaught errors.
 */
export async function openConsole(context, h, view = 'now', { colorScheme } = {}) {
  const page = await context.newPage();
  if (colorScheme) await page.emulateMedia({ colorScheme });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${h.admin}/console#/${view}`);
  if (h.key) {
    await page.getByLabel('API key').fill(h.key);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await page.waitForSelector('#page-title');
  return { page, errors };
}

/** Goes to a view through the navigation, as a person would. */
export async function go(page, name) {
  await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: new RegExp(`^${name}`) }).click();
  await page.waitForFunction((n) => document.getElementById('page-title')?.textContent === n, name);
}

let axeSource = null;
/**
 * axe-core on the whole page: no serious or critical violation. Evaluated
 * through the DevTools protocol (the console's CSP allows no inline script).
 */
export async function axeCheck(page, what) {
  axeSource ??= await readFile(join(here, 'node_modules/axe-core/axe.min.js'), 'utf8').catch(() => {
    throw new Error('axe-core is not installed: run `(cd tests/browser && npm ci)`');
  });
  await page.evaluate(axeSource);
  // Overlays fade in: contrast is judged once they are drawn in full.
  await page.evaluate(() => Promise.all(document.getAnimations().filter((a) => a.effect?.getTiming().iterations !== Infinity).map((a) => a.finished.catch(() => null))));
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`),
    [],
    `axe-core found serious or critical violations on ${what}`,
  );
  return result.violations;
}

/**
 * Waits until the keyboard focus is on the view's heading (`#page-title`
 * reading `title`), where the console puts it after a view change or a save.
 */
export async function focusOnHeading(page, title) {
  await page.waitForFunction((t) => document.activeElement?.id === 'page-title' && document.activeElement.textContent === t, title);
}

/** Presses Tab (at most `max` times) until the focused element matches `selector`; fails otherwise. */
export async function tabTo(page, selector, max = 80) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** The focused element shows a visible focus indicator (an outline or a box-shadow). */
export async function focusVisible(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
  });
}

export async function consoleShot(page, name) {
  const dir = join(SCREENSHOTS, 'console');
  await mkdir(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true, animations: 'disabled' });
}

/**
 * Marks test `t` as todo when the node lacks one of `routes` ([method,
 * path]: it answers 405, or 404 "no such route"): a known server gap, per
 * the browser tests' convention. The test still runs and reports; on a node
 * that has the routes it is an ordinary test.
 */
export async function needsRoutes(t, h, routes) {
  const missing = [];
  for (const [method, path] of routes) {
    const { status, body } = await admin(h, method, path, method === 'GET' ? undefined : {});
    if (status === 405 || (status === 404 && body && body.error === 'no such route')) missing.push(`${method} ${path}`);
  }
  if (missing.length) t.todo(`this node lacks ${missing.join(', ')} (SPEC 10.3-10.5)`);
  return missing.length === 0;
}
