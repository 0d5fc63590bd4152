// Pool dashboard: the job list (filters, totals, paging, retry/cancel per job), its
// bulk actions on everything the filter selects, and links to a job's detail panel.
'use strict';

const jobsState = { gen: 0, head: [], tail: [], headNext: null, tailNext: null, error: null, totals: null };

function jobsQuery(before) {
  const q = new URLSearchParams({ limit: '50' });
  if ($('jobs-status').value) q.set('status', $('jobs-status').value);
  if ($('jobs-kind').value) q.set('kind', $('jobs-kind').value);
  if (before) q.set('before', before);
  return `/api/jobs?${q}`;
}

function jobLink(id) {
  return el('a', { href: `#job/${encodeURIComponent(id)}`, class: 'link mono job-link', text: shortId(id),
    title: id, 'aria-label': `Job ${id}: details` });
}

function updateJobRow(tr, job) {
  const c = cells(tr, 7);
  tr.dataset.jobId = job.id;
  tr.dataset.status = job.status;
  setText(c[0], fmtTime(job.createdAt));
  setAttr(c[0], 'title', `created ${job.createdAt || '?'}\nstarted ${job.startedAt || '—'}\nfinished ${job.finishedAt || '—'}`);
  c[0].className = 'nowrap';
  const held = job.status === 'queued' && kindIsPaused(job.kind);
  setActions(c[1], `kind:${job.kind}:${held}`, () => [el('span', { class: 'mono', text: job.kind }),
    ...(held ? [' ', badge('b-paused', 'paused')] : [])], '');
  setActions(c[2], `status:${job.status}`, () => [badge(`b-${job.status}`, job.status)], '');
  setText(c[3], `${job.attempts}/${job.maxAttempts}`);
  c[3].className = 'num';
  errorCell(c[4], job.error);
  setActions(c[5], `id:${job.id}`, () => [jobLink(job.id)], '');
  const canRetry = job.status === 'failed' || job.status === 'cancelled';
  const canCancel = job.status === 'queued' || job.status === 'running';
  setActions(c[6], `${canRetry}:${canCancel}`, () => [
    ...(canRetry ? [actionButton('Retry', 'retry', () => jobAction(job.id, 'retry'), `Retry job ${job.id}`)] : []),
    ...(canCancel ? [actionButton('Cancel', 'btn-danger-outline cancel', () => jobAction(job.id, 'cancel'),
      `Cancel job ${job.id}`)] : []),
  ]);
}

function renderJobs() {
  const j = jobsState;
  const headIds = new Set(j.head.map((x) => x.id));
  const all = j.head.concat(j.tail.filter((x) => !headIds.has(x.id)));
  const emptyText = !getKey() ? 'Enter the API key to see jobs.'
    : j.error ? `Could not load jobs: ${j.error}` : 'No jobs match.';
  syncRows($('jobs'), all, updateJobRow, emptyText);
  $('jobs-more').hidden = !(j.tail.length ? j.tailNext : j.headNext);
  renderBulk();
}

function renderTotals(totals) {
  const box = $('jobs-totals');
  if (!box.firstChild) {
    for (const s of JOB_STATUSES) {
      box.append(el('button', { type: 'button', class: `pill b-${s}`, dataset: { status: s }, 'aria-pressed': 'false',
        title: `Show ${s} jobs`, onclick: () => setStatusFilter(s) }, el('span', { text: s }), el('strong')));
    }
  }
  for (const pill of box.children) {
    setText(pill.lastChild, totals ? totals[pill.dataset.status] ?? 0 : '–');
    const active = $('jobs-status').value === pill.dataset.status;
    pill.classList.toggle('active', active);
    setAttr(pill, 'aria-pressed', String(active));
  }
}

/** "Retry all shown" / "Cancel all shown": offered for the statuses they apply to. */
function renderBulk() {
  const status = $('jobs-status').value;
  const n = jobsState.totals && status ? jobsState.totals[status] ?? 0 : null;
  const count = n == null ? '' : ` (${n})`;
  const retry = $('jobs-bulk-retry');
  const cancel = $('jobs-bulk-cancel');
  retry.hidden = !getKey() || !(status === 'failed' || status === 'cancelled');
  cancel.hidden = !getKey() || !(status === 'queued' || status === 'running');
  setText(retry, `Retry all shown${count}`);
  setText(cancel, `Cancel all shown${count}`);
  retry.disabled = retry.dataset.busy === '1' || n === 0;
  cancel.disabled = cancel.dataset.busy === '1' || n === 0;
}

async function bulkAction(action) {
  if (!requireKey()) return;
  const status = $('jobs-status').value;
  const kind = $('jobs-kind').value;
  const n = jobsState.totals ? jobsState.totals[status] ?? 0 : '?';
  const what = `${n} ${status} job(s)${kind ? ` of kind ${kind}` : ''}`;
  if (!confirmDestructive(`${action} all ${what}?`)) return;
  const button = $(`jobs-bulk-${action}`);
  button.dataset.busy = '1';
  renderBulk();
  try {
    const body = kind ? { status, kind } : { status };
    const { data } = await api('POST', `/api/jobs/${action}`, { body });
    if (action === 'retry') notify('success', `Re-queued ${data.retried} job(s).`);
    else {
      const stopping = data.stopRequested ? `; ${data.stopRequested} running job(s) asked to stop` : '';
      notify('success', `Cancelled ${data.cancelled} job(s)${stopping}.`);
    }
    onFiltersChanged();
  } catch (err) {
    notifyError(err, `${action === 'retry' ? 'Retry' : 'Cancel'} of ${what} failed`);
  } finally {
    delete button.dataset.busy;
    renderBulk();
  }
}

async function refreshJobs() {
  const j = jobsState;
  if (!getKey()) { j.head = []; j.tail = []; j.totals = null; renderJobs(); renderTotals(null); return; }
  const gen = j.gen;
  let data;
  try {
    ({ data } = await api('GET', jobsQuery()));
  } catch (err) {
    if (gen === j.gen) { j.error = err.message; renderJobs(); }
    throw err;
  }
  if (gen !== j.gen) return; // filters changed or an action answered meanwhile
  j.error = null;
  const fresh = data.jobs || [];
  if (j.tail.length && fresh.length) {
    // Rows pushed off the first page by newer jobs (ids are ULIDs: they sort by time)
    // stay visible above the older pages; rows that left the filter go.
    const oldest = fresh[fresh.length - 1].id;
    const tailIds = new Set(j.tail.map((x) => x.id));
    j.tail = j.head.filter((x) => x.id < oldest && !tailIds.has(x.id)).concat(j.tail);
  }
  j.head = fresh;
  j.headNext = data.nextBefore || null;
  j.totals = data.totals || null;
  renderJobs();
  renderTotals(data.totals);
}

async function loadMoreJobs() {
  const j = jobsState;
  const before = j.tail.length ? j.tailNext : j.headNext;
  if (!before) return;
  const gen = j.gen;
  try {
    const { data } = await api('GET', jobsQuery(before));
    if (gen !== j.gen) return;
    j.tail = j.tail.concat(data.jobs || []);
    j.tailNext = data.nextBefore || null;
    renderJobs();
  } catch (err) { notifyError(err, 'Loading more jobs failed'); }
}

function setStatusFilter(status) {
  const sel = $('jobs-status');
  sel.value = sel.value === status ? '' : status;
  onFiltersChanged();
}

function onFiltersChanged() {
  const j = jobsState;
  j.gen += 1; j.head = []; j.tail = []; j.headNext = null; j.tailNext = null; j.totals = null;
  $('jobs').replaceChildren();
  renderBulk();
  refreshJobs().catch((err) => notifyError(err, 'Loading jobs failed'));
}

/** Puts a fresh job document (from an action or the detail panel) into the list. */
function applyJobDoc(doc) {
  jobsState.gen += 1; // a list fetched before this answer must not undo it
  for (const list of [jobsState.head, jobsState.tail]) {
    const i = list.findIndex((x) => x.id === doc.id);
    if (i >= 0) list[i] = doc;
  }
  renderJobs();
}

/** POST /api/jobs/{id}/retry|cancel; returns the job document or null. */
async function jobAction(id, action) {
  if (!requireKey()) return null;
  if (action === 'cancel' && !confirmDestructive(`cancel job ${id}?`)) return null;
  try {
    const { data } = await api('POST', `/api/jobs/${encodeURIComponent(id)}/${action}`);
    applyJobDoc(data);
    notify('success', `Job ${id} ${action === 'retry' ? 're-queued' : 'cancelled'} (${data.status}).`);
    return data;
  } catch (err) {
    notifyError(err, `${action === 'retry' ? 'Retry' : 'Cancel'} of job ${id} failed`);
    return null;
  }
}

function wireJobs() {
  for (const s of JOB_STATUSES) $('jobs-status').append(el('option', { value: s, text: s }));
  // The kind filter's options come from the server's list of kinds (kinds.js).
  $('jobs-status').addEventListener('change', onFiltersChanged);
  $('jobs-kind').addEventListener('change', onFiltersChanged);
  $('jobs-more').addEventListener('click', loadMoreJobs);
  $('jobs-bulk-retry').addEventListener('click', () => bulkAction('retry'));
  $('jobs-bulk-cancel').addEventListener('click', () => bulkAction('cancel'));
  renderTotals(null);
  renderBulk();
}
