// Pool dashboard: the "Job kinds" panel — queued/running per kind, and pausing or
// resuming a kind (its queued jobs wait; running ones finish). Paused kinds are also
// marked in the job list's kind filter and on its queued rows.
'use strict';

const kindsState = { kinds: [], paused: new Set(), error: null };

function kindIsPaused(kind) { return kindsState.paused.has(kind); }

function updateKindRow(tr, k) {
  const c = cells(tr, 5);
  tr.dataset.kind = k.kind;
  tr.dataset.paused = String(Boolean(k.paused));
  c[0].className = 'mono';
  setText(c[0], k.kind);
  c[1].className = 'num';
  setText(c[1], k.queued ?? 0);
  c[2].className = 'num';
  setText(c[2], k.running ?? 0);
  setActions(c[3], `paused:${k.paused}`, () => [k.paused
    ? badge('b-paused', 'Paused')
    : el('span', { class: 'muted', text: 'Active' })], '');
  setAttr(c[3], 'title', k.paused && k.pausedAt ? `paused since ${k.pausedAt}` : null);
  setActions(c[4], `btn:${k.paused}`, () => [k.paused
    ? actionButton('Resume', 'resume', () => kindAction(k.kind, 'resume'), `Resume ${k.kind}`)
    : actionButton('Pause', 'btn-danger-outline pause', () => kindAction(k.kind, 'pause'), `Pause ${k.kind}`)]);
}

function renderKinds() {
  const emptyText = !getKey() ? 'Enter the API key to see job kinds.'
    : kindsState.error ? `Could not load job kinds: ${kindsState.error}` : 'No job kinds.';
  syncRows($('kinds'), getKey() ? kindsState.kinds : [], updateKindRow, emptyText, 'kind');
  const pausedCount = kindsState.paused.size;
  setText($('kinds-paused-count'), pausedCount ? `${pausedCount} paused` : '');
  markKindFilter();
}

/** The kind filter lists every kind the server knows, paused ones marked. */
function markKindFilter() {
  const select = $('jobs-kind');
  const known = new Set([...select.options].map((o) => o.value));
  for (const k of kindsState.kinds) {
    if (!known.has(k.kind)) select.append(el('option', { value: k.kind, text: k.kind }));
  }
  for (const option of select.options) {
    if (!option.value) continue;
    const paused = kindIsPaused(option.value);
    setText(option, paused ? `${option.value} (paused)` : option.value);
    option.dataset.paused = String(paused);
  }
}

function setKinds(kinds) {
  kindsState.kinds = kinds;
  kindsState.paused = new Set(kinds.filter((k) => k.paused).map((k) => k.kind));
  renderKinds();
}

async function refreshKinds() {
  if (!getKey()) { kindsState.kinds = []; kindsState.paused = new Set(); renderKinds(); return; }
  try {
    const { data } = await api('GET', '/api/jobs/kinds');
    kindsState.error = null;
    setKinds(data.kinds || []);
  } catch (err) {
    kindsState.error = err.message;
    renderKinds();
    throw err;
  }
}

async function kindAction(kind, action) {
  if (!requireKey()) return;
  if (action === 'pause' && !confirmDestructive(`pause every ${kind} job?`)) return;
  try {
    const { data } = await api('POST', `/api/jobs/kinds/${encodeURIComponent(kind)}/${action}`);
    setKinds(kindsState.kinds.map((k) => (k.kind === kind ? data : k)));
    renderJobs(); // queued rows of the kind show or drop their "paused" mark
    notify('success', `Kind ${kind} ${action === 'pause' ? 'paused: its queued jobs wait' : 'resumed'}.`);
    // The button was replaced: keep keyboard focus on the row's new button.
    const row = $('kinds').querySelector(`tr[data-key="${CSS.escape(kind)}"] button`);
    if (row && document.activeElement === document.body) row.focus();
  } catch (err) { notifyError(err, `${action === 'pause' ? 'Pause' : 'Resume'} of ${kind} failed`); }
}
