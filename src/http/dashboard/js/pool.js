// Pool dashboard: instance counts, the environment, claimed and crashed agents, the
// pool controls (replenish, drain, reconcile) and the claim form.
'use strict';

// ---------- counts and environment ----------

async function refreshCounts() {
  const live = $('live');
  try {
    const { data } = await api('GET', '/api/pool/counts');
    for (const s of INSTANCE_STATUSES) setText($(`count-${s}`), data[s] ?? 0);
    showBuffer(data.buffer, data.waiting);
    showGlance(data.glance);
    live.className = 'live live-ok';
    setText($('live-text'), 'Live');
  } catch (err) {
    live.className = 'live live-down';
    setText($('live-text'), 'Offline');
    throw err;
  }
}

/** The warm target and why (adaptive: demand over the lead time, within the ceiling). */
function showBuffer(b, waiting) {
  if (!b) return;
  const why = {
    min_idle: `POOL_MIN_IDLE ${b.minIdle}`,
    demand: b.burstClaims >= b.expectedClaims
      ? `a burst of ${b.burstClaims.toFixed(1)} claims within one ${Math.round(b.leadTimeSeconds)} s lead time`
      : `${b.claimsPerMinute.toFixed(1)} claims/min × ${Math.round(b.leadTimeSeconds)} s lead time`,
    // Every entry is built, whatever the reason: the forecast's fields may be absent.
    forecast: `forecast: ${(b.forecastClaims ?? 0).toFixed(1)} claims within one ${Math.round(b.leadTimeSeconds)} s `
      + `lead time, as at this time of earlier ${periodName(b.demandPeriodSeconds)}s`,
    max_warm: `capped at POOL_MAX_WARM ${b.maxWarm}`,
  }[b.reason] || b.reason;
  setText($('buffer-target'), b.target);
  setText($('buffer-why'), `${b.mode}: ${why}`);
  setText($('buffer-waiting'), waiting ? `${waiting} claim${waiting === 1 ? '' : 's'} waiting for an instance` : '');
}

/** The buffer's cost (warm instance-hours) and service level (claims bound at once)
 * over the last hour and the last day. */
function showGlance(g) {
  if (!g) return;
  const line = (label, w) => `${label}: ${w.warmInstanceHours.toFixed(1)} warm instance-hours, `
    + (w.claims ? `${Math.round(100 * w.boundAtOnceShare)} % of claims bound at once (${w.boundAtOnce} of ${w.claims})`
      : 'no claims');
  setText($('glance-hour'), line('Last hour', g.hour));
  setText($('glance-day'), `· ${line('last day', g.day)}`);
}

/** A demand period in words: `day`, `hour` or `60 s period`. */
function periodName(secs) {
  return { 86400: 'day', 3600: 'hour', 604800: 'week' }[secs] || `${Math.round(secs)} s period`;
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
    setText($('env-confirm'), env === 'production' ? 'Kill, dismiss, drain, cancel and bulk actions ask first' : 'Off outside production');
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

// The cells both agent tables share: the agent, its id, its conversation, and a
// time (shown short, in full on hover).
function agentCells(c, a, at) {
  agentCell(c[0], a);
  monoCell(c[1], shortId(a.id), a.id);
  monoCell(c[2], shortId(a.conversationId), a.conversationId);
  setText(c[3], fmtTime(at));
  setAttr(c[3], 'title', at);
}

function updateClaimedRow(tr, a) {
  const c = cells(tr, 6);
  agentCells(c, a, a.claimedAt);
  const href = a.inviteUrl ? safeHref(a.inviteUrl) : null;
  setActions(c[4], `invite:${href}`, () => (href
    ? [el('a', { href, target: '_blank', rel: 'noopener noreferrer', class: 'link', text: 'Open invite' })]
    : [el('span', { class: 'muted', text: getKey() ? '—' : 'key needed' })]), '');
  setActions(c[5], 'kill', () => [actionButton('Kill', 'btn-danger-outline kill', () => agentAction('Kill', tr.agent),
    `Kill ${a.name || a.id}`)]);
  tr.agent = a;
}

function updateCrashedRow(tr, a) {
  const c = cells(tr, 5);
  agentCells(c, a, a.createdAt);
  setActions(c[4], 'crashed', () => [
    actionButton('Dismiss', 'dismiss', () => agentAction('Dismiss', tr.agent), `Dismiss ${a.name || a.id}`),
    actionButton('Kill', 'btn-danger-outline kill', () => agentAction('Kill', tr.agent), `Kill ${a.name || a.id}`),
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
