// Pool dashboard: charts over the last hour or day (uPlot, vendored in /vendor/) from
// GET /api/stats?range=hour|day — one point a minute. Refreshed every 15 s, not with
// the 2 s live loop. Empty ranges (a fresh pool: nulls and zeros) draw empty axes.
'use strict';

const CHARTS_REFRESH_MS = 15000;
const CHART_HEIGHT = 170;
const chartsState = { range: 'hour', timer: null, gen: 0, plots: {}, stats: null, observer: null };

const KIND_COLORS = ['#3b5bdb', '#2b8a3e', '#e8590c', '#9c36b5', '#c2255c', '#0c8599', '#5c940d', '#862e9c', '#495057'];
const STATUS_DASH = { succeeded: undefined, failed: [6, 4], cancelled: [2, 3] };
const COUNT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

function fmtMs(v) {
  if (v == null) return '—';
  if (v >= 1000) return `${+(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s`;
  return `${v < 10 ? +v.toFixed(1) : Math.round(v)} ms`;
}

function fmtCount(v) { return v == null ? '—' : String(+v.toFixed(2)); }

/** Each chart: its series and data from one stats document. */
const CHART_SPECS = {
  warm: (s) => ({
    unit: 'count',
    series: [
      { label: 'Warm (idle + provisioning)', stroke: '#2b8a3e', fill: 'rgba(64, 192, 87, .12)', width: 2 },
      { label: 'POOL_MIN_IDLE', stroke: '#868e96', dash: [6, 4], width: 1.5 },
      { label: 'Warm target', stroke: '#e8590c', dash: [2, 3], width: 1.5 },
      { label: 'Forecast (claims within one lead time)', stroke: '#7048e8', dash: [8, 3, 2, 3], width: 1.5 },
    ],
    data: [s.warm, s.minIdleSeries, s.target || s.t.map(() => null), s.forecast || s.t.map(() => null)],
  }),
  claims: (s) => ({
    unit: 'count',
    bars: true,
    series: [
      // No outline (width 0): a minute without claims draws nothing, not a flat line.
      { label: 'Claims', stroke: '#3b5bdb', fill: 'rgba(59, 91, 219, .5)', width: 0 },
      { label: '503 pool empty', stroke: '#c92a2a', fill: 'rgba(224, 49, 49, .9)', width: 0 },
    ],
    data: [s.claims, s.claimsEmpty],
  }),
  'claim-latency': (s) => ({
    unit: 'ms',
    series: [
      { label: 'p50', stroke: '#3b5bdb', width: 2 },
      { label: 'p95', stroke: '#f59f00', width: 2 },
    ],
    data: [s.claimP50Ms, s.claimP95Ms],
  }),
  jobs: (s) => {
    // One line per kind and outcome that happened: colour = kind, dash = outcome.
    const rows = (s.jobsFinished || []).filter((r) => (r.counts || []).some((n) => n > 0));
    rows.sort((a, b) => a.kind.localeCompare(b.kind) || a.status.localeCompare(b.status));
    if (rows.length === 0) {
      return { unit: 'count', series: [{ label: 'Finished', stroke: '#adb5bd', width: 1.5 }],
        data: [s.t.map(() => 0)] };
    }
    // The server's order of kinds (`/api/jobs/kinds`), so a kind keeps its colour.
    const order = kindsState.kinds.map((k) => k.kind);
    const color = (kind) => KIND_COLORS[Math.max(0, order.indexOf(kind)) % KIND_COLORS.length];
    return {
      unit: 'count',
      series: rows.map((r) => ({ label: `${r.kind} ${r.status}`, stroke: color(r.kind),
        dash: STATUS_DASH[r.status], width: r.status === 'failed' ? 2 : 1.5 })),
      data: rows.map((r) => r.counts),
    };
  },
  'queue-wait': (s) => ({
    unit: 'ms',
    series: [
      { label: 'p50', stroke: '#0c8599', width: 2 },
      { label: 'p95', stroke: '#e8590c', width: 2 },
    ],
    data: [s.queueWaitP50Ms, s.queueWaitP95Ms],
  }),
};

function yRange(_u, _min, max) {
  const hi = Number.isFinite(max) && max > 0 ? max : 1;
  return [0, hi * 1.1];
}

// A minute with a value between two without one draws no line: uPlot's own dots show
// only on sparse plots, so mark such lone values (latencies, a pool's first minute).
function lonePoints(u, seriesIdx, show) {
  if (show) return null; // uPlot draws every point anyway
  const values = u.data[seriesIdx];
  const idxs = [];
  for (let i = 0; i < values.length; i += 1) {
    if (values[i] != null && values[i - 1] == null && values[i + 1] == null) idxs.push(i);
  }
  return idxs.length ? idxs : null;
}

function plotOptions(spec, width) {
  const axis = { stroke: '#6b7280', grid: { stroke: '#eef0f3', width: 1 }, ticks: { stroke: '#e3e6eb', width: 1 } };
  const fmt = spec.unit === 'ms' ? fmtMs : fmtCount;
  const bars = spec.bars ? uPlot.paths.bars({ size: [0.8, 14, 1] }) : null;
  return {
    width,
    height: CHART_HEIGHT,
    scales: { x: { time: true }, y: { range: yRange } },
    axes: [
      axis,
      { ...axis, size: spec.unit === 'ms' ? 64 : 44, values: (_u, vals) => vals.map((v) => (spec.unit === 'ms' ? fmtMs(v) : String(v))),
        ...(spec.unit === 'count' ? { incrs: COUNT_INCRS } : {}) },
    ],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    series: [{ label: 'Time' }, ...spec.series.map((s) => ({
      ...s,
      value: (_u, v) => fmt(v),
      spanGaps: false,
      ...(bars ? { paths: bars, points: { show: false } } : { points: { size: 5, filter: lonePoints } }),
    }))],
  };
}

/** "now" line under a chart: the latest value of each series. */
function latestText(spec) {
  const fmt = spec.unit === 'ms' ? fmtMs : fmtCount;
  return spec.series.map((s, i) => {
    const values = spec.data[i] || [];
    let v = null;
    for (let k = values.length - 1; k >= 0 && v == null; k -= 1) v = values[k];
    return `${s.label} ${fmt(v)}`;
  }).join(' · ');
}

function drawChart(name, stats) {
  const spec = CHART_SPECS[name](stats);
  const box = $(`chart-${name}`);
  spec.data = spec.data.map((d) => (Array.isArray(d) ? d : stats.t.map(() => null)));
  const data = [stats.t, ...spec.data];
  const signature = spec.series.map((s) => s.label).join('|');
  let plot = chartsState.plots[name];
  if (plot && plot.signature !== signature) { plot.destroy(); plot = null; }
  if (!plot) {
    box.replaceChildren();
    plot = new uPlot(plotOptions(spec, Math.max(200, box.clientWidth)), data, box);
    plot.signature = signature;
    chartsState.plots[name] = plot;
  } else {
    plot.setData(data);
  }
  setText($(`chart-${name}-now`), `Latest: ${latestText(spec)}`);
}

function renderCharts(stats) {
  for (const name of Object.keys(CHART_SPECS)) drawChart(name, stats);
  setText($('chart-min-idle'), stats.minIdle ?? '—');
  const charts = $('charts');
  charts.dataset.range = stats.range;
  charts.dataset.points = String(stats.t.length);
}

async function refreshCharts() {
  const range = chartsState.range;
  const gen = ++chartsState.gen;
  try {
    const { data } = await api('GET', `/api/stats?range=${range}`);
    if (gen !== chartsState.gen) return;
    const stats = { ...data, t: Array.isArray(data.t) ? data.t : [] };
    chartsState.stats = stats;
    renderCharts(stats);
    setText($('charts-note'), `${range === 'day' ? 'Last 24 hours' : 'Last hour'}, per minute · updated ${fmtTime(new Date().toISOString())}`);
    $('charts-note').classList.remove('note-error');
  } catch (err) {
    if (gen !== chartsState.gen) return;
    setText($('charts-note'), `Stats unavailable: ${err.message}`);
    $('charts-note').classList.add('note-error');
  }
}

function setChartRange(range) {
  chartsState.range = range;
  for (const b of document.querySelectorAll('#chart-range button')) {
    b.setAttribute('aria-pressed', String(b.dataset.range === range));
  }
  scheduleCharts(0);
}

function scheduleCharts(delay = CHARTS_REFRESH_MS) {
  clearTimeout(chartsState.timer);
  chartsState.timer = setTimeout(async () => {
    if (!document.hidden) await refreshCharts();
    scheduleCharts();
  }, delay);
}

function wireCharts() {
  for (const b of document.querySelectorAll('#chart-range button')) {
    b.addEventListener('click', () => setChartRange(b.dataset.range));
  }
  // Follow the layout's width (one or two columns).
  chartsState.observer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const name = entry.target.id.replace(/^chart-/, '');
      const plot = chartsState.plots[name];
      const width = Math.max(200, Math.floor(entry.contentRect.width));
      if (plot && Math.abs(plot.width - width) >= 1) plot.setSize({ width, height: CHART_HEIGHT });
    }
  });
  for (const name of Object.keys(CHART_SPECS)) chartsState.observer.observe($(`chart-${name}`));
  scheduleCharts(0);
}
