// Pool dashboard, wiring: the 2-second live refresh (counts, fleet, agents, jobs, job
// kinds, an open job panel), the API key form and the hash router. Loaded last; the
// scripts in /js/ (see index.html) define what it calls. Charts refresh on their own.
'use strict';

const REFRESH_MS = 2000;
const LIVE_TITLE = 'Counts, instances, agents and jobs refresh every 2 seconds; charts every 15';
const live = { timer: null };

async function refreshAll() {
  const keyed = getKey() ? [refreshKinds(), refreshDetail()] : [refreshKinds()];
  const results = await Promise.allSettled([refreshCounts(), refreshFleet(), refreshAgents(), refreshJobs(), ...keyed]);
  const failed = results.find((r) => r.status === 'rejected' && r.reason && r.reason.status !== 401);
  const badge = $('live');
  if (failed && badge.classList.contains('live-ok')) {
    badge.className = 'live live-warn';
    setText($('live-text'), 'Degraded');
    badge.title = failed.reason.message;
  } else if (!failed) badge.title = LIVE_TITLE;
}

function schedule() {
  clearTimeout(live.timer);
  live.timer = setTimeout(tick, REFRESH_MS);
}

async function tick() {
  if (document.hidden) { setText($('live-text'), 'Paused'); $('live').className = 'live'; return; }
  try { await refreshAll(); } finally { schedule(); }
}

function init() {
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
    route(); // a #job/<id> URL opened without the key
  });
  $('key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    if ($('job-dialog').open) $('job-dialog').close();
    showKeyState();
    refreshAll();
  });
  $('claim-form').addEventListener('submit', submitClaim);
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    tick();
    scheduleCharts(0);
  });
  wireControls();
  wireFleet();
  wireJobs();
  wireJobDetail();
  wireCharts();
  showKeyState();
  loadVersion();
  tick();
  route();
}

init();
