// Pool dashboard: the whole fleet — every instance row, any status, with its age, time
// in the current status, deploy status, last error and a link to its Railway service.
// Filter by status; pages of 50 (limit/offset), oldest first as the API answers.
// Below it, any orphaned provider services, with their Railway links.
'use strict';

const FLEET_PAGE = 50;
const fleetState = { offset: 0, total: null, gen: 0, error: null, items: [] };

function fleetQuery() {
  const q = new URLSearchParams({ limit: String(FLEET_PAGE), offset: String(fleetState.offset) });
  if ($('fleet-status').value) q.set('status', $('fleet-status').value);
  return `/api/pool/instances?${q}`;
}

function updateFleetRow(tr, inst) {
  const c = cells(tr, 7);
  tr.dataset.status = inst.status;
  setActions(c[0], `status:${inst.status}`, () => [badge(`i-${inst.status}`, inst.status)], '');
  setActions(c[1], 'name', () => [el('div', { class: 'strong' }), el('div', { class: 'sub mono' })], '');
  setText(c[1].children[0], inst.name || '—');
  setText(c[1].children[1], inst.id);
  setText(c[2], fmtAge(inst.createdAt));
  setAttr(c[2], 'title', inst.createdAt ? `created ${inst.createdAt}` : null);
  c[2].className = 'num nowrap';
  setText(c[3], fmtAge(inst.statusChangedAt));
  setAttr(c[3], 'title', inst.statusChangedAt ? `${inst.status} since ${inst.statusChangedAt}` : null);
  c[3].className = 'num nowrap';
  monoCell(c[4], inst.deployStatus);
  errorCell(c[5], inst.lastError);
  const href = inst.railwayUrl ? safeHref(inst.railwayUrl) : null;
  setActions(c[6], `railway:${href}`, () => (href
    ? [el('a', { href, target: '_blank', rel: 'noopener noreferrer', class: 'link railway-link', text: 'Railway',
      'aria-label': `Railway service of ${inst.name || inst.id} (opens in a new tab)` })]
    : [el('span', { class: 'muted', text: '—' })]), 'nowrap');
}

// Orphaned provider services: no row owns them, services cannot destroy them.
function updateOrphanRow(tr, o) {
  const c = cells(tr, 5);
  monoCell(c[0], o.serviceId);
  monoCell(c[1], o.instanceId);
  setText(c[2], fmtAge(o.firstSeenAt));
  setAttr(c[2], 'title', o.firstSeenAt ? `orphaned since ${o.firstSeenAt}` : null);
  c[2].className = 'num nowrap';
  errorCell(c[3], o.reason);
  const href = o.railwayUrl ? safeHref(o.railwayUrl) : null;
  setActions(c[4], `railway:${href}`, () => (href
    ? [el('a', { href, target: '_blank', rel: 'noopener noreferrer', class: 'link railway-link', text: 'Railway',
      'aria-label': `Railway service ${o.serviceId} (opens in a new tab)` })]
    : [el('span', { class: 'muted', text: '—' })]), 'nowrap');
}

function renderOrphans(orphans) {
  $('orphans-wrap').hidden = orphans.length === 0;
  setText($('orphans-count'), orphans.length ? orphans.length : '');
  syncRows($('orphans'), orphans, updateOrphanRow, 'No orphaned services.', 'serviceId');
}

function renderFleet() {
  const f = fleetState;
  const emptyText = f.error ? `Could not load instances: ${f.error}`
    : f.total == null ? 'Loading…' : $('fleet-status').value ? 'No instances with this status.' : 'No instances.';
  syncRows($('fleet'), f.items, updateFleetRow, emptyText);
  const total = f.total ?? 0;
  const first = f.items.length ? f.offset + 1 : 0;
  setText($('fleet-range'), f.total == null ? '' : `${first}–${f.offset + f.items.length} of ${total}`);
  setText($('fleet-count'), f.total == null ? '' : total);
  $('fleet-prev').disabled = f.offset === 0;
  $('fleet-next').disabled = f.offset + FLEET_PAGE >= total;
  $('fleet-pager').hidden = total <= FLEET_PAGE && f.offset === 0;
}

async function refreshFleet() {
  const f = fleetState;
  const gen = f.gen;
  let data;
  try {
    ({ data } = await api('GET', fleetQuery()));
  } catch (err) {
    if (gen === f.gen) { f.error = err.message; renderFleet(); }
    throw err;
  }
  if (gen !== f.gen) return;
  f.error = null;
  f.total = data.total ?? 0;
  f.items = data.instances || [];
  renderOrphans(data.orphans || []);
  if (f.items.length === 0 && f.offset > 0 && f.total > 0) {
    // The page emptied under us (instances went away): show the last page instead.
    f.offset = Math.max(0, Math.floor((f.total - 1) / FLEET_PAGE) * FLEET_PAGE);
    f.gen += 1;
    return refreshFleet();
  }
  renderFleet();
}

function fleetGo(offset) {
  fleetState.offset = Math.max(0, offset);
  fleetState.gen += 1;
  refreshFleet().catch((err) => notifyError(err, 'Loading instances failed'));
}

function wireFleet() {
  for (const s of INSTANCE_STATUSES) $('fleet-status').append(el('option', { value: s, text: s }));
  $('fleet-status').addEventListener('change', () => {
    fleetState.items = [];
    fleetState.total = null;
    $('fleet').replaceChildren();
    fleetGo(0);
  });
  $('fleet-prev').addEventListener('click', () => fleetGo(fleetState.offset - FLEET_PAGE));
  $('fleet-next').addEventListener('click', () => fleetGo(fleetState.offset + FLEET_PAGE));
  renderFleet();
}
