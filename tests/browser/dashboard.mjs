// Drives Pool's dashboard in headless Chromium.
//
//   node tests/browser/dashboard.mjs <baseUrl> <apiKey>
//
// Steps: open /, enter the key, compare the count cards with GET /api/pool/counts,
// claim an agent through the form and wait for its invite URL, then retry a failed
// job from the job list. Exits 0 on success, 1 with a message otherwise.
// CHROMIUM_PATH overrides the browser (default /usr/bin/chromium); SCREENSHOT_DIR,
// when set, receives dashboard.png (and failure.png when a step fails).

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [baseArg, apiKey] = process.argv.slice(2);
if (!baseArg || !apiKey) {
  console.error('usage: node dashboard.mjs <baseUrl> <apiKey>');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const STATUSES = ['provisioning', 'idle', 'claiming', 'claimed', 'crashed', 'draining'];
const screenshotDir = process.env.SCREENSHOT_DIR;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (step, msg) => console.log(`[dashboard] ${step}: ${msg}`);

class StepError extends Error {}
function fail(step, msg) { throw new StepError(`${step}: ${msg}`); }

async function step(name, fn) {
  const started = Date.now();
  try {
    const summary = await fn();
    log(name, `ok (${((Date.now() - started) / 1000).toFixed(1)} s)${summary ? ` — ${summary}` : ''}`);
  } catch (err) {
    if (err instanceof StepError) throw err;
    fail(name, err.message.split('\n')[0]);
  }
}

async function fetchCounts() {
  const res = await fetch(`${base}/api/pool/counts`);
  if (!res.ok) throw new Error(`GET /api/pool/counts answered ${res.status}`);
  return res.json();
}

async function readCounts(page) {
  return page.evaluate((statuses) => Object.fromEntries(statuses.map((s) => {
    const node = document.getElementById(`count-${s}`);
    return [s, node ? node.textContent.trim() : null];
  })), STATUSES);
}

async function main() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'pool-dashboard-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    timeout: 60_000,
  });
  const page = context.pages()[0] || await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    // Failed requests (a 503 claim, a 409 retry) are logged by Chromium too; they are not script errors.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${msg.text()}`);
  });
  page.on('dialog', (dialog) => dialog.accept()); // production confirm()s

  try {
    await step('open', async () => {
      const res = await page.goto(`${base}/`, { waitUntil: 'load', timeout: 30_000 });
      if (!res || !res.ok()) fail('open', `GET / answered ${res ? res.status() : 'nothing'}`);
      await page.locator('#key-input').waitFor({ state: 'visible', timeout: 10_000 });
      const env = (await page.locator('#env-badge').textContent()).trim();
      return `page loaded, environment ${env}`;
    });

    await step('api key', async () => {
      await page.fill('#key-input', apiKey);
      await page.click('#key-save');
      // The page checks the key with its first authenticated request; a wrong one is
      // dropped again and #key-error explains why.
      await page.waitForFunction(() => document.getElementById('key-panel').hidden
        && document.querySelector('#jobs tr'), null, { timeout: 10_000 }).catch(() => {});
      if (await page.locator('#key-error').isVisible()) {
        fail('api key', `the page rejected the key: ${(await page.locator('#key-error').textContent()).trim()}`);
      }
      if (await page.locator('#key-input').isVisible()) fail('api key', 'the key form is still shown after saving');
      const stored = await page.evaluate(() => Object.values(sessionStorage));
      if (!stored.includes(apiKey)) fail('api key', 'the key is not in sessionStorage');
      if (page.url().includes(apiKey)) fail('api key', 'the key leaked into the URL');
      return 'key kept in sessionStorage';
    });

    await step('counts', async () => {
      let last = '';
      for (let i = 0; i < 15; i += 1) {
        const [before, shown, after] = [await fetchCounts(), await readCounts(page), await fetchCounts()];
        const matches = (api) => STATUSES.every((s) => shown[s] === String(api[s]));
        if (matches(before) || matches(after)) return STATUSES.map((s) => `${s}=${shown[s]}`).join(' ');
        last = `page ${JSON.stringify(shown)} vs API ${JSON.stringify(after)}`;
        await sleep(1000);
      }
      fail('counts', `count cards never matched GET /api/pool/counts: ${last}`);
    });

    await step('claim', async () => {
      await page.fill('#claim-agent-name', 'Browser test');
      await page.click('#claim-submit');
      const invite = page.locator('#invite-url');
      try {
        await invite.waitFor({ state: 'visible', timeout: 60_000 });
      } catch {
        const result = await page.locator('#claim-result').textContent().catch(() => '');
        const notice = await page.locator('#notice').textContent().catch(() => '');
        fail('claim', `no #invite-url within 60 s (result: ${result.trim() || '—'}; notice: ${notice.trim() || '—'})`);
      }
      const url = (await invite.textContent()).trim();
      if (!/^https?:\/\/\S+$/.test(url)) fail('claim', `#invite-url shows "${url}", not a URL`);
      return `invite ${url}`;
    });

    let jobId;
    await step('failed job', async () => {
      const row = page.locator('#jobs tr[data-status="failed"]').first();
      try {
        await row.waitFor({ state: 'attached', timeout: 30_000 });
      } catch {
        fail('failed job', 'no job row with data-status="failed" appeared within 30 s');
      }
      jobId = await row.getAttribute('data-job-id');
      if (!jobId) fail('failed job', 'the failed row has no data-job-id');
      return `found job ${jobId}`;
    });

    await step('retry', async () => {
      const row = page.locator(`#jobs tr[data-job-id="${jobId}"]`);
      await row.locator('button.retry').click({ timeout: 10_000 });
      try {
        await page.waitForFunction((id) => {
          const tr = document.querySelector(`#jobs tr[data-job-id="${CSS.escape(id)}"]`);
          return tr && tr.dataset.status !== 'failed';
        }, jobId, { timeout: 15_000, polling: 100 });
      } catch {
        const notice = await page.locator('#notice').textContent().catch(() => '');
        fail('retry', `job ${jobId} still shows failed after Retry (notice: ${notice.trim() || '—'})`);
      }
      return `job ${jobId} is now ${await row.getAttribute('data-status')}`;
    });

    if (pageErrors.length) fail('page errors', pageErrors.join('; '));

    if (screenshotDir) {
      mkdirSync(screenshotDir, { recursive: true });
      const path = join(screenshotDir, 'dashboard.png');
      await page.screenshot({ path, fullPage: true });
      log('screenshot', path);
    }
  } catch (err) {
    if (screenshotDir) {
      mkdirSync(screenshotDir, { recursive: true });
      await page.screenshot({ path: join(screenshotDir, 'failure.png'), fullPage: true }).catch(() => {});
    }
    throw err;
  } finally {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => {
  log('done', 'all steps passed');
  process.exit(0);
}, (err) => {
  console.error(`[dashboard] FAILED ${err instanceof StepError ? err.message : err.stack || err}`);
  process.exit(1);
});
