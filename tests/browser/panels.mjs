// Steps for the operator panels: charts, the fleet table, the job detail panel, bulk
// retry and pausing a kind. Each takes { page, api, base, fixtures, screenshotDir }
// and returns a one-line summary or throws.

import { fail, screenshot, until } from './harness.mjs';

const CHARTS = 5;

async function chartState(page) {
  return page.evaluate(() => {
    const box = document.getElementById('charts');
    return {
      range: box.dataset.range || null,
      points: Number(box.dataset.points || -1),
      plots: box.querySelectorAll('.uplot').length,
      canvases: box.querySelectorAll('.uplot canvas').length,
      pressed: [...document.querySelectorAll('#chart-range button[aria-pressed="true"]')].map((b) => b.dataset.range),
      note: document.getElementById('charts-note').textContent.trim(),
    };
  });
}

/** Charts drawn from GET /api/stats for `range`, and the toggle shows that range. */
async function expectRange(page, api, range) {
  const stats = await api(`/api/stats?range=${range}`);
  const shown = await until(15_000, async () => {
    const s = await chartState(page);
    return s.range === range && s.canvases >= CHARTS ? s : null;
  });
  const s = shown || await chartState(page);
  if (!shown) fail('charts', `no ${range} charts within 15 s: ${JSON.stringify(s)}`);
  if (s.plots < CHARTS) fail('charts', `${s.plots} uPlot charts, expected ${CHARTS}`);
  if (s.pressed.join() !== range) fail('charts', `aria-pressed buttons: ${s.pressed.join() || 'none'}, expected ${range}`);
  // The range moves on by a minute now and then: allow the page's fetch to be one off.
  if (Math.abs(s.points - stats.t.length) > 1) fail('charts', `${s.points} points drawn, the API has ${stats.t.length}`);
  return `${range}: ${s.plots} charts, ${s.points} points`;
}

export async function charts({ page, api }) {
  const hour = await expectRange(page, api, 'hour');
  await page.locator('#chart-range button[data-range="day"]').click();
  const day = await expectRange(page, api, 'day');
  await page.locator('#chart-range button[data-range="hour"]').click();
  await expectRange(page, api, 'hour');
  return `${hour}; ${day}; back to hour`;
}

/** The fleet table lists what GET /api/pool/instances does, filtered or not. */
export async function fleet({ page, api }) {
  const shownIds = () => page.evaluate(() => [...document.querySelectorAll('#fleet tr[data-key]')]
    .map((tr) => `${tr.dataset.key}:${tr.dataset.status}`).sort().join());
  const compare = async (query) => {
    let last = '';
    const ok = await until(15_000, async () => {
      const before = await api(`/api/pool/instances${query}`);
      const shown = await shownIds();
      const after = await api(`/api/pool/instances${query}`);
      const ids = (doc) => doc.instances.map((i) => `${i.id}:${i.status}`).sort().join();
      const rows = shown ? shown.split(',').length : 0;
      last = `page ${rows} rows vs API total ${after.total} (${ids(after)} / page ${shown})`;
      return [before, after].some((doc) => ids(doc) === shown && rows === Math.min(doc.total, 50)) ? after : null;
    }, 500);
    if (!ok) fail('fleet', `the table never matched GET /api/pool/instances${query}: ${last}`);
    return ok;
  };
  const all = await compare('');
  const range = (await page.locator('#fleet-count').textContent()).trim();
  if (range !== String(all.total)) fail('fleet', `the heading shows ${range}, the API total is ${all.total}`);
  await page.selectOption('#fleet-status', 'idle');
  const idle = await compare('?status=idle');
  await page.selectOption('#fleet-status', '');
  await compare('');
  const orphans = await fleetOrphans({ page, api });
  return `${all.total} instances, ${idle.total} idle, ${orphans} orphaned services`;
}

/** The orphaned services below the fleet match the API's, each with its Railway link. */
async function fleetOrphans({ page, api }) {
  const shown = () => page.evaluate(() => [...document.querySelectorAll('#orphans tr[data-key]')]
    .map((tr) => `${tr.dataset.key}:${tr.querySelectorAll('a.railway-link').length}`).sort().join());
  let last = '';
  const ok = await until(15_000, async () => {
    const doc = await api('/api/pool/instances');
    const want = doc.orphans.map((o) => `${o.serviceId}:${o.railwayUrl ? 1 : 0}`).sort().join();
    const hidden = await page.evaluate(() => document.getElementById('orphans-wrap').hidden);
    last = `page ${await shown()} (hidden: ${hidden}) vs API ${want}`;
    return (await shown()) === want && hidden === (doc.orphans.length === 0) ? doc.orphans : null;
  }, 500);
  if (!ok) fail('fleet', `the orphaned services never matched the API: ${last}`);
  return ok.length;
}

const dialogOpen = (page) => page.evaluate(() => document.getElementById('job-dialog').open);

/** Opens the history job from the list by keyboard, checks it, retries it, Escape. */
export async function jobDetail({ page, fixtures, screenshotDir }) {
  const id = fixtures.history;
  const link = page.locator(`#jobs tr[data-job-id="${id}"] a.job-link`);
  await link.waitFor({ state: 'attached', timeout: 15_000 });
  await link.focus();
  await page.keyboard.press('Enter');
  await page.locator('#job-dialog').waitFor({ state: 'visible', timeout: 5_000 });
  const opened = await page.evaluate(() => location.hash);
  if (opened !== `#job/${id}`) fail('job detail', `the URL's hash is ${opened}, not #job/${id}`);
  const role = await page.getByRole('dialog', { name: `Job ${id}` }).count();
  if (role !== 1) fail('job detail', 'no dialog labelled "Job <id>"');
  const rows = page.locator('#jd-history tr[data-key]');
  if (!await until(10_000, async () => (await rows.count()) >= 2)) {
    fail('job detail', `history shows ${await rows.count()} rows (${(await page.locator('#jd-message').textContent()).trim()})`);
  }
  const facts = await page.evaluate(() => ({
    status: document.getElementById('jd-status').textContent.trim(),
    attempts: document.getElementById('jd-attempts').textContent.trim(),
    kind: document.getElementById('jd-kind').textContent.trim(),
    args: document.getElementById('jd-args').textContent.trim(),
    outcomes: [...document.querySelectorAll('#jd-history tr[data-key]')].map((tr) => tr.dataset.outcome),
  }));
  if (facts.status !== 'failed') fail('job detail', `status ${facts.status}, expected failed`);
  if (facts.outcomes[0] !== 'retry' || facts.outcomes[1] !== 'failed') {
    fail('job detail', `attempt outcomes ${facts.outcomes.join(', ')}, expected retry, failed first`);
  }
  if (!facts.args.startsWith('{')) fail('job detail', `args shown as ${facts.args}`);
  await screenshot(page, screenshotDir, 'job-detail.png');

  await page.locator('#jd-retry').click();
  const status = await until(15_000, async () => {
    const s = await page.locator('#jd-status').textContent();
    return s.trim() !== 'failed' ? s.trim() : null;
  });
  if (!status) fail('job detail', 'the panel still shows failed after its Retry');

  await page.keyboard.press('Escape');
  // The dialog's `close` event (which clears the hash and moves focus) follows its
  // closing in a later task: wait for all three.
  const closed = await until(5_000, async () => !await dialogOpen(page)
    && await page.evaluate(() => location.hash === '' && document.activeElement?.matches('a.job-link')));
  if (!closed) fail('job detail', 'Escape did not close the panel');
  const back = await page.evaluate((jobId) => {
    const a = document.activeElement;
    return Boolean(a && a.matches('a.job-link') && a.closest('tr') && a.closest('tr').dataset.jobId === jobId);
  }, id);
  if (!back) fail('job detail', 'focus did not return to the job link after Escape');
  const hash = await page.evaluate(() => location.hash);
  if (hash) fail('job detail', `the URL still names the job: ${hash}`);
  return `${facts.kind} ${id}: ${facts.outcomes.length} attempts (${facts.outcomes.join(', ')}), retried → ${status}, Escape closed it`;
}

/** A #job/<id> URL opens the panel on load (the key is still in the session). */
export async function jobDetailByUrl({ page, base, fixtures }) {
  const id = fixtures.history;
  await page.goto(`${base}/#job/${id}`, { waitUntil: 'load' });
  await page.reload({ waitUntil: 'load' });
  await page.locator('#job-dialog').waitFor({ state: 'visible', timeout: 10_000 });
  const shown = await until(10_000, async () => {
    const text = (await page.locator('#jd-id').textContent()).trim();
    const hasStatus = (await page.locator('#jd-status').textContent()).trim();
    return text === id && hasStatus ? hasStatus : null;
  });
  if (!shown) fail('job detail by URL', `the panel opened from the URL does not show job ${id}`);
  await page.keyboard.press('Escape');
  if (!await until(5_000, async () => !await dialogOpen(page))) fail('job detail by URL', 'Escape did not close the panel');
  return `opened ${id} (${shown}) from its URL`;
}

/** Filter failed, "Retry all shown", and the fixture's failed jobs are queued again. */
export async function bulkRetry({ page, api, fixtures }) {
  const ids = fixtures.bulk;
  await page.selectOption('#jobs-status', 'failed');
  const listed = await until(15_000, () => page.evaluate((want) => want.every((id) =>
    document.querySelector(`#jobs tr[data-job-id="${CSS.escape(id)}"][data-status="failed"]`)), ids));
  if (!listed) fail('bulk retry', `the failed filter does not list ${ids.join(', ')}`);
  const button = page.locator('#jobs-bulk-retry');
  if (!await button.isVisible()) fail('bulk retry', '"Retry all shown" is not offered for status=failed');
  if (await page.locator('#jobs-bulk-cancel').isVisible()) fail('bulk retry', '"Cancel all shown" is offered for status=failed');
  const label = (await button.textContent()).trim();
  await button.click();
  const gone = await until(15_000, () => page.evaluate((want) => want.every((id) =>
    !document.querySelector(`#jobs tr[data-job-id="${CSS.escape(id)}"]`)), ids));
  if (!gone) fail('bulk retry', `${ids.join(', ')} still listed as failed after "${label}"`);
  const states = [];
  for (const id of ids) states.push((await api(`/api/jobs/${id}`)).status);
  if (states.includes('failed')) fail('bulk retry', `the API still has failed jobs: ${states.join(', ')}`);
  const notice = (await page.locator('#notice-text').textContent()).trim();
  await page.selectOption('#jobs-status', '');
  return `"${label}" → ${notice}; now ${states.join(', ')}`;
}

/** Pause a kind from the "Job kinds" panel, see it marked, resume it. */
export async function pauseKind({ page, api, fixtures }) {
  const kind = fixtures.pauseKind || 'noop';
  const row = page.locator(`#kinds tr[data-kind="${kind}"]`);
  await row.waitFor({ state: 'attached', timeout: 10_000 });
  const marked = (paused) => until(10_000, () => page.evaluate(([k, p]) => {
    const tr = document.querySelector(`#kinds tr[data-kind="${CSS.escape(k)}"]`);
    const option = document.querySelector(`#jobs-kind option[value="${CSS.escape(k)}"]`);
    return tr && tr.dataset.paused === String(p) && option && option.textContent.includes('paused') === p
      && (tr.querySelector('.b-paused') !== null) === p;
  }, [kind, paused]));

  await row.getByRole('button', { name: `Pause ${kind}` }).click();
  if (!await marked(true)) fail('pause kind', `${kind} not shown as paused (row and kind filter) after Pause`);
  const apiPaused = (await api('/api/jobs/kinds')).kinds.find((k) => k.kind === kind);
  if (!apiPaused || !apiPaused.paused) fail('pause kind', `GET /api/jobs/kinds has ${kind} not paused: ${JSON.stringify(apiPaused)}`);

  await row.getByRole('button', { name: `Resume ${kind}` }).click();
  if (!await marked(false)) fail('pause kind', `${kind} still shown as paused after Resume`);
  const apiResumed = (await api('/api/jobs/kinds')).kinds.find((k) => k.kind === kind);
  if (apiResumed.paused) fail('pause kind', `GET /api/jobs/kinds still has ${kind} paused`);
  return `${kind} paused (row, badge, kind filter) and resumed`;
}
