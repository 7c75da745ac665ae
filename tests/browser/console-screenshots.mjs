// Screenshots of every console view, light, dark and at phone width, for
// docs/console/ (README). Run: node tests/browser/console-screenshots.mjs [DIR]
// (default docs/console). A node with Redis and API keys, a live demo page,
// an active incident and a campaign. Measure and User trace are drawn from
// sample answers in the SPEC 10.5 shapes where this node has no figures yet
// (page.route answers where the node has none, or lacks the route); the rest is the
// node's own answers.

import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { REPO, launchBrowser, openDemo, uniqueUser } from './support.mjs';
import { KEY, admin, openConsole, startNode, startRedis } from './console-support.mjs';

const out = resolve(process.argv[2] || join(REPO, 'docs/console'));
await mkdir(out, { recursive: true });
const redis = await startRedis();
const node = await startNode(redis, KEY);
const browser = await launchBrowser();
try {
  const users = [uniqueUser('ada'), uniqueUser('grace'), uniqueUser('linus')];
  for (const u of users) await openDemo(browser.context, node, u, '/', { attrs: 'plan=free' });
  await admin(node, 'POST', '/v1/messages', { to: 'all', kind: 'banner', sticky: true, collapse_key: 'incident-payments', priority: 'high', theme: { severity: 'warning' }, title: 'Payments are delayed', body: 'Card payments may take up to 10 minutes. Next update 14:30 UTC.' });
  await admin(node, 'POST', '/v1/messages', { to: { segments: ['beta'] }, kind: 'card', sticky: true, title: 'Beta: the new dashboard', body: 'Try it and tell us.' });
  await admin(node, 'PUT', '/v1/campaigns/upsell-export', { trigger: { event: 'feature_used', where: 'props.feature == "export"' }, audience: { where: 'attrs.plan == "free"' }, message: { kind: 'modal', title: 'Export more with Pro', body: 'Unlimited exports, every format.', actions: [{ id: 'upgrade', label: 'Upgrade', url: '/billing' }] }, frequency: { max: 2, per_s: 604800, until: 'clicked' } });
  await admin(node, 'PUT', '/v1/campaigns/welcome-tour', { trigger: { connect: true }, message: { kind: 'card', title: 'Welcome to Acme', body: 'A two-minute tour of what is new.' }, frequency: { max: 1 }, active: false });

  const hour = 3600000;
  const now = Math.floor(Date.now() / hour) * hour;
  const hours = Array.from({ length: 24 }, (_, i) => {
    const d = Math.round(800 + 600 * Math.sin(i / 3.5) + i * 40);
    return { hour: now - (23 - i) * hour, delivered: d, displayed: Math.round(d * 0.86), clicked: Math.round(d * 0.13) };
  });
  const sample = {
    stats: { id: 'upsell-export', delivered: 24180, displayed: 20790, clicked: 2884, dismissed: 9120, suppressed: 312, actions: { upgrade: 2410, later: 474 }, users: { delivered: 11840, displayed: 10900, clicked: 2590 } },
    variants: { holdout: { exposed: 1310, displayed: 0, clicked: 0, converted: 52, conversion_rate: 0.0397 }, a: { exposed: 5260, displayed: 5120, clicked: 690, converted: 289, conversion_rate: 0.0549, vs_holdout: { difference: 0.0152, ci95: [0.0031, 0.0273] } }, b: { exposed: 5270, displayed: 5080, clicked: 820, converted: 242, conversion_rate: 0.0459, vs_holdout: { difference: 0.0062, ci95: [-0.0055, 0.0179] } } },
    trace: { user: 'ada', decisions: [
      { at: Date.now() - 60000, campaign: 'upsell-export', decision: 'capped', reason: 'frequency: 2 per 7 days reached' },
      { at: Date.now() - 3600000, message: '01JD4T8Q2V6XH3K5N7P9R1S3T5', decision: 'delivered', reason: 'online, 2 sessions' },
      { at: Date.now() - 7200000, campaign: 'welcome-tour', decision: 'quiet_hours', reason: '22:00-08:00 Europe/Paris' },
      { at: Date.now() - 86400000, message: '01JD2M1A9B8C7D6E5F4G3H2J1K', decision: 'not_online', reason: 'no live session; reported on undelivered' },
      { at: Date.now() - 90000000, campaign: 'upsell-export', variant: 'holdout', decision: 'holdout', reason: 'assigned to the holdout (10%)' },
    ] },
  };
  const fillIn = async (page) =>
    page.route(/\/v1\/(campaigns|messages)\/[^/]+\/stats|\/v1\/users\/[^/]+\/trace|\/v1\/audience\/preview/, async (route) => {
      // The node's own answer when it has figures; a freshly started one has
      // none, so the pictures show sample figures in the same shapes.
      const res = await route.fetch();
      if (res.status() === 200) {
        const real = await res.json().catch(() => null);
        const empty = !real || (Array.isArray(real.decisions) && real.decisions.length === 0)
          || (real.delivered === 0 && !(real.hours || []).some((h) => h.delivered)) || real.sessions === 0;
        if (!empty) return route.fulfill({ response: res });
      } else if (res.status() !== 404 && res.status() !== 405) return route.fulfill({ response: res });
      const url = new URL(route.request().url());
      let body;
      if (url.pathname.includes('/trace')) body = sample.trace;
      else if (url.pathname.includes('/audience/preview')) body = { sessions: 1840, users: 1622, sample: ['u-1842', 'u-2201', 'u-0042'] };
      else if (url.searchParams.get('by') === 'hour') body = { id: 'upsell-export', hours };
      else body = { ...sample.stats, variants: sample.variants };
      return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
    });

  const views = [
    ['now', 'now'],
    ['incident', 'incident'],
    ['compose', 'compose'],
    ['messages', 'messages'],
    ['campaigns', 'campaigns'],
    ['campaign-editor', 'campaigns'],
    ['measure', 'measure/campaign/upsell-export'],
    ['trace', 'trace/ada'],
  ];
  const shots = [
    ['light', { width: 1280, height: 860 }],
    ['dark', { width: 1280, height: 860 }],
    ['phone', { width: 390, height: 844 }],
  ];
  const signin = await browser.context.newPage();
  await signin.setViewportSize({ width: 1280, height: 720 });
  await signin.goto(`${node.admin}/console`);
  await signin.getByRole('heading', { name: 'Sign in' }).waitFor();
  await signin.screenshot({ path: join(out, 'signin.png') });
  await signin.close();
  for (const [mode, size] of shots) {
    const { page } = await openConsole(browser.context, node, 'now', { colorScheme: mode === 'dark' ? 'dark' : 'light' });
    await fillIn(page);
    await page.setViewportSize(size);
    for (const [name, hash] of views) {
      await page.evaluate((h) => (location.hash = `#/${h}`), hash);
      await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
      if (name === 'now') await page.waitForFunction(() => /^[0-9.]/.test(document.querySelector('[data-stat="rate"]')?.textContent || ''));
      if (name === 'campaign-editor') {
        await page.getByRole('button', { name: 'Edit upsell-export' }).click();
        await page.waitForSelector('.campaign-editor');
      }
      if (name === 'compose') {
        await page.locator('label.seg', { hasText: 'Narrow down' }).click();
        await page.getByLabel('Where (CEL)').fill('attrs.plan == "free"');
        await page.waitForSelector('[data-count="ok"], [data-count="na"]');
      }
      if (name === 'measure') await page.waitForSelector('.chart canvas, .state');
      if (name === 'trace') await page.waitForSelector('.timeline, .state');
      await page.evaluate(() => Promise.all(document.getAnimations().map((a) => a.finished.catch(() => null))));
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.mouse.move(0, 0);
      await page.screenshot({ path: join(out, `${name}-${mode}.png`), fullPage: name === 'measure' && mode !== 'phone' });
    }
    await page.close();
  }
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
  await node.stop();
  redis.stop();
}
