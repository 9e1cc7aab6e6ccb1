// The bench screen: renders the snapshot and the live updates of /api/live (deploy/dashboard/server.ts). Plain
// browser JavaScript, no build step; the chart is uPlot (served from node_modules). The only actions are Start and
// Stop, each with the token as a Bearer header.
'use strict';

const state = { snapshot: null, samples: [], chart: null, token: '' };
const $ = (id) => document.getElementById(id);
const text = (el, s) => { el.textContent = s; };
const fmt = (v, unit, digits = 1) => (v === undefined || v === null ? `– ${unit}` : `${Number(v).toFixed(digits)} ${unit}`);

// ---- token: from the URL fragment the log prints (never sent to the server in a URL), then kept in this tab only ----
(function takeToken() {
  const m = /(?:^#|&)token=([0-9a-f]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('evcc-dashboard-token', m[1]);
    history.replaceState(null, '', location.pathname);
  }
  $('token').value = sessionStorage.getItem('evcc-dashboard-token') || '';
})();

async function control(action) {
  const token = $('token').value.trim();
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let answer;
  try {
    const res = await fetch(`/api/session/${action}`, { method: 'POST', headers });
    answer = await res.json();
  } catch (err) {
    answer = { ok: false, reason: String(err) };
  }
  if (answer.ok && token) sessionStorage.setItem('evcc-dashboard-token', token);
  const el = $('control-status');
  text(el, answer.ok ? `${action === 'start' ? 'Start' : 'Stop'}: ${answer.state}` : `${action === 'start' ? 'Start' : 'Stop'} refused: ${answer.reason}`);
  el.className = `control-status ${answer.ok ? 'ok' : 'refused'}`;
}
$('controls').addEventListener('submit', (ev) => ev.preventDefault());
$('start').addEventListener('click', () => control('start'));
$('stop').addEventListener('click', () => control('stop'));

// ---- tabs ----
// Clear Log empties this screen's copy only (the bench log and the session folder keep everything).
$('clear-log').addEventListener('click', () => $('log').replaceChildren());

for (const b of document.querySelectorAll('.tabs button[data-tab]')) {
  b.addEventListener('click', () => {
    for (const o of document.querySelectorAll('.tabs button[data-tab]')) o.classList.toggle('active', o === b);
    for (const t of document.querySelectorAll('.tab')) t.hidden = t.id !== `tab-${b.dataset.tab}`;
  });
}

// ---- chart ----
function makeChart() {
  const el = $('chart');
  const width = Math.max(320, el.clientWidth || 640);
  const opts = {
    width, height: 300,
    scales: { x: { time: false }, V: { range: [0, 550] }, A: { range: [0, 250] }, pct: { range: [0, 100] } },
    axes: [
      { label: 's', stroke: '#9aa4b2', grid: { stroke: '#2a3140' } },
      { scale: 'V', label: 'V', stroke: '#f5b041', grid: { stroke: '#2a3140' } },
      { scale: 'A', label: 'A / kW', side: 1, stroke: '#5dade2', grid: { show: false } },
      { scale: 'pct', label: 'SoC %', side: 1, stroke: '#58d68d', grid: { show: false } },
    ],
    series: [
      { label: 't (s)' },
      { label: 'present V', scale: 'V', stroke: '#f5b041', width: 2 },
      { label: 'present A', scale: 'A', stroke: '#5dade2', width: 2 },
      { label: 'power kW', scale: 'A', stroke: '#af7ac5', width: 2 },
      { label: 'SoC %', scale: 'pct', stroke: '#58d68d', width: 2 },
      { label: 'EVSE max V', scale: 'V', stroke: '#f5b041', dash: [6, 4], width: 1 },
      { label: 'EVSE max A', scale: 'A', stroke: '#5dade2', dash: [6, 4], width: 1 },
    ],
  };
  state.chart = new uPlot(opts, columns(), el);
}

function columns() {
  const s = state.samples;
  const col = (k) => s.map((x) => (x[k] === undefined ? null : x[k]));
  return [s.map((x) => x.t), col('voltageV'), col('currentA'), col('powerKw'), col('socPercent'), col('limitVoltageV'), col('limitCurrentA')];
}

let redrawPending = false;
function redrawChart() {
  text($('sample-count'), `${state.samples.length} samples`);
  if (redrawPending) return;
  redrawPending = true;
  requestAnimationFrame(() => {
    redrawPending = false;
    if (state.chart) state.chart.setData(columns());
  });
}

// ---- panels ----
function renderSession(s) {
  const el = $('session-state');
  const words = { idle: 'idle: press Start', running: 'session running', ended: 'session complete', failed: 'session failed' };
  text(el, words[s.state] || s.state);
  el.className = `state state-${s.state}`;
  text($('session-label'), s.label || '');
  text($('session-summary'), s.summary || (s.code && s.state !== 'running' ? s.code : ''));
}

function renderFailure(f) {
  const box = $('failure');
  box.hidden = !f;
  if (!f) return;
  text($('failure-headline'), f.headline);
  text($('failure-detail'), f.detail);
  text($('failure-hint'), f.hint || '');
}

function renderLimits(l) {
  text($('present-voltage'), fmt(l.presentVoltageV, 'V'));
  text($('present-current'), fmt(l.presentCurrentA, 'A'));
  text($('present-power'), l.presentPowerW === undefined ? '– kW' : fmt(l.presentPowerW / 1000, 'kW', 2));
  const range = (min, max, unit) => (max === undefined ? '' : `range ${min === undefined ? 0 : min}–${max} ${unit}`);
  text($('range-voltage'), range(l.minVoltageV, l.maxVoltageV ?? l.nominalVoltageV, 'V'));
  text($('range-current'), range(l.minCurrentA, l.maxCurrentA, 'A'));
  text($('range-power'), l.maxPowerW === undefined ? '' : `max ${(l.maxPowerW / 1000).toFixed(1)} kW`);
  text($('ev-target'), l.evTargetVoltageV === undefined ? '–' : `${fmt(l.evTargetVoltageV, 'V')}, ${fmt(l.evTargetCurrentA, 'A')}`);
  const soc = l.socPercent;
  text($('soc-text'), soc === undefined ? '– %' : `${soc.toFixed(1)} %`);
  $('soc-bar').style.width = `${soc === undefined ? 0 : Math.max(0, Math.min(100, soc))}%`;
}

function duration(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

function renderTimeline(phases) {
  const body = $('timeline').tBodies[0];
  body.replaceChildren(...phases.map((p) => {
    const tr = document.createElement('tr');
    tr.className = `phase phase-${p.status} stage-${p.stage}`;
    for (const v of [p.name, p.stage === 'end' ? '' : duration(p.ms), p.count && p.count > 1 ? `×${p.count}` : p.count ? '1' : '', p.status]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.appendChild(td);
    }
    return tr;
  }));
  const bar = $('timeline-bar');
  const total = phases.reduce((n, p) => n + p.ms, 0) || 1;
  bar.replaceChildren(...phases.filter((p) => p.stage !== 'end').map((p) => {
    const seg = document.createElement('div');
    seg.className = `seg seg-${p.status} stage-${p.stage}`;
    seg.style.flexGrow = String(Math.max(p.ms / total, 0.02));
    seg.title = `${p.name}: ${duration(p.ms)}`;
    seg.textContent = p.name;
    return seg;
  }));
}

const MAX_LOG = 2000;
function appendLog(lines) {
  const pre = $('log');
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
  const frag = document.createDocumentFragment();
  for (const l of lines) {
    const span = document.createElement('span');
    span.className = `line level-${l.level}`;
    span.textContent = `${l.text}\n`;
    frag.appendChild(span);
  }
  pre.appendChild(frag);
  while (pre.childNodes.length > MAX_LOG) pre.removeChild(pre.firstChild);
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function renderCertificates(v) {
  const warn = $('certificate-warnings');
  warn.replaceChildren(...(v.warnings || []).map((w) => Object.assign(document.createElement('li'), { textContent: w })));
  const roles = { 'v2g-root': 'V2G root', 'oem-provisioning': 'OEM provisioning', contract: 'contract' };
  $('certificates').tBodies[0].replaceChildren(...v.rows.map((r) => {
    const tr = document.createElement('tr');
    tr.className = `cert expiry-${r.expiry}`;
    const origin = r.role === 'v2g-root' ? `${r.origin}${r.approvedBy ? ` · OEM-approved (${r.approvedBy})` : ''}` : r.role === 'contract' ? `${r.contractId}${r.active ? ' (active)' : ''}` : `chain[${r.depth}]`;
    for (const v2 of [roles[r.role] + (r.depth ? ` [${r.depth}]` : ''), r.subject, origin, r.fingerprint, r.notAfter.slice(0, 10), r.expiry === 'valid' ? `valid (${r.daysLeft} d)` : r.expiry]) {
      const td = document.createElement('td');
      td.textContent = v2;
      tr.appendChild(td);
    }
    return tr;
  }));
}

function renderSystem(v) {
  $('service-config').textContent = JSON.stringify(v.config, null, 2);
  const rows = [
    ['mode', v.mode === 'bench' ? 'bench (simulated pilot, modem, charger, battery)' : 'service'],
    ['security', `${v.security.mode === 'pnc' ? 'Plug & Charge' : 'EIM only'}${v.security.degraded ? ' — DEGRADED' : ''}`],
    ['why', v.security.why],
    ['SDP security', v.security.sdpSecurity || '–'],
    ['payment options', (v.security.paymentOptions || []).join(', ') || '–'],
    ['TPM', v.tpm.state], ['TCTI', v.tpm.tcti || '–'], ['trust source', v.tpm.trustSource || '–'],
    ['measured boot', v.boot.state], ['PCR 14', v.boot.pcr14 || '–'], ['bundle SHA-256', v.boot.bundleSha256 || '–'],
  ];
  $('system').tBodies[0].replaceChildren(...rows.map(([k, val]) => {
    const tr = document.createElement('tr');
    tr.className = k === 'security' && v.security.degraded ? 'degraded' : '';
    const th = document.createElement('th');
    th.textContent = k;
    const td = document.createElement('td');
    td.textContent = val;
    tr.append(th, td);
    return tr;
  }));
}

function applySnapshot(s) {
  state.snapshot = s;
  state.samples = s.samples.slice();
  renderSession(s.session);
  renderFailure(s.failure);
  renderLimits(s.limits);
  renderTimeline(s.timeline);
  $('log').replaceChildren();
  appendLog(s.log);
  if (s.certificates) renderCertificates(s.certificates);
  if (s.system) renderSystem(s.system);
  redrawChart();
}

function applyUpdates(updates) {
  const lines = [];
  for (const u of updates) {
    switch (u.type) {
      case 'log': lines.push(u.line); break;
      case 'timeline': renderTimeline(u.timeline); break;
      case 'sample': state.samples.push(u.sample); redrawChart(); break;
      case 'limits': renderLimits(u.limits); break;
      case 'session':
        if (u.session.state === 'running' && state.snapshot && state.snapshot.session.startedAt !== u.session.startedAt) { state.samples = []; redrawChart(); }
        if (state.snapshot) state.snapshot.session = u.session;
        renderSession(u.session);
        break;
      case 'failure': renderFailure(u.failure); break;
      case 'certificates': renderCertificates(u.certificates); break;
      case 'system': renderSystem(u.system); break;
    }
  }
  if (lines.length) appendLog(lines);
}

// ---- live feed (reconnects) ----
function connect() {
  const ws = new WebSocket(`ws://${location.host}/api/live`);
  ws.onopen = () => { text($('link-state'), 'live'); $('link-state').className = 'link live'; };
  ws.onclose = () => { text($('link-state'), 'reconnecting…'); $('link-state').className = 'link down'; setTimeout(connect, 1000); };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === 'snapshot') applySnapshot(m.snapshot);
    else if (m.type === 'updates') applyUpdates(m.updates);
  };
}

makeChart();
window.addEventListener('resize', () => state.chart && state.chart.setSize({ width: Math.max(320, $('chart').clientWidth), height: 300 }));
connect();
