// Pool dashboard: one job in a modal <dialog> at #job/<id> (so a detail URL opens it
// directly) — kind, status, attempts, args, result, error, timestamps, the attempt
// history, and Retry/Cancel. Escape or Close shuts it and returns focus to its opener.
'use strict';

const detailState = { id: null, job: null, opener: null, gen: 0, error: null };

const OUTCOME_BADGE = { retry: 'b-retry', lost: 'b-lost', failed: 'b-failed', cancelled: 'b-cancelled',
  succeeded: 'b-succeeded', running: 'b-running' };

/** The job id of the current URL (`#job/<id>`), or null. */
function routedJobId() {
  const m = /^#job\/([^/?#]+)$/.exec(location.hash);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch { return null; }
}

function updateHistoryRow(tr, h) {
  const c = cells(tr, 6);
  tr.dataset.outcome = h.outcome;
  c[0].className = 'num';
  setText(c[0], h.run);
  setActions(c[1], `o:${h.outcome}`, () => [badge(OUTCOME_BADGE[h.outcome] || 'b-queued', h.outcome)], '');
  errorCell(c[2], h.error);
  monoCell(c[3], h.worker);
  for (const [i, at] of [[4, h.startedAt], [5, h.finishedAt]]) {
    setText(c[i], at ? fmtTime(at) : '—');
    setAttr(c[i], 'title', at || null);
    c[i].className = 'nowrap';
  }
}

function renderDetail() {
  const d = detailState;
  const job = d.job;
  setText($('jd-id'), d.id || '');
  const message = $('jd-message');
  message.hidden = !(d.error || !job);
  setText(message, d.error ? `Could not load the job: ${d.error}` : job ? '' : 'Loading…');
  $('jd-content').hidden = !job;
  $('jd-retry').hidden = !(job && (job.status === 'failed' || job.status === 'cancelled'));
  $('jd-cancel').hidden = !(job && (job.status === 'queued' || job.status === 'running'));
  if (!job) return;
  setText($('jd-kind'), job.kind);
  const status = $('jd-status');
  status.className = `badge b-${job.status}`;
  setText(status, job.status);
  $('job-dialog').dataset.status = job.status;
  setText($('jd-attempts'), `${job.attempts} of ${job.maxAttempts}`);
  for (const [id, at] of [['jd-created', job.createdAt], ['jd-run-at', job.runAt],
    ['jd-started', job.startedAt], ['jd-finished', job.finishedAt]]) {
    setText($(id), at ? fmtTime(at) : '—');
    setAttr($(id), 'title', at || null);
  }
  setText($('jd-error'), job.error || '—');
  $('jd-error').classList.toggle('has-error', Boolean(job.error));
  setText($('jd-args'), prettyJson(job.args));
  setText($('jd-result'), prettyJson(job.result));
  const history = Array.isArray(job.history) ? job.history : [];
  setText($('jd-history-count'), history.length);
  syncRows($('jd-history'), history.map((h) => ({ ...h, key: String(h.run) })), updateHistoryRow,
    'No attempts yet.', 'key');
}

async function loadDetail() {
  const d = detailState;
  const id = d.id;
  const gen = ++d.gen;
  try {
    const { data } = await api('GET', `/api/jobs/${encodeURIComponent(id)}`);
    if (gen !== d.gen || id !== d.id) return;
    d.job = data;
    d.error = null;
  } catch (err) {
    if (gen !== d.gen || id !== d.id) return;
    d.error = err.status === 404 ? `no job ${id}` : err.message;
  }
  renderDetail();
}

/** Opens the panel for `id` (called by the hash router). Without the key it waits:
 *  the key form is outside the modal panel, and saving the key routes again. */
function openJobDetail(id) {
  const d = detailState;
  const dialog = $('job-dialog');
  if (!dialog.open && !requireKey()) return;
  if (!dialog.open) {
    const active = document.activeElement;
    d.opener = active && active !== document.body ? active : null;
  }
  if (d.id !== id) { d.id = id; d.job = null; d.error = null; }
  renderDetail();
  if (!dialog.open) {
    dialog.showModal();
    $('jd-close').focus();
  }
  loadDetail();
}

/** Live refresh while the panel is open and the job can still change. */
function refreshDetail() {
  const d = detailState;
  if (!$('job-dialog').open || !d.id || !getKey()) return Promise.resolve();
  if (d.job && TERMINAL.has(d.job.status) && !d.error) return Promise.resolve();
  return loadDetail();
}

async function detailAction(action) {
  const d = detailState;
  if (!d.id) return;
  const done = await jobAction(d.id, action);
  if (done) {
    d.job = { ...done, history: d.job ? d.job.history : [] };
    renderDetail();
    await loadDetail(); // the answer of an action carries no history
  }
  // Retry or Cancel may have just hidden itself: keep focus inside the panel.
  if (!$('job-dialog').contains(document.activeElement)) $('jd-close').focus();
}

function onDetailClosed() {
  const d = detailState;
  const id = d.id;
  d.id = null; d.job = null; d.error = null; d.gen += 1;
  if (routedJobId() !== null) history.replaceState(null, '', `${location.pathname}${location.search}`);
  // Back to what opened the panel: the same link, or its row's fresh link.
  let target = d.opener && d.opener.isConnected ? d.opener : null;
  if (!target && id) target = $('jobs').querySelector(`tr[data-job-id="${CSS.escape(id)}"] a.job-link`);
  d.opener = null;
  if (target) target.focus();
}

/** Hash routing: `#job/<id>` opens the panel; anything else closes it. */
function route() {
  const id = routedJobId();
  const dialog = $('job-dialog');
  if (id) openJobDetail(id);
  else if (dialog.open) dialog.close();
}

function wireJobDetail() {
  const dialog = $('job-dialog');
  dialog.addEventListener('close', onDetailClosed);
  $('jd-close').addEventListener('click', () => dialog.close());
  for (const action of ['retry', 'cancel']) {
    $(`jd-${action}`).addEventListener('click', async (ev) => {
      const btn = ev.currentTarget;
      btn.disabled = true;
      try { await detailAction(action); } finally { btn.disabled = false; }
    });
  }
  window.addEventListener('hashchange', route);
}
