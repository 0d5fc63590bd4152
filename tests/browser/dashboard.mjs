// Drives Pool's dashboard in headless Chromium.
//
//   FIXTURE_JOBS='{"retry":"<id>","history":"<id>","bulk":["<id>",…],"pauseKind":"noop"}' \
//     node tests/browser/dashboard.mjs <baseUrl> <apiKey>
//
// Steps: open /, enter the key, compare the count cards with GET /api/pool/counts,
// the charts (uPlot canvases, the hour/day toggle), the fleet table against
// GET /api/pool/instances, claim an agent through the form, retry a failed job from
// the list, open a job's panel by keyboard (its attempt history, Retry, Escape), open
// a #job/<id> URL directly, retry every failed job at once, pause and resume a kind.
// The FIXTURE_JOBS ids are failed jobs the caller inserted: `retry` (any), `history`
// (2 attempts recorded), `bulk` (no other job may be failed by then). Any script
// error, console error or server error fails the run. Exits 0 on success, 1 with a
// message otherwise. CHROMIUM_PATH overrides the browser (default /usr/bin/chromium);
// SCREENSHOT_DIR, when set, receives dashboard.png and job-detail.png (failure.png
// when a step fails).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { StepError, apiClient, fail, log, screenshot, sleep, step, watchErrors } from './harness.mjs';
import { bulkRetry, charts, fleet, jobDetail, jobDetailByUrl, pauseKind } from './panels.mjs';

const [baseArg, apiKey] = process.argv.slice(2);
let fixtures;
try { fixtures = JSON.parse(process.env.FIXTURE_JOBS || ''); } catch { fixtures = null; }
if (!baseArg || !apiKey || !fixtures || !fixtures.retry || !fixtures.history || !(fixtures.bulk || []).length) {
  console.error('usage: FIXTURE_JOBS=\'{"retry":id,"history":id,"bulk":[id,…],"pauseKind":kind}\' node dashboard.mjs <baseUrl> <apiKey>');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const STATUSES = ['provisioning', 'idle', 'claiming', 'claimed', 'crashed', 'draining'];
const screenshotDir = process.env.SCREENSHOT_DIR;
const api = apiClient(base, apiKey);

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
  const pageErrors = watchErrors(page, base);
  page.on('dialog', (dialog) => dialog.accept()); // production confirm()s
  const ctx = { page, api, base, fixtures, screenshotDir };
  const noErrors = (name) => { if (pageErrors.length) fail(name, `page errors: ${pageErrors.join('; ')}`); };

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
        const [before, shown, after] = [await api('/api/pool/counts'), await readCounts(page), await api('/api/pool/counts')];
        const matches = (c) => STATUSES.every((s) => shown[s] === String(c[s]));
        if (matches(before) || matches(after)) return STATUSES.map((s) => `${s}=${shown[s]}`).join(' ');
        last = `page ${JSON.stringify(shown)} vs API ${JSON.stringify(after)}`;
        await sleep(1000);
      }
      fail('counts', `count cards never matched GET /api/pool/counts: ${last}`);
    });

    await step('warm target', async () => {
      const { buffer } = await api('/api/pool/counts');
      const shown = await page.locator('#buffer-target').textContent();
      if (shown.trim() !== String(buffer.target)) fail('warm target', `page ${shown} vs API ${buffer.target}`);
      const why = await page.locator('#buffer-why').textContent();
      if (!why.startsWith(buffer.mode)) fail('warm target', `reason shown as ${why}`);
      return `${shown.trim()} (${why.trim()})`;
    });

    await step('charts', () => charts(ctx));
    noErrors('charts');
    await step('fleet', () => fleet(ctx));

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

    await step('at a glance', async () => {
      let last = '';
      for (let i = 0; i < 30; i++) {
        const { glance } = await api('/api/pool/counts');
        const shown = (await page.locator('#glance-hour').textContent()).trim();
        const share = Math.round(100 * (glance.hour.boundAtOnceShare ?? 0));
        const want = `${share} % of claims bound at once (${glance.hour.boundAtOnce} of ${glance.hour.claims})`;
        if (glance.hour.claims >= 1 && shown.includes(want)) return shown;
        last = `page "${shown}" vs API ${JSON.stringify(glance.hour)}`;
        await sleep(1000);
      }
      fail('at a glance', `the last hour's figures never matched GET /api/pool/counts: ${last}`);
    });

    const jobId = fixtures.retry;
    await step('failed job', async () => {
      const row = page.locator(`#jobs tr[data-job-id="${jobId}"][data-status="failed"]`);
      try {
        await row.waitFor({ state: 'attached', timeout: 30_000 });
      } catch {
        fail('failed job', `job ${jobId} did not appear as failed in the job list within 30 s`);
      }
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

    await step('job detail', () => jobDetail(ctx));
    await step('job detail by URL', () => jobDetailByUrl(ctx));
    await step('bulk retry', () => bulkRetry(ctx));
    await step('pause kind', () => pauseKind(ctx));

    await step('screenshot', async () => {
      // Charts refresh every 15 s: ask for the hour again so they show this run's claims.
      const note = await page.locator('#charts-note').textContent();
      await page.locator('#chart-range button[data-range="hour"]').click();
      await page.waitForFunction((before) => document.getElementById('charts-note').textContent !== before,
        note, { timeout: 10_000 }).catch(() => {});
      await screenshot(page, screenshotDir, 'dashboard.png', { fullPage: true });
    });
    noErrors('page errors');
  } catch (err) {
    await screenshot(page, screenshotDir, 'failure.png', { fullPage: true }).catch(() => {});
    if (pageErrors.length && err instanceof StepError) err.message += ` (page errors: ${pageErrors.join('; ')})`;
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
