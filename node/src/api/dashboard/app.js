// The Modchain node dashboard. Plain JS, no dependencies: it reads the
// node's local API (same origin), follows /api/v1/events (newline-delimited
// JSON) to update live, and draws its charts as inline SVG. Text from the
// network (adverts, logs, errors) only ever goes into textContent, never
// into HTML. It holds no credential: the browser sends the HttpOnly session
// cookie that the one-time login link (`modchain dashboard`) set.
'use strict';
(() => {
  const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
  const SVG_NS = 'http://www.w3.org/2000/svg';
  // A little after the node's 2 s reputation debounce.
  const REPUTATION_SETTLE_MS = 3000;
  // Printed by the built-in example job (WASI preview 1, no files).
  const EXAMPLE_WAT = String.raw`;; An example job: prints a greeting on stdout (WASI preview 1).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello from the Modchain dashboard!\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) ;; iovec: where the text is
    (i32.store (i32.const 4) (i32.const 35)) ;; iovec: how long it is
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
`;

  const state = {
    stats: null, statsAt: 0, nodes: [], jobs: [], receipts: [], reputation: [], balance: null,
    selected: null, selectedJob: null, logAbort: null, wasmFile: null, events: [],
  };

  // ---- DOM helpers ---------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  // h('td', {class: 'x', title: 't', 'data-job': id}, 'text', child, ...)
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function fill(el, ...children) { el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined)); }
  function facts(el, pairs) {
    fill(el, pairs.filter((p) => p).flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  }

  // ---- formatting ----------------------------------------------------------

  const short = (hex) => (hex ? String(hex).slice(0, 8) : '—');
  function shortPeer(p) { return p && p.length > 16 ? `${p.slice(0, 8)}…${p.slice(-6)}` : (p || '—'); }
  function credits(micro) {
    if (micro === null || micro === undefined) return '—';
    const s = (Number(micro) / 1e6).toFixed(6).replace(/\.?0+$/, '');
    return s === '-0' ? '0' : s;
  }
  function bytes(n) {
    if (n === null || n === undefined) return '—';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0; let v = Number(n);
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i += 1; }
    return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${u[i]}`;
  }
  function duration(secs) {
    const s = Math.max(0, Math.floor(secs));
    const d = Math.floor(s / 86400); const hh = Math.floor((s % 86400) / 3600);
    const mm = Math.floor((s % 3600) / 60); const ss = s % 60;
    if (d) return `${d}d ${hh}h ${mm}m`;
    if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m ${String(ss).padStart(2, '0')}s`;
    if (mm) return `${mm}m ${String(ss).padStart(2, '0')}s`;
    return `${ss}s`;
  }
  function clock(ms) {
    if (!ms) return '—';
    const d = new Date(Number(ms));
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function ago(ms) { return ms ? `${duration((Date.now() - Number(ms)) / 1000)} ago` : '—'; }
  const me = () => (state.stats ? state.stats.node_id : null);
  function who(hex) {
    if (!hex) return h('span', { class: 'muted' }, '—');
    return h('span', { class: 'mono who', title: hex }, short(hex), hex === me() ? h('span', { class: 'badge you' }, 'you') : null);
  }
  function stateBadge(s) { return h('span', { class: `state ${s}` }, s); }

  // ---- messages --------------------------------------------------------------

  // Every failure ends up here and on the page: nothing is swallowed.
  function message(kind, text, key) {
    const box = $('messages');
    const id = key || text;
    for (const m of [...box.children]) if (m.dataset.key === id) m.remove();
    const close = h('button', { type: 'button', class: 'quiet', title: 'dismiss' }, '×');
    const el = h('div', { class: `message ${kind}`, 'data-key': id }, h('span', null, text), close);
    close.addEventListener('click', () => el.remove());
    box.prepend(el);
    while (box.children.length > 6) box.lastChild.remove();
    if (kind === 'info') setTimeout(() => el.remove(), 8000);
    return el;
  }
  const showError = (text, key) => message('error', text, key);
  const showInfo = (text, key) => message('info', text, key);
  function clearMessage(key) { for (const m of [...$('messages').children]) if (m.dataset.key === key) m.remove(); }

  class ApiError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }
  // Not logged in (no session cookie, or the node restarted): say how to.
  function needLogin() {
    $('session').textContent = 'not logged in';
    setLive(false, 'not logged in');
    showError('This page is not logged in to the node: run `modchain dashboard` on this machine and open the link it prints (each link works once).', 'login');
  }
  function report(what, e) {
    if (e instanceof ApiError && e.status === 401) {
      needLogin();
      return;
    }
    if (e instanceof ApiError && e.status === 0) {
      setLive(false, 'node unreachable');
      showError(`Cannot reach the node (${what}): ${e.message}. Is \`modchain start\` still running?`, 'unreachable');
      return;
    }
    showError(`${what}: ${e && e.message ? e.message : e}`, `${what}`);
  }
  window.addEventListener('error', (ev) => showError(`Dashboard error: ${ev.message}`));
  window.addEventListener('unhandledrejection', (ev) => showError(`Dashboard error: ${ev.reason && ev.reason.message ? ev.reason.message : ev.reason}`));

  // ---- API -------------------------------------------------------------------

  async function api(path, opts) {
    let res;
    try {
      res = await fetch(path, Object.assign({ cache: 'no-store' }, opts));
    } catch (e) {
      throw new ApiError(0, e.message);
    }
    const text = await res.text();
    let body = null;
    if (text) {
      try { body = JSON.parse(text); } catch (e) {
        if (res.ok) throw new ApiError(res.status, `the node's answer to ${path} is not JSON: ${e.message}`);
      }
    }
    if (!res.ok) {
      const why = body && body.error ? body.error : `${res.status} ${res.statusText}`;
      throw new ApiError(res.status, why);
    }
    return body;
  }

  // POST/DELETE (the session cookie goes with them); null when not logged in.
  async function authed(method, path, body) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      return await api(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        needLogin();
        return null;
      }
      throw e;
    }
  }

  // ---- scheduling: coalesce bursts of events into one request ----------------

  const pending = {};
  function soon(name, fn, ms) {
    if (pending[name]) return;
    pending[name] = setTimeout(() => { pending[name] = null; run(name, fn); }, ms);
  }
  async function run(name, fn) {
    try { await fn(); } catch (e) { report(name, e); }
  }

  // ---- loaders -----------------------------------------------------------------

  async function loadStats() {
    state.stats = await api('/api/v1/stats');
    state.statsAt = Date.now();
    clearMessage('unreachable');
    renderNode(); renderPeers(); renderOrchestrators();
  }
  async function loadNodes() {
    state.nodes = await api('/api/v1/nodes');
    renderNode(); renderPeers(); renderAdapters();
  }
  async function loadJobs() {
    state.jobs = await api('/api/v1/jobs');
    renderJobs();
  }
  async function loadLedger() {
    const [receipts, reputation, balance] = await Promise.all([
      api('/api/v1/receipts'), api('/api/v1/reputation'), api('/api/v1/balance'),
    ]);
    Object.assign(state, { receipts, reputation, balance });
    renderReceipts(); renderReputation(); renderBalance(); renderCharts();
  }
  async function loadReputation() {
    state.reputation = await api('/api/v1/reputation');
    renderReputation();
  }
  async function loadSelected() {
    const id = state.selected;
    if (!id) return;
    const job = await api(`/api/v1/jobs/${id}`);
    if (state.selected !== id) return;
    state.selectedJob = job;
    renderJobDetail();
  }
  function refreshAll() {
    run('stats', loadStats); run('peers', loadNodes); run('jobs', loadJobs);
    run('ledger', loadLedger); run('job', loadSelected);
  }

  // ---- live events ---------------------------------------------------------------

  function setLive(on, why) {
    const el = $('live');
    el.className = `live ${on ? 'on' : 'off'}`;
    el.textContent = on ? 'live' : `offline${why ? `: ${why}` : ''}`;
  }

  const QUIET_EVENTS = new Set(['capacity_changed', 'advert_received', 'chunk_received', 'log_received']);

  function onEvent(line) {
    let ev;
    try { ev = JSON.parse(line); } catch (e) {
      showError(`An event from the node is not JSON (${e.message}): ${line.slice(0, 200)}`);
      return;
    }
    if (!QUIET_EVENTS.has(ev.event)) addEventRow(ev);
    if (ev.event === 'lagged') { refreshAll(); return; }
    if (ev.job_id) {
      soon('jobs', loadJobs, 150);
      if (ev.job_id === state.selected) soon('job', loadSelected, 150);
    }
    if (ev.event === 'receipt_stored') {
      soon('ledger', loadLedger, 300);
      // The node recomputes trust 2 s after new receipts (debounced), with no event.
      soon('reputation', loadReputation, REPUTATION_SETTLE_MS);
    }
    if (ev.event === 'advert_received') soon('peers', loadNodes, 1000);
    if (ev.event === 'election') soon('stats', loadStats, 100);
  }

  function addEventRow(ev) {
    const { at_ms: at, event, node, ...rest } = ev;
    const detail = Object.entries(rest).map(([k, v]) => {
      const s = typeof v === 'string' && /^[0-9a-f]{64}$/.test(v) ? short(v) : (Array.isArray(v) ? v.map((x) => (typeof x === 'string' && x.length === 64 ? short(x) : x)).join(',') : JSON.stringify(v));
      return `${k}=${s}`;
    }).join(' ');
    const li = h('li', { 'data-event': event }, h('time', null, clock(at)), h('b', null, event), ' ', detail);
    const list = $('events');
    for (const p of list.querySelectorAll('.placeholder')) p.remove();
    list.prepend(li);
    while (list.children.length > 120) list.lastChild.remove();
  }

  async function followEvents() {
    let wait = 1000;
    for (;;) {
      try {
        const res = await fetch('/api/v1/events', { cache: 'no-store', headers: { Accept: 'application/x-ndjson' } });
        if (res.status === 401) throw new ApiError(401, 'not logged in');
        if (!res.ok || !res.body) throw new Error(`the event stream answered ${res.status}`);
        setLive(true);
        clearMessage('unreachable');
        clearMessage('login');
        $('session').textContent = 'logged in';
        wait = 1000;
        // Subscribed first, then read the state: no event falls in between.
        refreshAll();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.trim()) onEvent(line);
          }
        }
        setLive(false, 'the node closed the event stream');
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) {
          needLogin();
        } else {
          setLive(false, 'reconnecting');
          showError(`Lost the live event stream (${e.message}); reconnecting…`, 'unreachable');
        }
      }
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 15000);
    }
  }

  // ---- this node -----------------------------------------------------------------

  function selfNode() { return state.nodes.find((n) => n.self) || null; }

  function renderNode() {
    const s = state.stats;
    if (!s) return;
    $('node-title').textContent = shortPeer(s.peer_id);
    document.title = `Modchain · ${shortPeer(s.peer_id)}`;
    const elected = s.elected || [];
    const roles = [
      s.provider ? 'provider' : null,
      s.orchestrator_candidate ? 'orchestrator candidate' : null,
      elected.includes(s.node_id) ? 'elected orchestrator' : null,
      'client',
    ].filter(Boolean).join(', ');
    facts($('node-facts'), [
      ['Peer id', h('span', { class: 'mono', id: 'self-peer-id' }, s.peer_id)],
      ['Node id', h('span', { class: 'mono' }, s.node_id)],
      ['Uptime', h('span', { id: 'uptime' }, duration(s.uptime_secs))],
      ['Roles', roles],
      ['Adapters', (s.adapters || []).length ? (s.adapters || []).map((a) => h('span', { class: 'badge' }, a)) : 'none'],
      ['Peers', `${s.connected_peers} connected, ${s.known_peers} known, ${s.adverts} adverts`],
      ['Running now', `${s.executions_running} execution(s) as provider, ${s.orchestrator_active_jobs ?? 0} auction(s) as orchestrator`],
      ['Ledger', `${s.ledger ? s.ledger.receipts : 0} receipts, ${bytes(s.ledger ? s.ledger.bytes_on_disk : 0)} on disk`],
      ['Listening', (s.listen_addrs || []).map((a) => h('div', { class: 'mono' }, a))],
    ]);
    const own = selfNode();
    const ad = own && own.advert;
    if (!ad) {
      facts($('node-hardware'), [['Advert', 'none published yet (not a provider, or still starting)']]);
      facts($('node-prices'), []);
      return;
    }
    facts($('node-hardware'), [
      ['CPU', `${ad.cpu.model || ad.cpu.vendor} — ${ad.cpu.cores} cores, ${ad.cpu.threads} threads`],
      ['Memory', `${bytes(ad.memory.total_bytes)} (${bytes(ad.memory.available_bytes)} available)`],
      ['Storage', `${bytes(ad.storage.total_bytes)} ${ad.storage.kind} (${bytes(ad.storage.available_bytes)} free)`],
      ['GPUs', ad.gpus.length ? ad.gpus.map((g) => h('div', null, `${g.vendor} ${g.model}, ${bytes(g.vram_bytes)}`)) : 'none'],
      ['Containers', ad.container_runtime ? `${ad.container_runtime.name} ${ad.container_runtime.version}${ad.container_runtime.nvidia ? ' (nvidia)' : ''}` : 'no container runtime'],
      ['Free now', `${ad.free.cores} cores, ${bytes(ad.free.memory_bytes)}, ${ad.free.gpus} GPUs`],
      ['Benchmark', ad.benchmark_score ? String(ad.benchmark_score) : 'not run'],
    ]);
    const p = ad.prices;
    facts($('node-prices'), [
      ['Per job', credits(p.per_job)],
      ['Per core · second', credits(p.per_core_second)],
      ['Per GiB memory · second', credits(p.per_gib_memory_second)],
      ['Per GPU · second', credits(p.per_gpu_second)],
      ['Per 1,000 tokens', credits(p.per_1k_tokens)],
    ]);
  }

  function tickUptime() {
    const el = $('uptime');
    if (el && state.stats) el.textContent = duration(state.stats.uptime_secs + (Date.now() - state.statsAt) / 1000);
  }

  // ---- network -------------------------------------------------------------------

  function bootstrapPeers() {
    const ids = new Set();
    for (const b of (state.stats && state.stats.bootstrap) || []) {
      const m = /\/p2p\/([^/]+)/.exec(b.addr || '');
      if (m) ids.add(m[1]);
    }
    return ids;
  }

  function renderOrchestrators() {
    const s = state.stats;
    if (!s) return;
    const elected = s.elected || [];
    const byNode = new Map(state.nodes.map((n) => [n.node_id, n]));
    fill($('orchestrators'),
      h('b', null, `Epoch ${s.epoch}`), ' · elected orchestrators: ',
      elected.length ? elected.map((n, i) => h('span', { class: 'badge orch', title: byNode.get(n) ? byNode.get(n).peer_id : n, 'data-orchestrator': n },
        `#${i + 1} ${short(n)}${n === s.node_id ? ' (you)' : ''}`)) : h('span', { class: 'muted' }, 'none yet (no candidates seen)'));
  }

  function renderPeers() {
    const tbody = $('peers').tBodies[0];
    const elected = (state.stats && state.stats.elected) || [];
    const boots = bootstrapPeers();
    const rows = state.nodes.map((n) => {
      const ad = n.advert;
      const isBoot = boots.has(n.peer_id) || (n.agent || '').startsWith('modchain-bootstrap');
      const rank = elected.indexOf(n.node_id);
      const roles = [
        n.self ? h('span', { class: 'badge you' }, 'you') : null,
        isBoot ? h('span', { class: 'badge boot' }, 'bootstrap') : null,
        rank >= 0 ? h('span', { class: 'badge orch' }, `orchestrator #${rank + 1}`) : null,
        ad && ad.orchestrator_candidate && rank < 0 ? h('span', { class: 'badge' }, 'candidate') : null,
        ad && ad.adapters.length ? h('span', { class: 'badge' }, 'provider') : null,
      ];
      return h('tr', { 'data-peer': n.peer_id, 'data-node': n.node_id, class: n.self ? 'mine' : null },
        h('td', { class: 'mono', title: `${n.peer_id}\nnode ${n.node_id || '?'}\n${(n.addrs || []).join('\n')}` }, shortPeer(n.peer_id)),
        h('td', null, roles),
        h('td', { title: n.agent || '' }, h('span', { class: `dot${n.connected ? ' up' : ''}` }), n.connected ? ' connected' : ' not connected'),
        h('td', null, ad ? ad.adapters.map((a) => h('span', { class: 'badge', title: (a.models || []).map((m) => m.name).join(', ') }, a.name)) : '—'),
        h('td', { title: ad ? ad.cpu.model : '' }, ad ? `${ad.cpu.cores}c / ${ad.cpu.threads}t` : '—'),
        h('td', null, ad ? bytes(ad.memory.total_bytes) : '—'),
        h('td', null, ad ? (ad.gpus.length ? ad.gpus.map((g) => h('div', null, `${g.model} ${bytes(g.vram_bytes)}`)) : '0') : '—'),
        h('td', null, ad ? `${ad.free.cores}c, ${bytes(ad.free.memory_bytes)}` : '—'),
        h('td', null, ad ? credits(ad.prices.per_core_second) : '—'),
        h('td', null, n.self ? 'own' : ago(n.advert_received_at)));
    });
    fill(tbody, rows.length ? rows : h('tr', { class: 'empty' }, h('td', { colspan: 10 }, 'no peers known yet')));
    const connected = state.nodes.filter((n) => n.connected && !n.self).length;
    $('peer-count').textContent = `${state.nodes.length} peers, ${connected} connected`;
  }

  function renderAdapters() {
    const offered = new Set();
    for (const n of state.nodes) for (const a of (n.advert && n.advert.adapters) || []) offered.add(a.name);
    const sel = $('adapter');
    const current = sel.value;
    const names = [...offered].sort();
    const same = names.length === sel.options.length && names.every((n, i) => sel.options[i].value === n);
    if (same) return;
    fill(sel, names.length ? names.map((n) => h('option', { value: n }, n)) : h('option', { value: '' }, 'no provider seen yet'));
    sel.value = names.includes(current) ? current : (names.includes('wasm') ? 'wasm' : (names[0] || ''));
    showAdapterFields();
  }

  // ---- jobs ----------------------------------------------------------------------

  function renderJobs() {
    const tbody = $('jobs').tBodies[0];
    const jobs = [...state.jobs].reverse();
    const rows = jobs.map((j) => {
      const tr = h('tr', { 'data-job': j.job_id, 'data-state': j.state, class: j.job_id === state.selected ? 'selected' : null },
        h('td', { class: 'mono', title: j.job_id }, short(j.job_id)),
        h('td', null, j.adapter),
        h('td', null, stateBadge(j.state)),
        h('td', null, j.detail || ''),
        h('td', null, who(j.provider)),
        h('td', null, j.price === null || j.price === undefined ? '—' : credits(j.price)),
        h('td', null, clock(j.submitted_at_ms)));
      tr.addEventListener('click', () => selectJob(j.job_id));
      return tr;
    });
    fill(tbody, rows.length ? rows : h('tr', { class: 'empty' }, h('td', { colspan: 7 }, 'no jobs yet: submit one above, or with `modchain submit`')));
  }

  function selectJob(id) {
    if (state.selected !== id) {
      state.selected = id;
      state.selectedJob = null;
      $('job-logs').textContent = '';
      fill($('job-result'));
      startLogs(id);
    }
    $('job-detail').hidden = false;
    for (const tr of $('jobs').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.job === id);
    $('job-title').textContent = short(id);
    $('job-title').title = id;
    run('job', loadSelected);
  }

  function closeJob() {
    if (state.logAbort) state.logAbort.abort();
    state.selected = null; state.selectedJob = null;
    $('job-detail').hidden = true;
    renderJobs();
  }

  // Streams the job's output as the provider produces it, until the job ends.
  async function startLogs(id) {
    if (state.logAbort) state.logAbort.abort();
    const ctl = new AbortController();
    state.logAbort = ctl;
    const pre = $('job-logs');
    $('log-state').textContent = '(streaming)';
    try {
      const res = await fetch(`/api/v1/jobs/${id}/logs?follow=true`, { signal: ctl.signal, cache: 'no-store' });
      if (!res.ok) {
        let why = `${res.status}`;
        try { why = (await res.json()).error || why; } catch (e) { why = `${why} (${e.message})`; }
        throw new Error(why);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (state.selected !== id) return;
        pre.textContent += value;
        pre.scrollTop = pre.scrollHeight;
      }
      if (state.selected === id) $('log-state').textContent = pre.textContent ? '(ended)' : '(ended, no output)';
    } catch (e) {
      if (e.name === 'AbortError') return; // we stopped it: another job was opened
      if (state.selected === id) $('log-state').textContent = '(stream failed)';
      report('job output', e);
    }
  }

  function renderJobDetail() {
    const j = state.selectedJob;
    if (!j) return;
    const st = $('job-state');
    st.className = `state ${j.state}`;
    st.textContent = j.state;
    $('job-detail').dataset.state = j.state;
    $('job-detail').dataset.job = j.job_id;
    $('job-cancel').hidden = TERMINAL.has(j.state);
    facts($('job-facts'), [
      ['Job id', h('span', { class: 'mono' }, j.job_id)],
      ['Adapter', `${j.adapter} / ${j.method}`],
      ['Detail', j.detail || '—'],
      ['Submitted', clock(j.submitted_at_ms)],
      ['Orchestrator', who(j.orchestrator)],
      ['Provider', who(j.provider)],
      ['Price', `${credits(j.price)} (at most ${credits(j.max_price)})`],
      ['Timeout', `${(j.timeout_ms || 0) / 1000} s`],
      ['Receipt', j.receipt_id ? h('span', { class: 'mono', id: 'job-receipt' }, j.receipt_id) : 'none yet'],
    ]);
    fill($('job-history'), (j.history || []).map((x) => h('li', null, h('span', { class: 'muted' }, clock(x.at_ms)), ' ', x.state)));
    if (j.exit || (j.outputs || []).length) {
      const out = [h('h3', null, 'Result')];
      out.push(h('p', { id: 'job-exit' }, j.exit || '—'));
      if (j.stdout) out.push(h('h3', null, 'stdout'), h('pre', { id: 'job-stdout' }, j.stdout));
      if (j.stderr) out.push(h('h3', null, 'stderr'), h('pre', { id: 'job-stderr' }, j.stderr));
      if ((j.outputs || []).length) {
        out.push(h('h3', null, `Output files${j.outputs_pending ? ` (${j.outputs_pending} still arriving)` : ''}`),
          h('table', null, h('tbody', null, j.outputs.map((o) => h('tr', null,
            h('td', { class: 'mono' }, o.name), h('td', null, bytes(o.size)),
            h('td', { class: 'mono', title: o.digest }, short(o.digest)),
            h('td', { class: 'mono' }, o.path || 'not stored yet'))))));
      }
      if (j.results_dir) out.push(h('p', { class: 'muted' }, `Files are stored under ${j.results_dir}`));
      fill($('job-result'), out);
    }
  }

  async function cancelSelected() {
    const id = state.selected;
    if (!id) return;
    const btn = $('job-cancel');
    btn.disabled = true;
    try {
      const v = await authed('DELETE', `/api/v1/jobs/${id}`);
      if (v) showInfo(`Job ${short(id)} cancelled.`);
      soon('jobs', loadJobs, 50); soon('job', loadSelected, 50);
    } catch (e) {
      report(`cancel ${short(id)}`, e);
    } finally {
      btn.disabled = false;
    }
  }

  // ---- receipts, reputation, balance ----------------------------------------------

  function renderReceipts() {
    const rs = [...state.receipts].sort((a, b) => b.issued_at_ms - a.issued_at_ms).slice(0, 300);
    const m = me();
    const rows = rs.map((r) => h('tr', { 'data-receipt': r.receipt_id, 'data-job': r.job_id, class: r.client === m || r.provider === m ? 'mine' : null },
      h('td', null, clock(r.issued_at_ms)),
      h('td', { class: 'mono', title: r.job_id }, short(r.job_id)),
      h('td', null, r.outcome === 'executed' ? (r.exit || 'executed') : h('span', { class: 'state failed' }, `provider failed: ${r.failure || ''}`)),
      h('td', null, who(r.client)), h('td', null, who(r.provider)), h('td', null, who(r.orchestrator)),
      h('td', null, credits(r.price)), h('td', null, `${r.wall_ms} ms`)));
    fill($('receipts').tBodies[0], rows.length ? rows : h('tr', { class: 'empty' }, h('td', { colspan: 8 }, 'no receipts in the ledger yet')));
    $('receipt-count').textContent = `(${state.receipts.length} in this node's ledger${state.receipts.length > rs.length ? `, newest ${rs.length} shown` : ''})`;
  }

  function renderReputation() {
    const rows = state.reputation.map((r) => h('tr', { 'data-node': r.node_id },
      h('td', null, who(r.node_id), r.pretrusted ? h('span', { class: 'badge boot' }, 'pre-trusted') : null),
      h('td', null, `${(r.trust * 100).toFixed(1)} %`),
      h('td', { title: `${r.reputation} ppm of the most trusted` }, h('div', { class: 'bar', 'data-ppm': r.reputation }))));
    fill($('reputation').tBodies[0], rows.length ? rows : h('tr', { class: 'empty' }, h('td', { colspan: 3 }, 'no trust yet: it comes from receipts')));
    // Widths through the CSSOM: the CSP forbids inline style attributes.
    for (const bar of $('reputation').querySelectorAll('.bar')) bar.style.width = `${Math.max(1, Number(bar.dataset.ppm) / 10000)}%`;
  }

  function myTotals() {
    const m = me();
    let earned = 0; let spent = 0; let ran = 0; let bought = 0;
    for (const r of state.receipts) {
      if (r.provider === m) { earned += r.price; ran += 1; }
      if (r.client === m) { spent += r.price; bought += 1; }
    }
    return { earned, spent, ran, bought };
  }

  function renderBalance() {
    const b = state.balance;
    const t = myTotals();
    facts($('balance'), [
      ['Balance', h('b', { id: 'balance-value' }, b ? `${credits(b.balance_micro)} credits` : '—')],
      ['Earned as provider', `${credits(t.earned)} credits for ${t.ran} job(s)`],
      ['Spent as client', `${credits(t.spent)} credits for ${t.bought} job(s)`],
    ]);
  }

  // ---- charts (inline SVG) ----------------------------------------------------------

  function chartBox(el) {
    const w = Math.max(260, Math.floor(el.clientWidth || 400));
    return { w, h: 150, l: 52, r: 10, t: 10, b: 22 };
  }
  function axes(g, box, yMax, fmtY, t0, t1) {
    const { w, h: hh, l, r, t, b } = box;
    g.append(svg('line', { class: 'axis', x1: l, y1: hh - b, x2: w - r, y2: hh - b }));
    g.append(svg('line', { class: 'axis', x1: l, y1: t, x2: l, y2: hh - b }));
    g.append(svg('text', { x: l - 4, y: t + 8, 'text-anchor': 'end' }, fmtY(yMax)));
    g.append(svg('text', { x: l - 4, y: hh - b, 'text-anchor': 'end' }, fmtY(0)));
    g.append(svg('text', { x: l, y: hh - 6 }, clock(t0)));
    g.append(svg('text', { x: w - r, y: hh - 6, 'text-anchor': 'end' }, clock(t1)));
  }
  function emptyChart(el, text) {
    fill(el, h('p', { class: 'muted' }, text));
  }

  function renderCharts() {
    const rs = [...state.receipts].sort((a, b) => a.issued_at_ms - b.issued_at_ms);
    if (!rs.length) {
      emptyChart($('earnings-chart'), 'No receipts yet: earnings appear when jobs finish.');
      emptyChart($('jobs-chart'), 'No receipts yet.');
      return;
    }
    const t0 = rs[0].issued_at_ms;
    const t1 = Math.max(Date.now(), rs[rs.length - 1].issued_at_ms, t0 + 60000);
    earningsChart($('earnings-chart'), rs, t0, t1);
    jobsChart($('jobs-chart'), rs, t0, t1);
  }

  function earningsChart(el, rs, t0, t1) {
    const m = me();
    const box = chartBox(el);
    const pts = { earned: [[t0, 0]], spent: [[t0, 0]] };
    let e = 0; let s = 0;
    for (const r of rs) {
      if (r.provider === m) { e += r.price; pts.earned.push([r.issued_at_ms, e]); }
      if (r.client === m) { s += r.price; pts.spent.push([r.issued_at_ms, s]); }
    }
    pts.earned.push([t1, e]); pts.spent.push([t1, s]);
    const yMax = Math.max(e, s, 1);
    const x = (t) => box.l + ((t - t0) / (t1 - t0)) * (box.w - box.l - box.r);
    const y = (v) => box.h - box.b - (v / yMax) * (box.h - box.t - box.b);
    const root = svg('svg', { viewBox: `0 0 ${box.w} ${box.h}`, width: box.w, height: box.h, role: 'img', 'aria-label': 'cumulative credits earned and spent' });
    axes(root, box, yMax, credits, t0, t1);
    for (const k of ['earned', 'spent']) {
      // A step line: the total changes at each receipt and holds until the next.
      let d = ''; let prev = null;
      for (const [t, v] of pts[k]) {
        d += prev === null ? `M${x(t).toFixed(1)},${y(v).toFixed(1)}` : ` H${x(t).toFixed(1)} V${y(v).toFixed(1)}`;
        prev = v;
      }
      root.append(svg('path', { class: k, d }));
    }
    fill(el, root, h('div', { class: 'legend' }, h('i', { class: 'earned' }), `earned ${credits(e)}`, h('i', { class: 'spent' }), `spent ${credits(s)}`));
  }

  function jobsChart(el, rs, t0, t1) {
    const box = chartBox(el);
    const n = 30;
    const span = (t1 - t0) / n;
    const buckets = Array.from({ length: n }, () => ({ ok: 0, failed: 0 }));
    for (const r of rs) {
      const i = Math.min(n - 1, Math.floor((r.issued_at_ms - t0) / span));
      if (r.outcome === 'executed' && r.exit_code === 0) buckets[i].ok += 1; else buckets[i].failed += 1;
    }
    const yMax = Math.max(1, ...buckets.map((b) => b.ok + b.failed));
    const bw = (box.w - box.l - box.r) / n;
    const y = (v) => (v / yMax) * (box.h - box.t - box.b);
    const root = svg('svg', { viewBox: `0 0 ${box.w} ${box.h}`, width: box.w, height: box.h, role: 'img', 'aria-label': 'jobs finished over time' });
    axes(root, box, yMax, (v) => String(v), t0, t1);
    buckets.forEach((b, i) => {
      const x = box.l + i * bw + 1;
      const base = box.h - box.b;
      const title = `${clock(t0 + i * span)}: ${b.ok} succeeded, ${b.failed} failed`;
      if (b.ok) root.append(svg('rect', { class: 'executed', x, y: base - y(b.ok), width: Math.max(1, bw - 2), height: y(b.ok) }, svg('title', null, title)));
      if (b.failed) root.append(svg('rect', { class: 'failedbar', x, y: base - y(b.ok) - y(b.failed), width: Math.max(1, bw - 2), height: y(b.failed) }, svg('title', null, title)));
    });
    const ok = buckets.reduce((a, b) => a + b.ok, 0);
    fill(el, root, h('div', { class: 'legend' }, h('i', { class: 'executed' }), `succeeded ${ok}`, h('i', { class: 'failedbar' }), `failed or cancelled ${rs.length - ok}`));
  }

  // ---- submit --------------------------------------------------------------------------

  function showAdapterFields() {
    const a = $('adapter').value;
    $('wasm-fields').hidden = a !== 'wasm';
    $('docker-fields').hidden = a !== 'docker';
    $('params-fields').hidden = a === 'wasm' || a === 'docker' || a === '';
  }

  // Splits a command line on spaces, keeping 'single' and "double" quoted parts together.
  function words(s) {
    const out = [];
    const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
    let m;
    while ((m = re.exec(s)) !== null) out.push(m[1] ?? m[2] ?? m[3]);
    return out;
  }

  function base64(buf) {
    const b = new Uint8Array(buf);
    let s = '';
    for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
    return btoa(s);
  }

  async function onWasmFile() {
    const f = $('wasm-file').files[0];
    state.wasmFile = null;
    $('wat').disabled = false;
    if (!f) return;
    try {
      if (/\.wasm$/i.test(f.name)) {
        state.wasmFile = { name: f.name, base64: base64(await f.arrayBuffer()) };
        $('wat').disabled = true;
        showInfo(`Using ${f.name} (${bytes(f.size)}) as the module.`);
      } else {
        $('wat').value = await f.text();
      }
    } catch (e) {
      showError(`Cannot read ${f.name}: ${e.message}`);
    }
  }

  function num(id, what, min) {
    const v = Number($(id).value);
    if (!Number.isFinite(v) || v < min) throw new Error(`${what} must be a number ≥ ${min}`);
    return v;
  }

  function buildJob() {
    const adapter = $('adapter').value;
    if (!adapter) throw new Error('no provider has advertised an adapter yet; wait for the network view to fill');
    let params;
    if (adapter === 'wasm') {
      params = state.wasmFile ? { wasm_base64: state.wasmFile.base64 } : { wat: $('wat').value };
      if (!state.wasmFile && !params.wat.trim()) throw new Error('the WebAssembly text is empty: write a module or pick a .wat/.wasm file');
      const args = words($('wasm-args').value);
      if (args.length) params.args = args;
    } else if (adapter === 'docker') {
      const image = $('docker-image').value.trim();
      if (!image) throw new Error('a docker job needs an image (one the providers already have)');
      params = { image, cmd: words($('docker-cmd').value) };
      const env = {};
      for (const kv of words($('docker-env').value)) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new Error(`environment entry "${kv}" is not K=V`);
        env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      if (Object.keys(env).length) params.env = env;
      if ($('docker-network').checked) params.network = true;
    } else {
      try { params = JSON.parse($('params-json').value || '{}'); } catch (e) { throw new Error(`the parameters are not JSON: ${e.message}`); }
    }
    return {
      adapter,
      method: 'run',
      params,
      requirements: { cores: Math.round(num('cores', 'cores', 1)), memory_bytes: Math.round(num('memory', 'memory', 1) * 1024 * 1024) },
      timeout_ms: Math.round(num('timeout', 'the timeout', 1) * 1000),
      max_price: Math.round(num('max-price', 'the max price', 0) * 1e6),
    };
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    let body;
    try { body = buildJob(); } catch (e) { showError(`Cannot submit: ${e.message}`, 'submit'); return; }
    const btn = $('submit-button');
    const out = $('submit-result');
    btn.disabled = true;
    out.textContent = 'submitting…';
    delete out.dataset.job;
    try {
      const v = await authed('POST', '/api/v1/jobs', body);
      if (!v) { out.textContent = ''; return; }
      clearMessage('submit');
      out.textContent = `submitted job ${short(v.job_id)}`;
      out.dataset.job = v.job_id;
      selectJob(v.job_id);
      soon('jobs', loadJobs, 50);
    } catch (e) {
      out.textContent = 'refused';
      showError(`The node refused the job: ${e.message}`, 'submit');
    } finally {
      btn.disabled = false;
    }
  }

  // ---- start ---------------------------------------------------------------------------

  function start() {
    $('wat').value = EXAMPLE_WAT;
    $('adapter').addEventListener('change', showAdapterFields);
    $('wasm-file').addEventListener('change', () => run('module file', onWasmFile));
    $('submit-form').addEventListener('submit', onSubmit);
    $('job-cancel').addEventListener('click', cancelSelected);
    $('job-close').addEventListener('click', closeJob);
    let resize = null;
    window.addEventListener('resize', () => { clearTimeout(resize); resize = setTimeout(renderCharts, 200); });
    setInterval(tickUptime, 1000);
    // Connections and advert ages change without events; the rest is event-driven.
    setInterval(() => { soon('stats', loadStats, 0); soon('peers', loadNodes, 0); }, 5000);
    setInterval(() => soon('reputation', loadReputation, 0), 30000);
    setInterval(renderCharts, 30000);
    followEvents();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
