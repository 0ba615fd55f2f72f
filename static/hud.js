// hud.js keeps the server-rendered HUD live. It subscribes to /ws
// (observatory.v2, or v1 from a server without it; docs/protocol.md), holds
// the scope's state exactly as the protocol says (a snapshot replaces it;
// a diff's set entries replace whole entities, patch entries replace the
// fields they name, unset removes fields, del removes entities, posture
// replaces the posture in v1 and its named fields in v2, ticker entries
// are appended and the newest 50 kept), and repaints only
// what changed, once per animation frame. The markup of every row comes
// from the <template> elements the server renders with the same templ
// components as the first paint, and the figures are formatted exactly as
// hud/format.go formats them.

const root = document.getElementById('hud');
const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
const NS = 'http://www.w3.org/2000/svg';
const TICKER_SIZE = 50;
const HISTORY = 90; // samples of each KPI kept for its sparkline

// ---------------------------------------------------------------- formatting
// Mirrors hud/format.go; keep both in step.

function fmtInt(n) {
  const s = String(Math.trunc(Math.abs(n)));
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (i > 0 && (s.length - i) % 3 === 0) out += ',';
    out += s[i];
  }
  return (n < 0 ? '-' : '') + out;
}

function micros(usd) {
  return Math.round(Number(usd || 0) * 1e6);
}

function fmtUSD(usd) {
  let v = micros(usd);
  const sign = v < 0 ? '-' : '';
  if (v < 0) v = -v;
  const c = Math.floor((v + 5000) / 10000);
  return sign + '$' + fmtInt(Math.floor(c / 100)) + '.' + String(c % 100).padStart(2, '0');
}

function tenths(x) {
  let t = Math.floor(x * 10 + 0.5);
  const sign = t < 0 ? '-' : '';
  if (t < 0) t = -t;
  return sign + fmtInt(Math.floor(t / 10)) + '.' + String(t % 10);
}

function fmtPct(p) {
  return tenths(p) + '%';
}

function fmtLatency(ms) {
  if (!(ms > 0)) return '0ms';
  const r = Math.floor(ms + 0.5);
  if (r < 1000) return r + 'ms';
  return tenths(ms / 1000) + 's';
}

function fmtClock(s) {
  if (!s || s.startsWith('0001-01-01')) return '—';
  if (s.endsWith('Z')) return s.slice(11, 19);
  const d = new Date(s.replace(/\.\d+/, ''));
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

function fmtRate(part, whole) {
  if (!(whole > 0)) return '0.0%';
  return fmtPct((part * 100) / whole);
}

const dash = (s) => (s ? s : '—');
function code(p) {
  if (p === '*') return '*';
  const up = p.toUpperCase().replace(/[^A-Z0-9]/g, '');
  const m = up.match(/^(.*?[^0-9])([0-9]+)$/);
  if (m) {
    const d = m[2].slice(-2);
    return m[1].slice(0, 3 - d.length) + d;
  }
  return up.slice(0, 3);
}
const calls = (a) => (a.llm_calls || 0) + (a.tool_calls || 0);
const cmpStr = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));

function spendBudget(p) {
  if (!(micros(p.budget_limit_usd) > 0)) return 'no cap set';
  return fmtPct(p.budget_pct || 0) + ' of ' + fmtUSD(p.budget_limit_usd);
}

function tabCounts(agents, missions, spend) {
  return fmtInt(agents) + ' AGT · ' + fmtInt(missions) + ' MSN · ' + fmtUSD(spend);
}

// -------------------------------------------------------------- topology
// Mirrors hud/layout.go line for line.

const T = {
  cx: 600, cy: 350, arx: 380, ary: 250, wrx: 190, wry: 120,
  agentRNum: 640, workerRNum: 295.8, grx: 281.2, gry: 185, qr: 18,
  maxAgentLabels: 36, maxWorkerLabels: 16, labelRunes: 24,
};
const GOLDEN = 2.399963229728653;

function shorten(s) {
  const r = Array.from(s || '');
  if (r.length <= T.labelRunes) return s || '';
  return r.slice(0, T.labelRunes - 1).join('') + '…';
}

function coord(x) {
  return String(Math.floor(x * 10 + 0.5) / 10);
}

function place(agents, workers) {
  const l = { agents: new Map(), workers: new Map(), groups: [] };
  const as = Object.keys(agents).map((id) => [agents[id].project_id || '', id]);
  as.sort((a, b) => cmpStr(a[0], b[0]) || cmpStr(a[1], b[1]));
  let groups = 0;
  as.forEach((a, i) => { if (i === 0 || a[0] !== as[i - 1][0]) groups++; });
  const gaps = groups > 1 ? groups : 0;
  const total = as.length + gaps;
  const gapsBefore = (g) => (gaps === 0 ? 0 : g);
  const groupLabel = (project, firstSlot, size, step) => {
    const ang = -Math.PI / 2 + (firstSlot + size / 2) * step;
    return { project, x: T.cx + T.grx * Math.cos(ang), y: T.cy + T.gry * Math.sin(ang) + 4 };
  };
  if (total > 0) {
    const step = (2 * Math.PI) / total;
    const r = clamp(T.agentRNum / total, 2.5, 12);
    const labels = as.length <= T.maxAgentLabels;
    let g = -1, first = 0;
    as.forEach((a, i) => {
      if (i === 0 || a[0] !== as[i - 1][0]) {
        if (g >= 0) l.groups.push(groupLabel(as[first][0], first + gapsBefore(g), i - first, step));
        g++;
        first = i;
      }
      const slot = i + gapsBefore(g);
      const ang = -Math.PI / 2 + (slot + 0.5) * step;
      const n = { id: a[1], project: a[0], r, x: T.cx + T.arx * Math.cos(ang), y: T.cy + T.ary * Math.sin(ang), label: '' };
      if (labels) {
        n.label = shorten(agents[a[1]].name);
        n.lx = T.cx + (T.arx + r + 8) * Math.cos(ang);
        n.ly = T.cy + (T.ary + r + 8) * Math.sin(ang) + 4;
        n.anchor = 'start';
        if (Math.cos(ang) < -0.2) {
          n.anchor = 'end';
        } else if (Math.cos(ang) <= 0.2) {
          n.anchor = 'middle';
          if (Math.sin(ang) < 0) n.ly -= 6; else n.ly += 8;
        }
      }
      l.agents.set(a[1], n);
    });
    if (as.length > 0) l.groups.push(groupLabel(as[first][0], first + gapsBefore(g), as.length - first, step));
  }
  const ws = Object.keys(workers).map((id) => [(workers[id].projects || [])[0] || '', id]);
  ws.sort((a, b) => cmpStr(a[0], b[0]) || cmpStr(a[1], b[1]));
  const m = ws.length;
  if (m > 0) {
    const step = (2 * Math.PI) / m;
    const r = clamp(T.workerRNum / m, 4, 15);
    ws.forEach((w, j) => {
      const ang = -Math.PI / 2 + (j + 0.5) * step;
      const n = { id: w[1], project: w[0], r, x: T.cx + T.wrx * Math.cos(ang), y: T.cy + T.wry * Math.sin(ang), label: '' };
      if (m <= T.maxWorkerLabels) n.label = shorten(w[1]);
      l.workers.set(w[1], n);
    });
  }
  return l;
}

function placeMissions(l, missions) {
  const out = new Map();
  const queued = [];
  for (const id of Object.keys(missions)) {
    const ms = missions[id];
    const w = l.workers.get(ms.worker_id || '');
    const a = l.agents.get(ms.agent_id || '');
    let t = 0.1 + 0.8 * clamp(ms.pct || 0, 0, 100) / 100;
    let p;
    if (w && a) p = { x1: w.x, y1: w.y, x2: a.x, y2: a.y };
    else if (a) p = { x1: T.cx, y1: T.cy, x2: a.x, y2: a.y };
    else if (w) { p = { x1: T.cx, y1: T.cy, x2: w.x, y2: w.y }; t = 0.88; }
    else { queued.push(id); continue; }
    p.edge = true;
    p.x = p.x1 + (p.x2 - p.x1) * t;
    p.y = p.y1 + (p.y2 - p.y1) * t;
    out.set(id, p);
  }
  queued.sort(cmpStr);
  queued.forEach((id, k) => {
    const rad = T.qr + 8 + 6 * Math.sqrt(k);
    out.set(id, { edge: false, queued: true, x: T.cx + rad * Math.cos(k * GOLDEN), y: T.cy + rad * Math.sin(k * GOLDEN) });
  });
  return out;
}

function workerLoad(w) {
  if (!(w.capacity > 0)) return 0;
  return clamp(((w.active_missions || 0) * 100) / w.capacity, 0, 100);
}

// ------------------------------------------------------------------ state

const params = new URLSearchParams(location.search);
const S = {
  scope: root.dataset.scope,
  admin: root.dataset.admin === 'true',
  embed: root.dataset.embed === 'true',
  token: params.get('embed_token') || '',
  st: null, // {scope, epoch, seq, posture, projects, agents, workers, missions, budgets, ticker}
  awaitingSnapshot: false,
  ws: null,
  v2: false, // the connection speaks observatory.v2
  live: false,
  attempt: 0,
  timer: 0,
  fatal: false,
  lastError: null,
  selected: null,
  pinned: false,
  hist: new Map(),
  dirty: null,
  raf: 0,
  unpainted: 0, // diffs applied since the last repaint
  stats: { frames: 0, snapshots: 0, diffs: 0, gaps: 0, flushes: 0, flushesWithoutDiff: 0, flushMs: 0, maxFlushMs: 0, lastFlushMs: 0, snapshotFlushMs: 0, reconnects: 0 },
};

function freshDirty() {
  return { all: false, posture: false, layout: false, selection: false, tickerReset: false, ticker: [],
    projects: new Set(), agents: new Set(), workers: new Set(), missions: new Set(), budgets: new Set() };
}
S.dirty = freshDirty();

const COLLS = ['projects', 'agents', 'workers', 'missions', 'budgets'];

// apply applies one frame to the state (docs/protocol.md §5) and records
// what changed for the next repaint.
function apply(f) {
  if (f.op === 'snapshot') {
    const s = f.state || {};
    S.st = { scope: f.scope, epoch: f.epoch, seq: f.seq, posture: s.posture || {}, ticker: s.ticker || [] };
    for (const c of COLLS) S.st[c] = s[c] || {};
    S.awaitingSnapshot = false;
    S.stats.snapshots++;
    const d = S.dirty;
    d.all = d.posture = d.layout = d.tickerReset = true;
    d.ticker = [];
    sample(S.st.posture);
    return;
  }
  if (f.op !== 'diff') return;
  const st = S.st;
  if (!st || f.epoch !== st.epoch || f.prev !== st.seq) {
    // A gap: drop the state and subscribe again without resume.
    if (!S.awaitingSnapshot) {
      S.stats.gaps++;
      S.st = null;
      subscribe(false);
    }
    return;
  }
  // A patch or unset of an entity the state lacks means the state is not
  // the one the server patched: start again from a snapshot.
  for (const part of [f.patch, f.unset]) {
    if (!part) continue;
    for (const c of COLLS) {
      for (const id of Object.keys(part[c] || {})) {
        if (!st[c][id] && !(f.set && f.set[c] && f.set[c][id])) {
          if (!S.awaitingSnapshot) {
            S.stats.gaps++;
            S.st = null;
            subscribe(false);
          }
          return;
        }
      }
    }
  }
  S.stats.diffs++;
  S.unpainted++;
  const d = S.dirty;
  if (f.set) {
    for (const c of COLLS) {
      const entries = f.set[c];
      if (!entries) continue;
      const coll = st[c];
      for (const id of Object.keys(entries)) {
        const v = entries[id];
        const old = coll[id];
        if (!old && (c === 'agents' || c === 'workers')) d.layout = true;
        if (old && c === 'workers' && ((old.projects || [])[0] || '') !== ((v.projects || [])[0] || '')) d.layout = true;
        if (old && c === 'agents' && old.name !== v.name) d.layout = true;
        coll[id] = v; // whole: never merged
        d[c].add(id);
      }
    }
  }
  if (f.patch) {
    for (const c of COLLS) {
      const entries = f.patch[c];
      if (!entries) continue;
      const coll = st[c];
      for (const id of Object.keys(entries)) {
        const p = entries[id];
        const old = coll[id];
        if (c === 'workers' && 'projects' in p && ((old.projects || [])[0] || '') !== ((p.projects || [])[0] || '')) d.layout = true;
        if (c === 'agents' && 'name' in p && old.name !== p.name) d.layout = true;
        coll[id] = Object.assign({}, old, p); // a new object, as a set gives
        d[c].add(id);
      }
    }
  }
  if (f.unset) {
    for (const c of COLLS) {
      const entries = f.unset[c];
      if (!entries) continue;
      const coll = st[c];
      for (const id of Object.keys(entries)) {
        const v = Object.assign({}, coll[id]);
        for (const k of entries[id]) {
          if (c === 'workers' && k === 'projects') d.layout = true;
          delete v[k];
        }
        coll[id] = v;
        d[c].add(id);
      }
    }
  }
  if (f.del) {
    for (const c of COLLS) {
      const ids = f.del[c];
      if (!ids) continue;
      for (const id of ids) {
        if (c === 'agents' || c === 'workers') d.layout = true;
        delete st[c][id];
        d[c].add(id);
      }
    }
  }
  if (f.posture) {
    st.posture = S.v2 ? Object.assign({}, st.posture, f.posture) : f.posture;
    d.posture = true;
    sample(st.posture);
  }
  if (f.ticker && f.ticker.length) {
    st.ticker.push(...f.ticker);
    if (st.ticker.length > TICKER_SIZE) st.ticker.splice(0, st.ticker.length - TICKER_SIZE);
    d.ticker.push(...f.ticker);
    if (d.ticker.length > TICKER_SIZE) d.ticker.splice(0, d.ticker.length - TICKER_SIZE);
  }
  st.seq = f.seq;
}

// ----------------------------------------------------------------- KPIs

const KPIS = [
  { id: 'active-agents', v: (p) => p.active_agents || 0, f: fmtInt, sub: (p) => 'of ' + fmtInt(p.agents || 0) },
  { id: 'missions-in-flight', v: (p) => p.missions_in_flight || 0, f: fmtInt },
  { id: 'runs-24h', v: (p) => p.runs_24h || 0, f: fmtInt },
  { id: 'tokens-24h', v: (p) => p.tokens_24h || 0, f: fmtInt },
  { id: 'spend-today', v: (p) => micros(p.spend_today_usd), f: (m) => fmtUSD(m / 1e6), raw: (p) => Number(p.spend_today_usd || 0).toFixed(6), sub: spendBudget, money: true },
  { id: 'errors-1h', v: (p) => p.errors_1h || 0, f: fmtInt, bad: true },
  { id: 'workers-online', v: (p) => p.workers_online || 0, f: fmtInt, sub: (p) => 'of ' + fmtInt(p.workers || 0) },
];

const kpiEls = new Map();
for (const k of KPIS) {
  const el = $(`[data-kpi="${k.id}"]`);
  if (!el) continue;
  kpiEls.set(k.id, {
    box: el,
    value: $('.kpi-value', el),
    sub: $('[data-f=sub]', el),
    trend: $('[data-f=trend]', el),
    line: $('.spark-line', el),
    fill: $('.spark-fill', el),
  });
}

// sample records the posture's figures for the sparklines: real values,
// one sample per frame that carried a posture.
function sample(p) {
  const now = performance.now();
  for (const k of KPIS) {
    let h = S.hist.get(k.id);
    if (!h) S.hist.set(k.id, (h = []));
    h.push({ t: now, v: k.v(p) });
    if (h.length > HISTORY) h.splice(0, h.length - HISTORY);
  }
}

// fields returns the [data-f] elements of a row by name, found once.
const fieldCache = new WeakMap();
function fields(el) {
  let f = fieldCache.get(el);
  if (!f) {
    f = {};
    for (const e of el.querySelectorAll('[data-f]')) f[e.dataset.f] = e;
    fieldCache.set(el, f);
  }
  return f;
}

function setText(el, s) {
  if (el && el.textContent !== s) el.textContent = s;
}

function setAttr(el, name, v) {
  if (el && el.getAttribute(name) !== v) el.setAttribute(name, v);
}

function setClass(el, cls) {
  if (el && el.getAttribute('class') !== cls) el.setAttribute('class', cls);
}

function renderKPIs() {
  const p = S.st.posture;
  for (const k of KPIS) {
    const e = kpiEls.get(k.id);
    if (!e) continue;
    const v = k.v(p);
    const shown = k.f(v);
    setText(e.value, shown);
    setAttr(e.value, 'data-len', String(Array.from(shown).length));
    setAttr(e.value, 'data-value', k.raw ? k.raw(p) : String(v));
    if (k.sub) setText(e.sub, k.sub(p));
    if (k.bad) e.box.classList.toggle('bad', v > 0);
    drawSpark(k, e, S.hist.get(k.id) || []);
  }
}

function drawSpark(k, e, h) {
  if (h.length < 2) {
    setAttr(e.line, 'points', '');
    setAttr(e.fill, 'points', '');
    setText(e.trend, '');
    return;
  }
  const t0 = h[0].t, t1 = h[h.length - 1].t;
  let lo = Infinity, hi = -Infinity;
  for (const s of h) { lo = Math.min(lo, s.v); hi = Math.max(hi, s.v); }
  const span = t1 - t0 || 1;
  const pts = h.map((s) => {
    const x = ((s.t - t0) / span) * 100;
    const y = hi === lo ? 12 : 22 - ((s.v - lo) / (hi - lo)) * 20;
    return x.toFixed(1) + ',' + y.toFixed(1);
  }).join(' ');
  setAttr(e.line, 'points', pts);
  setAttr(e.fill, 'points', pts + ' 100,24 0,24');
  const delta = h[h.length - 1].v - h[0].v;
  const secs = Math.max(1, Math.round(span / 1000));
  const age = secs >= 120 ? Math.round(secs / 60) + 'm' : secs + 's';
  const mag = k.money ? fmtUSD(Math.abs(delta) / 1e6) : fmtInt(Math.abs(delta));
  const arrow = delta > 0 ? '▲ ' : delta < 0 ? '▼ ' : '= ';
  setText(e.trend, arrow + mag + ' · ' + age + ' ');
  setClass(e.trend, 'kpi-trend ' + (delta > 0 ? (k.bad ? 'worse' : 'up') : delta < 0 ? (k.bad ? 'better' : 'down') : 'flat'));
}

// ------------------------------------------------------------------ tabs

const tabsEl = $('#tabs');
const tabEls = new Map($$('[data-testid=tenant-tab]', tabsEl).map((a) => [a.dataset.scope, a]));

function tabHref(scope) {
  const q = new URLSearchParams();
  if (scope !== '*') q.set('project', scope);
  if (S.embed) q.set('embed', '1');
  if (S.token) q.set('embed_token', S.token);
  const s = q.toString();
  return s ? '/hud?' + s : '/hud';
}

function renderTabs() {
  const st = S.st;
  if (S.scope === '*' && S.admin) {
    for (const id of Object.keys(st.projects)) {
      if (!tabEls.has(id)) {
        const a = clone('tpl-tab');
        a.dataset.scope = id;
        a.setAttribute('href', tabHref(id));
        setText($('[data-f=code]', a), code(id));
        setText($('[data-f=label]', a), id);
        tabEls.set(id, a);
        const after = Array.from(tabEls.keys()).filter((k) => k !== '*' && k < id).sort().pop();
        const ref = after ? tabEls.get(after).nextSibling : (tabEls.get('*') || $('.tabs-label', tabsEl)).nextSibling;
        tabsEl.insertBefore(a, ref);
      }
    }
  }
  for (const [scope, a] of tabEls) {
    let counts = null;
    if (scope === '*' && S.scope === '*') {
      const p = st.posture;
      counts = tabCounts(p.agents || 0, p.missions_in_flight || 0, p.spend_today_usd);
    } else if (scope !== '*' && st.projects[scope]) {
      const p = st.projects[scope];
      counts = tabCounts(p.agents || 0, p.missions_in_flight || 0, p.spend_today_usd);
    }
    setClass(a, 'tab' + (scope === S.scope ? ' active' : '') + (counts === null ? ' unknown' : ''));
    setText($('[data-f=counts]', a), counts === null ? '' : counts);
  }
}

tabsEl.addEventListener('click', (ev) => {
  const a = ev.target.closest('[data-testid=tenant-tab]');
  if (!a || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  switchScope(a.dataset.scope);
});

function switchScope(scope) {
  if (scope === S.scope) return;
  S.scope = scope;
  S.st = null;
  S.hist.clear();
  S.pinned = false;
  root.dataset.scope = scope;
  root.classList.add('switching');
  history.replaceState(null, '', tabHref(scope));
  setText($('#link-scope'), scope === '*' ? 'ALL PROJECTS' : scope.toUpperCase());
  for (const [s, a] of tabEls) a.classList.toggle('active', s === scope);
  if (S.ws && S.ws.readyState === WebSocket.OPEN) subscribe(false);
}

// ---------------------------------------------------------------- roster

const rosterEl = $('[data-testid=agent-roster]');
const rows = new Map($$('li[data-agent-id]', rosterEl).map((li) => [li.dataset.agentId, li]));
const sortKey = (a) => (a.project_id || '') + '\u0000' + a.id;

function clone(id) {
  const t = document.getElementById(id);
  return t.content.firstElementChild.cloneNode(true);
}

function fillAgentRow(li, a) {
  setClass(li, 'agent st-' + a.state + (a.active ? '' : ' inactive') + (a.id === S.selected ? ' sel' : ''));
  const key = sortKey(a);
  if (li.dataset.key !== key) li.dataset.key = key;
  const f = fields(li);
  setText(f.name, a.name);
  setText(f.role, a.role);
  setText(f.model, a.model);
  setText(f.state, a.state);
  setText(f.calls, fmtInt(calls(a)));
  setText(f.latency, fmtLatency(a.latency_ms));
}

function newRow(a) {
  const li = clone('tpl-agent');
  li.dataset.agentId = a.id;
  rows.set(a.id, li);
  return li;
}

function renderRoster(ids) {
  const agents = S.st.agents;
  if (ids === null) {
    for (const [id, li] of rows) if (!agents[id]) { li.remove(); rows.delete(id); }
    const order = Object.values(agents).sort((a, b) => cmpStr(sortKey(a), sortKey(b)));
    order.forEach((a, i) => {
      const li = rows.get(a.id) || newRow(a);
      fillAgentRow(li, a);
      const at = rosterEl.children[i];
      if (at !== li) rosterEl.insertBefore(li, at || null);
    });
  } else {
    for (const id of ids) {
      const a = agents[id];
      let li = rows.get(id);
      if (!a) {
        if (li) { li.remove(); rows.delete(id); }
        continue;
      }
      if (!li) {
        li = newRow(a);
        fillAgentRow(li, a);
        insertSorted(li, li.dataset.key);
      } else {
        fillAgentRow(li, a);
      }
    }
  }
  setText($('#roster-count'), String(rows.size));
}

function insertSorted(li, key) {
  const kids = rosterEl.children;
  let lo = 0, hi = kids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (kids[mid].dataset.key < key) lo = mid + 1; else hi = mid;
  }
  rosterEl.insertBefore(li, kids[lo] || null);
}

// -------------------------------------------------------------- topology

const svgEl = $('[data-testid=topology]'); // the three stacked layers
const G = {
  groups: $('#topo-groups'), edges: $('#topo-edges'), workers: $('#topo-workers'),
  agents: $('#topo-agents'), missions: $('#topo-missions'),
};
const topo = {
  layout: null,
  agents: new Map($$('[data-agent-id]', G.agents).map((g) => [g.dataset.agentId, g])),
  workers: new Map($$('[data-worker-id]', G.workers).map((g) => [g.dataset.workerId, g])),
  dots: new Map($$('[data-mission-id]', G.missions).map((c) => [c.dataset.missionId, c])),
  edges: new Map($$('[data-mission-id]', G.edges).map((l) => [l.dataset.missionId, l])),
};

function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

// Nodes are placed with plain coordinates (cx, cy, x, y), never with
// transforms: hundreds of transformed elements make every frame expensive
// to composite. data-x and data-y name the node's centre.
function setXY(g, x, y) {
  const cx = coord(x), cy = coord(y);
  if (g.dataset.x === cx && g.dataset.y === cy) return false;
  g.dataset.x = cx;
  g.dataset.y = cy;
  return true;
}

function syncLabel(g, cls, text, x, y, anchor) {
  let t = part(g, 'text.' + cls);
  if (!text) {
    if (t) { t.remove(); partCache.get(g)['text.' + cls] = null; }
    return;
  }
  if (!t) { t = el('text', { class: cls }, g); partCache.get(g)['text.' + cls] = t; }
  setAttr(t, 'x', x);
  setAttr(t, 'y', y);
  setAttr(t, 'text-anchor', anchor);
  setText(t, text);
}

function circleAt(c, x, y, r) {
  setAttr(c, 'cx', coord(x));
  setAttr(c, 'cy', coord(y));
  setAttr(c, 'r', coord(r));
}

function agentClass(a) {
  return 'anode st-' + a.state + (a.active ? '' : ' inactive') + (a.id === S.selected ? ' sel' : '');
}

function workerClass(w) {
  return 'wnode ws-' + w.status + ' wk-' + w.state;
}

// part returns a child of a topology node, found once.
const partCache = new WeakMap();
function part(g, sel) {
  let p = partCache.get(g);
  if (!p) partCache.set(g, (p = {}));
  if (!p[sel]) p[sel] = g.querySelector(sel);
  return p[sel];
}

function updateWorker(g, w, n) {
  setClass(g, workerClass(w));
  const load = part(g, '.wn-load');
  setAttr(load, 'stroke-dasharray', coord(workerLoad(w)) + ' 100');
  if (n) {
    setXY(g, n.x, n.y);
    circleAt(part(g, '.wn-body'), n.x, n.y, n.r);
    circleAt(load, n.x, n.y, n.r + 3);
    syncLabel(g, 'wn-label', n.label, coord(n.x), coord(n.y + n.r + 14), 'middle');
  }
}

function updateAgent(g, a, n) {
  setClass(g, agentClass(a));
  if (n) {
    setXY(g, n.x, n.y);
    circleAt(part(g, '.an-halo'), n.x, n.y, n.r + 4);
    circleAt(part(g, '.an-body'), n.x, n.y, n.r);
    syncLabel(g, 'an-label', n.label, n.label ? coord(n.lx) : '', n.label ? coord(n.ly) : '', n.anchor || 'start');
  }
}

function renderTopology(d) {
  const st = S.st;
  if (d.all || d.layout || !topo.layout) {
    const l = (topo.layout = place(st.agents, st.workers));
    for (const [id, g] of topo.agents) if (!l.agents.has(id)) { g.remove(); topo.agents.delete(id); }
    for (const [id, n] of l.agents) {
      let g = topo.agents.get(id);
      if (!g) {
        g = el('g', { 'data-agent-id': id }, G.agents);
        el('circle', { class: 'an-halo' }, g);
        el('circle', { class: 'an-body' }, g);
        topo.agents.set(id, g);
      }
      updateAgent(g, st.agents[id], n);
    }
    for (const [id, g] of topo.workers) if (!l.workers.has(id)) { g.remove(); topo.workers.delete(id); }
    for (const [id, n] of l.workers) {
      let g = topo.workers.get(id);
      if (!g) {
        g = el('g', { 'data-worker-id': id }, G.workers);
        el('circle', { class: 'wn-body' }, g);
        el('circle', { class: 'wn-load', pathLength: '100', 'stroke-dashoffset': '25' }, g);
        topo.workers.set(id, g);
      }
      updateWorker(g, st.workers[id], n);
    }
    G.groups.replaceChildren(...l.groups.map((gr) => {
      const t = document.createElementNS(NS, 'text');
      t.setAttribute('class', 'grp');
      t.setAttribute('data-project', gr.project);
      t.setAttribute('x', coord(gr.x));
      t.setAttribute('y', coord(gr.y));
      t.setAttribute('text-anchor', 'middle');
      t.textContent = code(gr.project);
      return t;
    }));
  } else {
    for (const id of d.agents) {
      const g = topo.agents.get(id);
      if (g && st.agents[id]) updateAgent(g, st.agents[id], null);
    }
    for (const id of d.workers) {
      const g = topo.workers.get(id);
      if (g && st.workers[id]) updateWorker(g, st.workers[id], null);
    }
  }
  if (d.all || d.layout || d.missions.size) renderMissions();
  setText($('#topo-workers-n'), String(topo.workers.size));
  setText($('#topo-agents-n'), String(topo.agents.size));
}

// shown remembers what each mission's dot and edge show, so that a repaint
// compares in memory and writes to the DOM only what changed.
const shown = new Map();

function renderMissions() {
  const st = S.st;
  const places = placeMissions(topo.layout, st.missions);
  let queued = 0;
  for (const [id, c] of topo.dots) {
    if (!places.has(id)) { c.remove(); topo.dots.delete(id); shown.delete(id); }
  }
  for (const [id, l] of topo.edges) {
    const p = places.get(id);
    if (!p || !p.edge) { l.remove(); topo.edges.delete(id); }
  }
  for (const [id, p] of places) {
    const ms = st.missions[id];
    if (p.queued) queued++;
    let c = topo.dots.get(id);
    if (!c) {
      c = el('circle', { 'data-mission-id': id, r: '5' }, G.missions);
      el('title', {}, c);
      topo.dots.set(id, c);
    }
    let was = shown.get(id);
    if (!was) shown.set(id, (was = {}));
    const pct = String(ms.pct || 0), title = ms.title || id;
    if (was.status !== ms.status) {
      c.setAttribute('class', 'mdot ms-' + ms.status);
      c.setAttribute('data-status', ms.status);
    }
    if (was.pct !== pct) c.setAttribute('data-pct', pct);
    if (was.title !== title) part(c, 'title').textContent = title;
    if (setXY(c, p.x, p.y)) {
      c.setAttribute('cx', c.dataset.x);
      c.setAttribute('cy', c.dataset.y);
    }
    if (p.edge) {
      let l = topo.edges.get(id);
      const ends = coord(p.x1) + ' ' + coord(p.y1) + ' ' + coord(p.x2) + ' ' + coord(p.y2);
      if (!l) {
        l = el('line', { 'data-mission-id': id });
        G.edges.appendChild(l);
        topo.edges.set(id, l);
        was.ends = was.edgeStatus = undefined;
      }
      if (was.edgeStatus !== ms.status) l.setAttribute('class', 'edge ms-' + ms.status);
      if (was.ends !== ends) {
        l.setAttribute('x1', coord(p.x1));
        l.setAttribute('y1', coord(p.y1));
        l.setAttribute('x2', coord(p.x2));
        l.setAttribute('y2', coord(p.y2));
      }
      was.ends = ends;
      was.edgeStatus = ms.status;
    }
    was.status = ms.status;
    was.pct = pct;
    was.title = title;
  }
  setText($('#queue-count'), String(queued));
  setText($('#topo-missions-n'), String(places.size));
}

// --------------------------------------------------------------- dossier

const dossierEl = $('[data-testid=dossier]');

function firstAgent() {
  const li = rosterEl.firstElementChild;
  return li ? li.dataset.agentId : null;
}

function select(id) {
  const prev = S.selected;
  S.selected = id;
  if (prev === id) return;
  if (prev) {
    const li = rows.get(prev);
    if (li) li.classList.remove('sel');
    const g = topo.agents.get(prev);
    if (g) g.classList.remove('sel');
  }
  if (id) {
    const li = rows.get(id);
    if (li) li.classList.add('sel');
    const g = topo.agents.get(id);
    if (g) g.classList.add('sel');
  }
  S.dirty.selection = true;
}

function fillList(list, items, tpl, fill) {
  while (list.children.length > items.length) list.lastElementChild.remove();
  items.forEach((it, i) => {
    let e = list.children[i];
    if (!e) { e = cloneDeep(tpl); list.appendChild(e); }
    fill(e, it);
  });
}

function cloneDeep(id) {
  const t = document.getElementById(id);
  const first = t.content.firstElementChild;
  // tpl-run wraps its row in a table so that the parser keeps the <tr>.
  const row = first.tagName === 'TABLE' ? first.querySelector('tr') : first;
  return row.cloneNode(true);
}

function renderDossier() {
  const a = S.selected && S.st.agents[S.selected];
  dossierEl.classList.toggle('empty', !a);
  if (!a) { dossierEl.dataset.agentId = ''; return; }
  dossierEl.dataset.agentId = a.id;
  const f = (name, v) => setText($(`[data-f=${name}]`, dossierEl), v);
  f('project', a.project_id);
  f('role', a.role);
  f('version', a.version ? ' · v' + a.version : '');
  f('name', a.name);
  f('id', a.id);
  f('state', a.state);
  f('description', a.description || '');
  f('model', a.model);
  f('runs', fmtInt(a.runs || 0));
  f('runs_failed', fmtInt(a.runs_failed || 0));
  f('llm_calls', fmtInt(a.llm_calls || 0));
  f('tool_calls', fmtInt(a.tool_calls || 0));
  f('error_rate', fmtRate(a.call_errors || 0, calls(a)));
  f('latency', fmtLatency(a.latency_ms));
  f('tokens', fmtInt(a.tokens || 0));
  f('spend', fmtUSD(a.spend_usd));
  f('worker', dash(a.worker_id));
  f('mission', dash(a.mission_id));
  f('last_seen', fmtClock(a.last_seen));
  f('tools_n', String((a.tools || []).length));
  f('skills_n', String((a.skills || []).length));
  setClass($('.dz-state', dossierEl), 'dz-state st-' + a.state + (a.active ? '' : ' inactive'));
  const chip = (e, s) => setText(e, s);
  fillList($('[data-list=tools]', dossierEl), a.tools || [], 'tpl-chip', chip);
  fillList($('[data-list=skills]', dossierEl), a.skills || [], 'tpl-chip', chip);
  fillList($('[data-list=runs]', dossierEl), a.recent_runs || [], 'tpl-run', (tr, r) => {
    setClass(tr, 'run rs-' + r.status);
    setText($('[data-f=id]', tr), r.id);
    setText($('[data-f=status]', tr), r.status);
    setText($('[data-f=duration]', tr), fmtLatency(r.duration_ms));
    setText($('[data-f=calls]', tr), fmtInt(r.calls || 0));
    setText($('[data-f=tokens]', tr), fmtInt(r.tokens || 0));
    setText($('[data-f=spend]', tr), fmtUSD(r.spend_usd));
  });
}

function pick(ev) {
  const t = ev.target.closest('[data-agent-id]');
  if (!t || !S.st || !S.st.agents[t.dataset.agentId]) return;
  S.pinned = true;
  select(t.dataset.agentId);
  schedule();
}
rosterEl.addEventListener('click', pick);
rosterEl.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(ev); } });
svgEl.addEventListener('click', pick);

// ---------------------------------------------------------------- ticker

const tickerEl = $('[data-testid=ticker]');
let lastTicker = 0, tickerTimer = 0;

function tickRow(e) {
  const li = clone('tpl-tick');
  li.className = 'tk lvl-' + e.level;
  li.dataset.id = e.id;
  li.dataset.seq = String(e.seq);
  const f = fields(li);
  f.time.textContent = fmtClock(e.time);
  f.project.textContent = e.project_id;
  f.type.textContent = e.type;
  f.text.textContent = e.text;
  return li;
}

function renderTicker(d) {
  if (d.tickerReset) {
    const have = new Map($$('li', tickerEl).map((li) => [li.dataset.id, li]));
    const list = S.st.ticker.slice().reverse();
    tickerEl.replaceChildren(...list.map((e) => have.get(e.id) || tickRow(e)));
    return;
  }
  const fresh = d.ticker.length <= 12; // a flood is not highlighted row by row
  const frag = document.createDocumentFragment();
  for (let i = d.ticker.length - 1; i >= 0; i--) {
    const li = tickRow(d.ticker[i]);
    if (fresh) li.classList.add('fresh');
    frag.appendChild(li);
  }
  tickerEl.insertBefore(frag, tickerEl.firstChild);
  while (tickerEl.children.length > TICKER_SIZE) tickerEl.lastElementChild.remove();
}

// --------------------------------------------------------------- budgets

const gaugesEl = $('#gauges');
const gauges = new Map($$('[data-testid=budget-gauge]', gaugesEl).map((g) => [g.dataset.project, g]));

function budgetLevel(pct, status) {
  if (pct >= 100 || status === 'exceeded') return 'over';
  if (pct >= 80 || status === 'warning' || status === 'throttled') return 'warn';
  return 'ok';
}

function renderGauges() {
  const st = S.st;
  const ids = Object.keys(st.projects).filter((id) => st.projects[id].budget).sort(cmpStr);
  for (const [id, g] of gauges) if (!ids.includes(id)) { g.remove(); gauges.delete(id); }
  const empty = $('#gauges-empty');
  ids.forEach((id) => {
    const b = st.projects[id].budget;
    let status = '';
    for (const x of Object.values(st.budgets)) {
      if (x.project_id === id && x.scope === 'project' && x.scope_id === id && x.period === b.period) status = x.status;
    }
    let g = gauges.get(id);
    if (!g) {
      g = clone('tpl-gauge');
      g.dataset.project = id;
      gauges.set(id, g);
    }
    setClass(g, 'gauge lv-' + budgetLevel(b.pct || 0, status));
    setText($('[data-f=project]', g), id);
    setText($('[data-f=pct]', g), fmtPct(b.pct || 0));
    setAttr($('.g-fill', g), 'width', coord(clamp(b.pct || 0, 0, 100)));
    setText($('[data-f=spent]', g), fmtUSD(b.spent_usd));
    setText($('[data-f=limit]', g), fmtUSD(b.limit_usd));
    setText($('[data-f=period]', g), (b.period || 'period') + ' · ' + b.action);
  });
  ids.forEach((id) => gaugesEl.insertBefore(gauges.get(id), empty));
  empty.classList.toggle('hidden', ids.length > 0);
}

// ----------------------------------------------------------------- paint

function schedule() {
  if (!S.raf) S.raf = requestAnimationFrame(flush);
}

function flush() {
  S.raf = 0;
  const st = S.st;
  if (!st) return;
  const t0 = performance.now();
  const d = S.dirty;
  S.dirty = freshDirty();
  // A repaint with no diff since the last one shows the ticker lines a
  // busy stream held back (below), or a click.
  const diffs = S.unpainted;
  S.unpainted = 0;
  root.classList.remove('switching');
  if (d.all || d.posture) renderKPIs();
  if (d.all || d.posture || d.projects.size) renderTabs();
  if (d.all || d.agents.size) renderRoster(d.all ? null : d.agents);
  if (d.all || d.layout || d.agents.size || d.workers.size || d.missions.size) renderTopology(d);
  if (!S.pinned || !S.selected || !st.agents[S.selected]) {
    if (S.selected && !st.agents[S.selected]) S.pinned = false;
    select(firstAgent());
  }
  if (d.all || d.selection || S.dirty.selection || (S.selected && d.agents.has(S.selected))) {
    S.dirty.selection = false;
    renderDossier();
  }
  if (d.all || d.tickerReset || d.ticker.length) {
    // A busy stream moves the ticker at most four times a second: every
    // move redraws the whole list, and nobody reads faster.
    const now = performance.now();
    if (d.all || d.tickerReset || now - lastTicker >= 250) {
      lastTicker = now;
      renderTicker(d);
    } else {
      S.dirty.ticker.push(...d.ticker);
      if (S.dirty.ticker.length > TICKER_SIZE) S.dirty.ticker.splice(0, S.dirty.ticker.length - TICKER_SIZE);
      clearTimeout(tickerTimer);
      tickerTimer = setTimeout(schedule, 250 - (now - lastTicker));
    }
  }
  if (d.all || d.projects.size || d.budgets.size) renderGauges();
  setText($('#link-seq'), String(st.seq));
  setText($('#link-epoch'), st.epoch);
  setText($('#link-spend-total'), fmtUSD(st.posture.spend_total_usd));
  setText($('#link-unpriced'), fmtInt(st.posture.unpriced_calls || 0));
  setText($('#link-projects'), String(Object.keys(st.projects).length));
  root.dataset.seq = String(st.seq);
  root.dataset.epoch = st.epoch;
  const ms = performance.now() - t0;
  const s = S.stats;
  if (d.all) s.snapshotFlushMs = ms;
  s.flushes++;
  if (!diffs && !d.all) s.flushesWithoutDiff++;
  s.flushMs += ms;
  s.lastFlushMs = ms;
  if (ms > s.maxFlushMs) s.maxFlushMs = ms;
}

// ------------------------------------------------------------ connection

const liveEl = $('[data-testid=live-indicator]');
const retryEl = $('#link-retry');

function setLive(up, note = '') {
  S.live = up;
  setText(liveEl, up ? 'LIVE' : 'RECONNECTING');
  setClass(liveEl, 'live ' + (up ? 'up' : 'down'));
  setText(retryEl, note);
  root.classList.toggle('offline', !up);
}

function alertBanner(msg) {
  let a = $('#hud-alert');
  if (!a) {
    a = document.createElement('div');
    a.id = 'hud-alert';
    a.className = 'alert';
    a.setAttribute('role', 'alert');
    root.prepend(a);
  }
  a.textContent = msg;
}

function subscribe(resume) {
  const ws = S.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const msg = { op: 'subscribe', scope: S.scope };
  if (resume && S.st && S.st.scope === S.scope) {
    msg.resume = { epoch: S.st.epoch, seq: S.st.seq };
  } else {
    S.st = null;
    S.awaitingSnapshot = true;
  }
  ws.send(JSON.stringify(msg));
}

function connect() {
  clearTimeout(S.timer);
  if (S.fatal) return;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  let url = `${proto}//${location.host}/ws`;
  if (S.token) url += '?embed_token=' + encodeURIComponent(S.token);
  // The server picks v2 when it speaks it; an older one picks v1.
  const ws = new WebSocket(url, ['observatory.v2', 'observatory.v1']);
  S.ws = ws;
  S.lastError = null;
  ws.onopen = () => {
    if (ws !== S.ws) return;
    S.v2 = ws.protocol === 'observatory.v2';
    subscribe(true);
  };
  ws.onmessage = (ev) => {
    if (ws !== S.ws) return;
    let f;
    try { f = JSON.parse(ev.data); } catch { return; }
    S.stats.frames++;
    if (f.op === 'error') { S.lastError = f; return; }
    if (f.scope !== S.scope) return; // left over from the scope before a switch
    apply(f);
    if (f.op === 'snapshot' || f.op === 'diff') {
      if (!S.live) setLive(true);
      S.attempt = 0;
      schedule();
    }
  };
  ws.onclose = (ev) => {
    if (ws !== S.ws) return;
    S.ws = null;
    const msg = (S.lastError && S.lastError.message) || ev.reason || '';
    switch (ev.code) {
      case 4401:
        if (!S.embed) {
          location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
          return;
        }
        fail('The embed token is invalid or has expired: ' + msg);
        notifyParent('token-refused');
        return;
      case 4403:
        return fail('Not allowed: ' + msg);
      case 4400:
        return fail('The server refused the subscription: ' + msg);
    }
    reconnect();
  };
}

// notifyParent tells the page that frames an embedded HUD what happened
// to it, so that an admin app can mint a new embed token and reload the
// frame (docs/embedding.md). The message names no token; any parent may
// read it, since only --embed-origins can frame the HUD at all.
function notifyParent(state) {
  if (window.parent === window) return;
  window.parent.postMessage({ type: 'observatory:embed', state, scope: S.scope }, '*');
}

function fail(msg) {
  S.fatal = true;
  setLive(false, 'stopped');
  alertBanner(msg);
}

// reconnect waits 250 ms, doubling to 10 s, ±20 % jitter (as observatory
// tail does), then connects again and resumes from the frame it holds.
function reconnect() {
  const base = Math.min(10000, 250 * 2 ** S.attempt);
  const wait = base * (0.8 + Math.random() * 0.4);
  S.attempt = Math.min(S.attempt + 1, 10);
  S.stats.reconnects++;
  setLive(false, 'retry in ' + (wait / 1000).toFixed(1) + 's');
  S.timer = setTimeout(connect, wait);
}

// The stream rate is how fast the stream's sequence advanced over the last
// ten seconds, as this page saw it; it is recomputed every second, so that
// a quiet stream reads 0 rather than its last burst.
const seqSamples = [];
setInterval(() => {
  const now = performance.now();
  if (S.st && S.live) seqSamples.push({ t: now, seq: S.st.seq });
  while (seqSamples.length && now - seqSamples[0].t > 10500) seqSamples.shift();
  let rate = '—';
  if (S.live && seqSamples.length >= 2) {
    const a = seqSamples[0], b = seqSamples[seqSamples.length - 1];
    rate = fmtInt(Math.max(0, Math.round(((b.seq - a.seq) * 1000) / Math.max(1, b.t - a.t))));
  }
  setText($('#link-rate'), rate);
}, 1000);

// Labels in the topology keep a readable size when the graph is drawn
// small (a 1280-wide screen draws it at about half scale).
new ResizeObserver(() => {
  const scale = Math.min(svgEl.clientWidth / 1200, svgEl.clientHeight / 700) || 1;
  svgEl.style.setProperty('--ls', String(clamp(0.8 / scale, 1, 1.35)));
}).observe(svgEl);

// The page exposes its figures for tests and for the curious.
window.observatoryHUD = {
  stats: S.stats,
  format: { fmtInt, fmtUSD, fmtPct, fmtLatency, fmtClock, fmtRate, coord, code },
  get seq() { return S.st ? S.st.seq : null; },
  get scope() { return S.scope; },
  get live() { return S.live; },
  // protocol is the /ws version the page speaks; state is the scope's
  // state as the page holds it (read-only, for tests).
  get protocol() { return S.ws ? S.ws.protocol : null; },
  get state() { return S.st; },
};

connect();
