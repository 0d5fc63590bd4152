// Pool dashboard, shared helpers: DOM building (text only, never innerHTML with
// data), formatting, notices, the API key (sessionStorage only) and the API client.
// Plain scripts loaded with `defer` in order share these top-level names.
'use strict';

const KEY_STORAGE = 'pool.apiKey';
const INSTANCE_STATUSES = ['provisioning', 'idle', 'claiming', 'claimed', 'crashed', 'draining'];
const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** Page-wide state; each panel keeps its own next to its code. */
const state = { environment: null, noticeTimer: null };

const $ = (id) => document.getElementById(id);

// ---------- DOM helpers ----------

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

// ---------- formatting ----------

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return d.toDateString() === new Date().toDateString() ? time
    : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

/** "45s", "3m", "2h", "5d": how long ago `iso` was. */
function fmtAge(iso) {
  if (!iso) return '';
  const ms = Date.now() - new Date(iso).getTime();
  if (Number.isNaN(ms)) return '';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function shortId(id) { return id && id.length > 12 ? `${id.slice(0, 8)}…${id.slice(-4)}` : (id || ''); }

function prettyJson(value) { return value == null ? '—' : JSON.stringify(value, null, 2); }

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

// A read the server shed (503 `busy`: too many expensive reads at once) is tried
// again after its Retry-After, a few times, before it counts as an error.
const BUSY_RETRIES = 3;

async function api(method, path, options = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await apiOnce(method, path, options);
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'busy' || attempt >= BUSY_RETRIES) throw err;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function apiOnce(method, path, { body, wait } = {}) {
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

// Keeps tbody's rows in the order of `items` (keyed by `item[key]`), creating each row
// once and refreshing it with `update(tr, item)`; shows `emptyText` when there are none.
function syncRows(tbody, items, update, emptyText, key = 'id') {
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
    const id = item[key];
    let tr = existing.get(id);
    if (tr) existing.delete(id); else tr = el('tr', { dataset: { key: id } });
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

/** Rebuilds a cell's children only when `signature` changed (keeps focus otherwise). */
function setActions(td, signature, build, cls = 'actions') {
  if (td.dataset.sig === signature) return;
  td.dataset.sig = signature;
  td.className = cls;
  td.replaceChildren(...build());
}

function actionButton(label, cls, handler, ariaLabel) {
  const props = { type: 'button', class: `btn btn-sm ${cls}`, text: label,
    onclick: async (ev) => {
      const btn = ev.currentTarget;
      btn.disabled = true;
      try { await handler(); } finally { btn.disabled = false; }
    } };
  if (ariaLabel) props['aria-label'] = ariaLabel;
  return el('button', props);
}

function monoCell(td, value, full) {
  td.className = 'mono';
  setText(td, value || '—');
  setAttr(td, 'title', full || value || null);
}

/** A long error as a button that expands it in place (keyboard reachable). */
function errorCell(td, text) {
  setActions(td, 'error', () => [el('button', { type: 'button', class: 'err-text', 'aria-expanded': 'false',
    onclick: (ev) => {
      const b = ev.currentTarget;
      b.setAttribute('aria-expanded', String(b.classList.toggle('expanded')));
    } })], 'err');
  const button = td.firstChild;
  setText(button, text || '');
  button.hidden = !text;
  setAttr(button, 'title', text ? `${text}\n(click to expand)` : null);
}

function badge(cls, text) { return el('span', { class: `badge ${cls}`, text }); }
