// Pool dashboard: vanilla JS over the same-origin JSON API. All data is inserted
// with textContent; the API key lives in sessionStorage only.
'use strict';

const KEY_STORAGE = 'pool.apiKey';
const REFRESH_MS = 2000;
const COUNT_STATUSES = ['provisioning', 'idle', 'claiming', 'claimed', 'crashed', 'draining'];
const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const JOB_KINDS = ['provision_instance', 'claim_and_provision', 'replenish', 'drain_idle',
  'kill_instance', 'dismiss_crashed', 'reconcile', 'enrich_metadata'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

const state = {
  environment: null,
  jobs: { gen: 0, head: [], tail: [], headNext: null, tailNext: null, error: null },
  timer: null,
  noticeTimer: null,
};

const $ = (id) => document.getElementById(id);

// ---------- DOM helpers (text only, never innerHTML with data) ----------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function setText(node, text) {
  const value = text == null ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function setAttr(node, name, value) {
  if (value == null) { if (node.hasAttribute(name)) node.removeAttribute(name); }
  else if (node.getAttribute(name) !== String(value)) node.setAttribute(name, value);
}

function safeHref(url) {
  try { const u = new URL(url, location.href); return /^https?:$/.test(u.protocol) ? u.href : null; }
  catch { return null; }
}

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return d.toDateString() === new Date().toDateString() ? time
    : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

function shortId(id) { return id && id.length > 12 ? `${id.slice(0, 8)}…${id.slice(-4)}` : (id || ''); }

// ---------- notices ----------

function notify(kind, message) {
  clearTimeout(state.noticeTimer);
  const box = $('notice');
  box.className = `notice notice-${kind}`;
  setText($('notice-text'), message);
  box.hidden = false;
  if (kind !== 'error') state.noticeTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

function notifyError(err, what) {
  const msg = err && err.message ? err.message : String(err);
  notify('error', what ? `${what}: ${msg}` : msg);
}

// ---------- API key ----------

function getKey() { return sessionStorage.getItem(KEY_STORAGE) || ''; }

function showKeyState(errorText) {
  const has = Boolean(getKey());
  setText($('key-status'), has ? 'API key set' : 'No API key');
  $('key-status').classList.toggle('ok', has);
  $('key-forget').hidden = !has;
  $('key-panel').hidden = has;
  const error = $('key-error');
  error.hidden = !errorText;
  setText(error, errorText || '');
}

function onUnauthorized() {
  sessionStorage.removeItem(KEY_STORAGE);
  showKeyState('The API key was rejected (401). Check it and enter it again.');
  $('key-input').focus();
}

function requireKey() {
  if (getKey()) return true;
  showKeyState();
  notify('error', 'Enter the API key first.');
  $('key-input').focus();
  return false;
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, { body, wait } = {}) {
  const headers = { Accept: 'application/json' };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (wait) headers.Prefer = `wait=${wait}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the server (${e.message})`);
  }
  let data = null;
  try { data = await res.json(); } catch { /* empty or non-JSON body */ }
  if (!res.ok) {
    if (res.status === 401 && key) onUnauthorized();
    const message = data && data.error ? data.error : `HTTP ${res.status} ${res.statusText}`;
    throw new ApiError(res.status, data && data.code, message);
  }
  return { status: res.status, data };
}

function confirmDestructive(message) {
  return state.environment !== 'production' || window.confirm(`PRODUCTION: ${message}`);
}

// ---------- keyed table rows, updated in place ----------

// Keeps tbody's rows in the order of `items` (keyed by `item.id`), creating each row
// once and refreshing it with `update(tr, item)`; shows `emptyText` when there are none.
function syncRows(tbody, items, update, emptyText) {
  const existing = new Map();
  for (const tr of tbody.querySelectorAll('tr[data-key]')) existing.set(tr.dataset.key, tr);
  const empty = tbody.querySelector('tr.empty');
  if (items.length === 0) {
    for (const tr of existing.values()) tr.remove();
    if (!empty) tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: '99', text: emptyText })));
    else setText(empty.firstChild, emptyText);
    return;
  }
  if (empty) empty.remove();
  let prev = null;
  for (const item of items) {
    let tr = existing.get(item.id);
    if (tr) existing.delete(item.id); else tr = el('tr', { dataset: { key: item.id } });
    update(tr, item);
    const wanted = prev ? prev.nextSibling : tbody.firstChild;
    if (wanted !== tr) tbody.insertBefore(tr, wanted);
    prev = tr;
  }
  for (const tr of existing.values()) tr.remove();
}

function cells(tr, n) {
  while (tr.children.length < n) tr.append(el('td'));
  return tr.children;
}

function setActions(td, signature, build, cls = 'actions') {
  if (td.dataset.sig === signature) return;
  td.dataset.sig = signature;
  td.className = cls;
  td.replaceChildren(...build());
}

function actionButton(label, cls, handler) {
  return el('button', { type: 'button', class: `btn btn-sm ${cls}`, text: label,
    onclick: async (ev) => {
      const btn = ev.currentTarget;
      btn.disabled = true;
      try { await handler(); } finally { btn.disabled = false; }
    } });
}

// ---------- counts and environment ----------

async function refreshCounts() {
  const live = $('live');
  try {
    const { data } = await api('GET', '/api/pool/counts');
    for (const s of COUNT_STATUSES) setText($(`count-${s}`), data[s] ?? 0);
    live.className = 'live live-ok';
    setText($('live-text'), 'Live');
  } catch (err) {
    live.className = 'live live-down';
    setText($('live-text'), 'Offline');
    throw err;
  }
}

async function loadVersion() {
  try {
    const { data } = await api('GET', '/version');
    const env = state.environment = String(data.environment || 'unknown');
    const cls = `env-${env === 'production' || env === 'staging' ? env : 'other'}`;
    for (const id of ['env-badge', 'env-name']) { setText($(id), env); $(id).className = `${id} ${cls}`; }
    document.body.classList.toggle('is-production', env === 'production');
    setText($('version'), `v${data.version}`);
    setText($('env-version'), data.version);
    setText($('env-commit'), data.commit);
    setText($('env-confirm'), env === 'production' ? 'Kill, dismiss, drain and cancel ask first' : 'Off outside production');
  } catch (err) { notifyError(err, 'Could not load /version'); }
}

// ---------- agents ----------

// verb: 'Kill' (DELETE /api/pool/instances/:id) or 'Dismiss' (DELETE /api/pool/crashed/:id).
async function agentAction(verb, a) {
  const label = a.name || a.id;
  if (!requireKey() || !confirmDestructive(`${verb.toLowerCase()} instance ${label}?`)) return;
  const path = verb === 'Kill' ? 'instances' : 'crashed';
  await mutate('DELETE', `/api/pool/${path}/${encodeURIComponent(a.id)}`, undefined, `${verb} ${label}`);
}

function agentCell(td, a) {
  if (!td.firstChild) td.append(el('div', { class: 'strong' }), el('div', { class: 'sub mono' }));
  setText(td.children[0], a.agentName || '—');
  setText(td.children[1], a.name || '');
}

function monoCell(td, value, full) {
  td.className = 'mono';
  setText(td, value || '—');
  setAttr(td, 'title', full || value || null);
}

function updateClaimedRow(tr, a) {
  const c = cells(tr, 6);
  agentCell(c[0], a);
  monoCell(c[1], shortId(a.id), a.id);
  monoCell(c[2], shortId(a.conversationId), a.conversationId);
  setText(c[3], fmtTime(a.claimedAt));
  setAttr(c[3], 'title', a.claimedAt);
  const href = a.inviteUrl ? safeHref(a.inviteUrl) : null;
  setActions(c[4], `invite:${href}`, () => (href
    ? [el('a', { href, target: '_blank', rel: 'noopener noreferrer', class: 'link', text: 'Open invite' })]
    : [el('span', { class: 'muted', text: getKey() ? '—' : 'key needed' })]), '');
  setActions(c[5], 'kill', () => [actionButton('Kill', 'btn-danger-outline kill', () => agentAction('Kill', tr.agent))]);
  tr.agent = a;
}

function updateCrashedRow(tr, a) {
  const c = cells(tr, 5);
  agentCell(c[0], a);
  monoCell(c[1], shortId(a.id), a.id);
  monoCell(c[2], shortId(a.conversationId), a.conversationId);
  setText(c[3], fmtTime(a.createdAt));
  setAttr(c[3], 'title', a.createdAt);
  setActions(c[4], 'crashed', () => [
    actionButton('Dismiss', 'dismiss', () => agentAction('Dismiss', tr.agent)),
    actionButton('Kill', 'btn-danger-outline kill', () => agentAction('Kill', tr.agent)),
  ]);
  tr.agent = a;
}

async function refreshAgents() {
  // The dashboard never shows instructions: leave them out (up to 64 KiB each).
  const { data } = await api('GET', '/api/pool/agents?instructions=false&limit=500');
  const claimed = data.claimed || [];
  const crashed = data.crashed || [];
  setText($('claimed-count'), claimed.length);
  setText($('crashed-count'), crashed.length);
  syncRows($('agents-claimed'), claimed, updateClaimedRow, 'No claimed agents.');
  syncRows($('agents-crashed'), crashed, updateCrashedRow, 'No crashed instances.');
}

// ---------- jobs ----------

function jobsQuery(before) {
  const q = new URLSearchParams({ limit: '50' });
  if ($('jobs-status').value) q.set('status', $('jobs-status').value);
  if ($('jobs-kind').value) q.set('kind', $('jobs-kind').value);
  if (before) q.set('before', before);
  return `/api/jobs?${q}`;
}

function updateJobRow(tr, job) {
  const c = cells(tr, 7);
  tr.dataset.jobId = job.id;
  tr.dataset.status = job.status;
  setText(c[0], fmtTime(job.createdAt));
  setAttr(c[0], 'title', `created ${job.createdAt || '?'}\nstarted ${job.startedAt || '—'}\nfinished ${job.finishedAt || '—'}`);
  c[0].className = 'nowrap';
  monoCell(c[1], job.kind);
  setActions(c[2], `status:${job.status}`, () => [el('span', { class: `badge b-${job.status}`, text: job.status })], '');
  setText(c[3], `${job.attempts}/${job.maxAttempts}`);
  c[3].className = 'num';
  setActions(c[4], 'error', () => [el('span', { class: 'err-text',
    onclick: (ev) => ev.currentTarget.classList.toggle('expanded') })], 'err');
  setText(c[4].firstChild, job.error || '');
  setAttr(c[4].firstChild, 'title', job.error ? `${job.error}\n(click to expand)` : null);
  monoCell(c[5], shortId(job.id), job.id);
  const canRetry = job.status === 'failed' || job.status === 'cancelled';
  const canCancel = job.status === 'queued' || job.status === 'running';
  setActions(c[6], `${canRetry}:${canCancel}`, () => [
    ...(canRetry ? [actionButton('Retry', 'retry', () => jobAction(job.id, 'retry'))] : []),
    ...(canCancel ? [actionButton('Cancel', 'btn-danger-outline cancel', () => jobAction(job.id, 'cancel'))] : []),
  ]);
}

function renderJobs() {
  const j = state.jobs;
  const headIds = new Set(j.head.map((x) => x.id));
  const all = j.head.concat(j.tail.filter((x) => !headIds.has(x.id)));
  const emptyText = !getKey() ? 'Enter the API key to see jobs.'
    : j.error ? `Could not load jobs: ${j.error}` : 'No jobs match.';
  syncRows($('jobs'), all, updateJobRow, emptyText);
  $('jobs-more').hidden = !(j.tail.length ? j.tailNext : j.headNext);
}

function renderTotals(totals) {
  const box = $('jobs-totals');
  if (!box.firstChild) {
    for (const s of JOB_STATUSES) {
      box.append(el('button', { type: 'button', class: `pill b-${s}`, dataset: { status: s },
        title: `Show ${s} jobs`, onclick: () => setStatusFilter(s) }, el('span', { text: s }), el('strong')));
    }
  }
  for (const pill of box.children) {
    setText(pill.lastChild, totals ? totals[pill.dataset.status] ?? 0 : '–');
    pill.classList.toggle('active', $('jobs-status').value === pill.dataset.status);
  }
}

async function refreshJobs() {
  const j = state.jobs;
  if (!getKey()) { j.head = []; j.tail = []; renderJobs(); renderTotals(null); return; }
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
  renderJobs();
  renderTotals(data.totals);
}

async function loadMoreJobs() {
  const j = state.jobs;
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
  const j = state.jobs;
  j.gen += 1; j.head = []; j.tail = []; j.headNext = null; j.tailNext = null;
  $('jobs').replaceChildren();
  refreshJobs().catch((err) => notifyError(err, 'Loading jobs failed'));
}

async function jobAction(id, action) {
  if (!requireKey()) return;
  if (action === 'cancel' && !confirmDestructive(`cancel job ${id}?`)) return;
  try {
    const { data } = await api('POST', `/api/jobs/${encodeURIComponent(id)}/${action}`);
    state.jobs.gen += 1; // a list fetched before this answer must not undo it
    for (const list of [state.jobs.head, state.jobs.tail]) {
      const i = list.findIndex((x) => x.id === id);
      if (i >= 0) list[i] = data;
    }
    renderJobs();
    notify('success', `Job ${id} ${action === 'retry' ? 're-queued' : 'cancelled'} (${data.status}).`);
  } catch (err) { notifyError(err, `${action === 'retry' ? 'Retry' : 'Cancel'} of job ${id} failed`); }
}

// ---------- pool controls ----------

async function mutate(method, path, body, what) {
  if (!requireKey()) return null;
  try {
    const { data } = await api(method, path, { body });
    notify('success', `${what}: job ${data.id} queued.`);
    refreshAll();
    return data;
  } catch (err) { notifyError(err, `${what} failed`); return null; }
}

function readCount(input, optional) {
  const raw = input.value.trim();
  if (raw === '' && optional) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 20) throw new Error('count must be a whole number from 1 to 20');
  return n;
}

function wireControls() {
  const submit = (formId, handler) => $(formId).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = ev.currentTarget.querySelector('button[type=submit]');
    btn.disabled = true;
    try { await handler(); } catch (err) { notifyError(err); } finally { btn.disabled = false; }
  });
  submit('replenish-form', async () => {
    const count = readCount($('replenish-count'), true);
    await mutate('POST', '/api/pool/replenish', count === undefined ? {} : { count }, 'Replenish');
  });
  submit('drain-form', async () => {
    const count = readCount($('drain-count'), false);
    if (!confirmDestructive(`drain ${count} instance(s)?`)) return;
    await mutate('POST', '/api/pool/drain', { count }, 'Drain');
  });
  submit('reconcile-form', () => mutate('POST', '/api/pool/reconcile', {}, 'Reconcile'));
}

// ---------- claim ----------

function claimStatus(text, busy) {
  setText($('claim-status'), text);
  $('claim-status').classList.toggle('busy', Boolean(busy));
}

function showClaimResult(kind, nodes) {
  const box = $('claim-result');
  box.className = `claim-result claim-${kind}`;
  box.replaceChildren(...nodes);
  box.hidden = false;
}

function kv(label, value) {
  return el('div', { class: 'kv' }, el('span', { class: 'muted', text: label }), el('span', { class: 'mono', text: value || '—' }));
}

async function submitClaim(ev) {
  ev.preventDefault();
  if (!requireKey()) return;
  const body = {};
  const name = $('claim-agent-name').value.trim();
  const instructions = $('claim-instructions').value;
  const joinUrl = $('claim-join-url').value.trim();
  if (name) body.agentName = name;
  if (instructions.trim()) body.instructions = instructions;
  if (joinUrl) body.joinUrl = joinUrl;
  $('claim-submit').disabled = true;
  $('claim-result').hidden = true;
  claimStatus('Claiming…', true);
  try {
    let { data: job } = await api('POST', '/api/pool/claim', { body, wait: 60 });
    refreshAll();
    while (!TERMINAL.has(job.status)) {
      claimStatus(`Job ${job.id}: ${job.status}…`, true);
      ({ data: job } = await api('GET', `/api/jobs/${encodeURIComponent(job.id)}`, { wait: 30 }));
    }
    claimStatus(`Job ${job.id}: ${job.status}`);
    if (job.status === 'succeeded') {
      const r = job.result || {};
      const href = safeHref(r.inviteUrl);
      const link = href ? el('a', { id: 'invite-url', href, target: '_blank', rel: 'noopener noreferrer', class: 'link', text: r.inviteUrl })
        : el('span', { id: 'invite-url', text: r.inviteUrl || '(no invite URL)' });
      showClaimResult('ok', [el('div', { class: 'kv' }, el('span', { class: 'muted', text: 'Invite' }), link),
        kv('Conversation', r.conversationId), kv('Instance', r.instanceId)]);
    } else {
      const msg = `Claim job ${job.id} ${job.status}: ${job.error || 'no error message'}`;
      showClaimResult('error', [el('div', { text: msg })]);
      notify('error', msg);
    }
  } catch (err) {
    claimStatus('');
    const msg = err.code === 'no_idle_instance'
      ? 'No idle instance right now — the pool is replenishing. Try again in a few seconds.'
      : `Claim failed: ${err.message}`;
    showClaimResult('error', [el('div', { text: msg })]);
    notify('error', msg);
  } finally {
    $('claim-submit').disabled = false;
    refreshAll();
  }
}

// ---------- live refresh ----------

async function refreshAll() {
  const results = await Promise.allSettled([refreshCounts(), refreshAgents(), refreshJobs()]);
  const failed = results.find((r) => r.status === 'rejected' && r.reason && r.reason.status !== 401);
  const live = $('live');
  if (failed && live.classList.contains('live-ok')) {
    live.className = 'live live-warn';
    setText($('live-text'), 'Degraded');
    live.title = failed.reason.message;
  } else if (!failed) live.title = 'Counts, agents and jobs refresh every 2 seconds';
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(tick, REFRESH_MS);
}

async function tick() {
  if (document.hidden) { setText($('live-text'), 'Paused'); $('live').className = 'live'; return; }
  try { await refreshAll(); } finally { schedule(); }
}

// ---------- start ----------

function init() {
  for (const s of JOB_STATUSES) $('jobs-status').append(el('option', { value: s, text: s }));
  for (const k of JOB_KINDS) $('jobs-kind').append(el('option', { value: k, text: k }));
  $('jobs-status').addEventListener('change', onFiltersChanged);
  $('jobs-kind').addEventListener('change', onFiltersChanged);
  $('jobs-more').addEventListener('click', loadMoreJobs);
  $('notice-close').addEventListener('click', () => { $('notice').hidden = true; });
  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('key-input').value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $('key-input').value = '';
    $('notice').hidden = true;
    showKeyState();
    onFiltersChanged();
    refreshAll();
  });
  $('key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyState();
    refreshAll();
  });
  $('claim-form').addEventListener('submit', submitClaim);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
  wireControls();
  showKeyState();
  renderTotals(null);
  loadVersion();
  tick();
}

init();
