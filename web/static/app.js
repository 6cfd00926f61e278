// flowhound UI: a hash-routed single page over the JSON API under /api/.
//
// Every piece of text that comes from the API is put into the page with textContent or
// setAttribute through h() and svg() below, never as markup: resource names, rule
// descriptions and flow fields come from configuration and from the network.
'use strict';

(function () {
  const app = document.getElementById('app');
  const TOKEN_KEY = 'flowhound.token';
  const SVGNS = 'http://www.w3.org/2000/svg';

  // ---------------------------------------------------------------- DOM helpers

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function addKids(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k == null || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    addKids(el, kids);
    return el;
  }

  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    addKids(el, kids);
    return el;
  }

  function show(...nodes) {
    app.replaceChildren(...nodes.flat(Infinity).filter(Boolean));
  }

  // field reads o[name] whatever the JSON naming: "clock_skew", "clockSkew" and
  // "ClockSkew" are one field, because some API shapes are Go structs without JSON tags.
  function field(o, name) {
    if (o == null || typeof o !== 'object') return undefined;
    if (name in o) return o[name];
    const want = name.replace(/_/g, '').toLowerCase();
    for (const k of Object.keys(o)) {
      if (k.replace(/_/g, '').toLowerCase() === want) return o[k];
    }
    return undefined;
  }

  // ---------------------------------------------------------------- formatting

  // rate matches the engine's HumanRate: "3.40 Kpps".
  function rate(v, unit) {
    if (v == null || typeof v !== 'number' || !isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + ' G' + unit;
    if (a >= 1e6) return (v / 1e6).toFixed(2) + ' M' + unit;
    if (a >= 1e3) return (v / 1e3).toFixed(2) + ' K' + unit;
    if (v === 0) return '0 ' + unit;
    return v.toFixed(a < 10 ? 2 : 1) + ' ' + unit;
  }

  function count(v) {
    if (v == null || v === '') return '–';
    const n = Number(v);
    if (!isFinite(n)) return String(v);
    return n.toLocaleString('en-US', { maximumFractionDigits: 0 });
  }

  function pct(share, digits) {
    if (share == null || !isFinite(share)) return '–';
    const d = digits == null ? 1 : digits;
    const p = share * 100;
    const least = Math.pow(10, -d);
    if (p > 0 && p < least) return '<' + least.toFixed(d) + '%';
    return p.toFixed(d) + '%';
  }

  function pad(n, w) { return String(n).padStart(w || 2, '0'); }

  // parseTime accepts Go's RFC 3339 with nanoseconds; Go's zero time is "no time".
  function parseTime(s) {
    if (!s) return null;
    if (typeof s === 'number') return s > 1e14 ? s / 1e6 : s; // Unix ns or ms
    const ms = Date.parse(String(s).replace(/(\.\d{3})\d+/, '$1'));
    if (!isFinite(ms) || ms < 86400000) return null;
    return ms;
  }

  function fmtTime(ms, withZone) {
    if (ms == null) return '–';
    const d = new Date(ms);
    let s = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    if (withZone) {
      const off = -d.getTimezoneOffset();
      s += ' ' + (off >= 0 ? '+' : '-') + pad(Math.floor(Math.abs(off) / 60)) + ':' + pad(Math.abs(off) % 60);
    }
    return s;
  }

  function fmtClock(ms) {
    const d = new Date(ms);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function timeEl(ms, withZone) {
    return h('span', { class: 'nowrap', title: ms == null ? null : new Date(ms).toISOString() }, fmtTime(ms, withZone));
  }

  function fmtDur(sec) {
    if (sec == null || !isFinite(sec)) return '–';
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return sec + 's';
    if (sec < 3600) return Math.floor(sec / 60) + 'm ' + pad(sec % 60) + 's';
    if (sec < 86400) return Math.floor(sec / 3600) + 'h ' + pad(Math.floor(sec % 3600 / 60)) + 'm';
    return Math.floor(sec / 86400) + 'd ' + pad(Math.floor(sec % 86400 / 3600)) + 'h';
  }

  // fmtGoDuration shows a Go time.Duration, which JSON carries as nanoseconds.
  function fmtGoDuration(v) {
    if (v == null || v === '') return '–';
    if (typeof v === 'string') return v;
    const s = v / 1e9;
    if (s === 0) return '0s';
    if (Math.abs(s) < 1) return (v / 1e6).toFixed(Math.abs(v) < 1e7 ? 1 : 0) + 'ms';
    if (Number.isInteger(s) && s < 3600) {
      const m = Math.floor(s / 60);
      return (m ? m + 'm' : '') + (s % 60 ? (s % 60) + 's' : '');
    }
    return fmtDur(s);
  }

  const PROTOS = { 1: 'icmp', 2: 'igmp', 6: 'tcp', 17: 'udp', 41: 'ipv6', 47: 'gre', 50: 'esp', 51: 'ah', 58: 'icmpv6', 89: 'ospf', 103: 'pim', 132: 'sctp' };
  function protoName(p) { return p == null ? '' : (PROTOS[p] || String(p)); }

  // flagText writes TCP flags as tcpdump and the engine's characterization do: "S", "SA".
  function flagText(f) {
    if (f == null) return '';
    const letters = 'FSRPAUEC';
    let s = '';
    for (let i = 0; i < 8; i++) if (f & (1 << i)) s += letters[i];
    return s || 'none';
  }

  function anomalyDuration(a) {
    const start = parseTime(a.start);
    if (start == null) return null;
    const end = parseTime(a.end);
    if (end != null) return (end - start) / 1000;
    const last = parseTime(a.last_update);
    // Ongoing: count to now, unless the engine's clock is behind the browser's (a replay in
    // flow time), where the latest evaluation is the better end.
    let now = Date.now();
    if (last != null && (now < last || now - last > 3600e3)) now = last;
    return (now - start) / 1000;
  }

  // ---------------------------------------------------------------- API access

  class APIError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  let tokenPrompt = null;

  // askToken asks once per page load; requests that meet a 401 meanwhile wait for the same
  // answer instead of asking again, and a cancelled dialog stays closed (the error view
  // offers a button to ask again). It is an in-page form rather than window.prompt, which
  // blocks the page and cannot hide what is typed.
  function askToken() {
    if (!tokenPrompt) {
      tokenPrompt = new Promise(resolve => {
        const input = h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', size: 40, 'aria-label': 'API token' });
        const done = tok => {
          dialog.remove();
          if (tok) {
            sessionStorage.setItem(TOKEN_KEY, tok);
            updateTokenButton();
          }
          resolve(!!tok);
        };
        const dialog = h('div', { class: 'token-dialog', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'token-title' },
          h('form', {
            onsubmit: ev => { ev.preventDefault(); done(input.value.trim()); },
            onkeydown: ev => { if (ev.key === 'Escape') done(''); },
          },
          h('h2', { id: 'token-title' }, 'API token'),
          h('p', { class: 'muted' }, 'This flowhound API requires its bearer token. It is kept for this browser tab only.'),
          input,
          h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Use token'), h('button', { type: 'button', onclick: () => done('') }, 'Cancel'))));
        document.body.append(dialog);
        input.focus();
      });
    }
    return tokenPrompt;
  }

  function updateTokenButton() {
    document.getElementById('forget-token').hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(path) {
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: 'application/json' };
      const tok = sessionStorage.getItem(TOKEN_KEY);
      if (tok) headers.Authorization = 'Bearer ' + tok;
      let r;
      try {
        r = await fetch(path, { headers, cache: 'no-store' });
      } catch (e) {
        throw new APIError(0, 'cannot reach flowhound: ' + e.message);
      }
      // Retry once, and only with a token other than the one just refused.
      if (r.status === 401 && attempt === 0 && await askToken() && sessionStorage.getItem(TOKEN_KEY) !== tok) continue;
      const text = await r.text();
      let body = null;
      try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
      if (!r.ok) {
        throw new APIError(r.status, (body && body.error) || text.trim() || r.statusText);
      }
      if (body === null) throw new APIError(r.status, path + ': the answer is not JSON');
      return body;
    }
  }

  function errorBox(err) {
    const box = h('div', { class: 'error', role: 'alert' },
      h('strong', null, err.status ? 'HTTP ' + err.status + ': ' : 'Error: '), err.message || String(err));
    if (err.status === 401) {
      box.append(' ', h('button', {
        type: 'button', class: 'small', onclick: () => {
          tokenPrompt = null;
          askToken().then(ok => { if (ok) route(); });
        },
      }, 'Enter token'));
    }
    return box;
  }

  function setRefresh(ok, msg) {
    const el = document.getElementById('refresh-state');
    el.textContent = ok ? 'updated ' + fmtClock(Date.now()) : msg;
    el.style.color = ok ? '' : '#ff8a80';
  }

  // ---------------------------------------------------------------- router

  let generation = 0;
  let timers = [];

  // every runs fn every ms while the page is shown, skipping a tick while the previous
  // run is still waiting (on a slow API or on the token dialog).
  function every(ms, fn) {
    let busy = false;
    timers.push(setInterval(async () => {
      if (busy) return;
      busy = true;
      try { await fn(); } finally { busy = false; }
    }, ms));
  }

  function route() {
    generation++;
    timers.forEach(clearInterval);
    timers = [];
    const hash = location.hash.replace(/^#/, '') || '/';
    const qi = hash.indexOf('?');
    const path = qi >= 0 ? hash.slice(0, qi) : hash;
    const params = new URLSearchParams(qi >= 0 ? hash.slice(qi + 1) : '');
    const parts = path.split('/').filter(Boolean).map(p => {
      try { return decodeURIComponent(p); } catch (e) { return p; }
    });
    const page = parts[0] || 'anomalies';
    const ctx = { gen: generation, params, live: () => ctx.gen === generation };
    document.body.classList.remove('printmode');
    const navName = { anomaly: 'anomalies', resource: 'resources' }[page] || page;
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('active', a.dataset.nav === navName);
    }
    window.scrollTo(0, 0);
    switch (page) {
      case 'anomalies': return pageAnomalies(ctx);
      case 'anomaly': return pageAnomaly(ctx, parts[1] || '', parts[2] === 'print');
      case 'exporters': return pageExporters(ctx);
      case 'resources': return pageResources(ctx);
      case 'resource': return pageResource(ctx, parts[1] || '', parts.slice(2).join('/'));
      case 'rules': return pageRules(ctx);
    }
    document.title = 'flowhound';
    show(h('div', { class: 'error' }, 'No such page: ' + path), h('a', { href: '#/' }, '← Anomalies'));
  }

  function hashWith(base, params) {
    const q = new URLSearchParams();
    for (const k of Object.keys(params)) if (params[k]) q.set(k, params[k]);
    const s = q.toString();
    return base + (s ? '?' + s : '');
  }

  function anomalyHref(id) { return '#/anomaly/' + encodeURIComponent(id); }
  function resourceHref(type, key) { return '#/resource/' + encodeURIComponent(type) + '/' + encodeURIComponent(key); }

  // ---------------------------------------------------------------- shared widgets

  function importanceBadge(imp) {
    const v = String(imp || 'low').toLowerCase();
    return h('span', { class: 'badge ' + (['high', 'medium', 'low'].includes(v) ? v : 'low') }, v);
  }

  function statusPill(st) {
    const v = String(st || '');
    return h('span', { class: 'status ' + v }, v || '?');
  }

  function shareCell(share) {
    const w = Math.max(0, Math.min(1, Number(share) || 0)) * 100;
    return h('div', { class: 'sharecell' },
      h('div', { class: 'sharebar' }, h('span', { style: { width: w.toFixed(1) + '%' } })),
      h('span', { class: 'pct' }, pct(share)));
  }

  function segmented(options, current, onpick) {
    return h('span', { class: 'seg' }, options.map(([value, label]) =>
      h('button', { type: 'button', class: value === current ? 'on' : null, onclick: () => onpick(value) }, label)));
  }

  function panel(title, right, ...body) {
    return h('section', { class: 'panel' }, h('h2', null, title, right ? h('span', { class: 'right' }, right) : null), body);
  }

  // sortableTable renders rows with clickable headers. cols: {label, num, key(row) for
  // sorting, cell(row) → node or text}.
  function sortableTable(cols, rows, state, rowAttrs, onsort) {
    const sorted = rows.slice();
    const col = cols[state.col];
    if (col && col.key) {
      sorted.sort((a, b) => {
        const x = col.key(a), y = col.key(b);
        const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
        return state.asc ? c : -c;
      });
    }
    const head = h('tr', null, cols.map((c, i) => h('th', {
      class: [c.num ? 'num' : '', c.key ? 'sortable' : '', i === state.col ? 'sorted' + (state.asc ? ' asc' : '') : ''].join(' ').trim() || null,
      title: c.title || null,
      onclick: c.key ? () => {
        if (state.col === i) state.asc = !state.asc; else { state.col = i; state.asc = !!c.ascFirst; }
        onsort();
      } : null,
    }, c.label)));
    return h('table', null, h('thead', null, head), h('tbody', null, sorted.map(r =>
      h('tr', rowAttrs ? rowAttrs(r) : null, cols.map(c => h('td', { class: c.num ? 'num' : (c.cls || null) }, c.cell(r)))))));
  }

  // ---------------------------------------------------------------- chart

  function niceStep(span, n) {
    const raw = span / Math.max(1, n);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }

  // lineChart draws a time series as inline SVG. opts: series [{t ms, v}], unit,
  // overlay [{t, v}] (dashed, e.g. a baseline), hlines [{v, cls, label}]. The SVG is
  // redrawn at the width it gets, so that its text stays at its real size.
  function lineChart(opts) {
    const pts = (opts.series || []).filter(p => p.t != null && isFinite(p.v)).sort((a, b) => a.t - b.t);
    const over = (opts.overlay || []).filter(p => p.t != null && isFinite(p.v)).sort((a, b) => a.t - b.t);
    const hl = (opts.hlines || []).filter(l => isFinite(l.v) && l.v > 0);
    const wrap = h('div', { class: 'chart-wrap' });
    if (pts.length === 0 && over.length === 0) {
      wrap.append(h('div', { class: 'empty' }, 'No rate history yet.'));
      return wrap;
    }
    const tip = h('div', { class: 'chart-tip', hidden: true });
    let width = 0;
    const draw = W => {
      width = W;
      wrap.replaceChildren(drawChart(W, pts, over, hl, opts, tip), tip);
    };
    draw(860);
    if (window.ResizeObserver) {
      const ro = new ResizeObserver(() => {
        if (!wrap.isConnected) { ro.disconnect(); return; }
        const w = Math.round(wrap.clientWidth);
        if (w > 200 && Math.abs(w - width) > 2) draw(w);
      });
      ro.observe(wrap);
    }
    return wrap;
  }

  // axisRate is rate() without trailing zeros: "2.5 Kpps", "300 Mbps".
  function axisRate(v, unit) {
    return rate(v, unit).replace(/(\.\d*?)0+ /, '$1 ').replace('. ', ' ');
  }

  function drawChart(W, pts, over, hl, opts, tip) {
    const H = 230, R = 12, T = 10, B = 22;
    const times = pts.concat(over).map(p => p.t);
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t1 - t0 < 10e3) { t0 -= 5e3; t1 += 5e3; }
    let vmax = Math.max(0, ...pts.map(p => p.v), ...over.map(p => p.v), ...hl.map(l => l.v));
    if (vmax <= 0) vmax = 1;
    const step = niceStep(vmax * 1.08, 4);
    vmax = Math.ceil(vmax * 1.08 / step) * step;
    const ticks = [];
    for (let v = 0; v <= vmax + step / 2; v += step) ticks.push(v);
    // The left margin fits the longest axis label (10px monospace, about 6px a character).
    const L = 12 + 6.1 * Math.max(...ticks.map(v => axisRate(v, opts.unit).length));
    const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
    const y = v => T + (1 - v / vmax) * (H - T - B);

    const grid = svg('g', { class: 'grid' });
    const axis = svg('g', { class: 'axis' });
    for (const v of ticks) {
      grid.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      axis.append(svg('text', { x: L - 6, y: y(v) + 3, 'text-anchor': 'end' }, axisRate(v, opts.unit)));
    }
    const tstep = niceTimeStep((t1 - t0) / Math.max(2, Math.floor((W - L - R) / 90)));
    for (let t = Math.ceil(t0 / tstep) * tstep; t <= t1; t += tstep) {
      grid.append(svg('line', { x1: x(t), x2: x(t), y1: T, y2: H - B }));
      const d = new Date(t);
      const label = tstep >= 86400e3 ? (d.getMonth() + 1) + '-' + pad(d.getDate())
        : tstep >= 60e3 ? pad(d.getHours()) + ':' + pad(d.getMinutes()) : fmtClock(t);
      // Labels at the ends are anchored inwards so that they are not cut off.
      const anchor = x(t) > W - R - 28 ? 'end' : x(t) < L + 28 ? 'start' : 'middle';
      axis.append(svg('text', { x: x(t), y: H - B + 14, 'text-anchor': anchor }, label));
    }
    const root = svg('svg', { class: 'chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': opts.label || 'rate chart' }, grid, axis);

    const line = ps => ps.map((p, i) => (i ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.v).toFixed(1)).join(' ');
    if (pts.length) {
      root.append(svg('path', { class: 'area', d: line(pts) + ' L' + x(pts[pts.length - 1].t).toFixed(1) + ' ' + y(0) + ' L' + x(pts[0].t).toFixed(1) + ' ' + y(0) + ' Z' }));
    }
    if (over.length) root.append(svg('path', { class: 'expected', d: line(over) }));
    for (const l of hl) {
      root.append(svg('line', { class: l.cls, x1: L, x2: W - R, y1: y(l.v), y2: y(l.v) }));
      root.append(svg('text', { class: 'label ' + l.cls + '-l', x: W - R - 4, y: y(l.v) - 4, 'text-anchor': 'end' }, l.label + ' ' + rate(l.v, opts.unit)));
    }
    if (pts.length) {
      root.append(svg('path', { class: 'series', d: line(pts) }));
      if (pts.length === 1) root.append(svg('circle', { class: 'dot', cx: x(pts[0].t), cy: y(pts[0].v), r: 3 }));
    }

    // Hover read-out: the nearest point's time and value.
    const cursor = svg('line', { class: 'cursor', y1: T, y2: H - B, visibility: 'hidden' });
    const dot = svg('circle', { class: 'dot', r: 3.5, visibility: 'hidden' });
    const catcher = svg('rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: 'transparent' });
    root.append(cursor, dot, catcher);
    const hoverPts = pts.length ? pts : over;
    catcher.addEventListener('mousemove', ev => {
      const box = root.getBoundingClientRect();
      const scale = box.width / W;
      const t = t0 + ((ev.clientX - box.left) / scale - L) / (W - L - R) * (t1 - t0);
      let best = hoverPts[0];
      for (const p of hoverPts) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      const px = x(best.t), py = y(best.v);
      cursor.setAttribute('x1', px); cursor.setAttribute('x2', px); cursor.setAttribute('visibility', 'visible');
      dot.setAttribute('cx', px); dot.setAttribute('cy', py); dot.setAttribute('visibility', 'visible');
      tip.textContent = fmtClock(best.t) + '  ' + rate(best.v, opts.unit);
      tip.hidden = false;
      tip.style.left = Math.min(px * scale + 8, box.width - 160) + 'px';
      tip.style.top = Math.max(0, py * scale - 26) + 'px';
    });
    catcher.addEventListener('mouseleave', () => {
      cursor.setAttribute('visibility', 'hidden'); dot.setAttribute('visibility', 'hidden'); tip.hidden = true;
    });
    return root;
  }

  // within keeps the part of a slow series (a baseline every 30 minutes) that spans a
  // recent one, with values interpolated at its ends, so both share one time axis.
  function within(slow, fast) {
    if (fast.length < 2 || slow.length < 2) return slow;
    const s0 = fast[0].t, s1 = fast[fast.length - 1].t;
    const at = t => {
      for (let i = 0; i + 1 < slow.length; i++) {
        const a = slow[i], b = slow[i + 1];
        if (a.t <= t && t <= b.t) return b.t === a.t ? a.v : a.v + (b.v - a.v) * (t - a.t) / (b.t - a.t);
      }
      return null;
    };
    const out = [];
    const v0 = at(s0), v1 = at(s1);
    if (v0 != null) out.push({ t: s0, v: v0 });
    for (const p of slow) if (p.t > s0 && p.t < s1) out.push(p);
    if (v1 != null) out.push({ t: s1, v: v1 });
    return out.length >= 2 ? out : [];
  }

  function niceTimeStep(ms) {
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800]) {
      if (s * 1000 >= ms) return s * 1000;
    }
    return 604800e3;
  }

  // ---------------------------------------------------------------- anomaly list

  const listState = { status: '', since: '', q: '' };

  function pageAnomalies(ctx) {
    listState.status = ctx.params.get('status') || '';
    listState.since = ctx.params.get('since') || '';
    if (ctx.params.has('q')) listState.q = ctx.params.get('q');
    document.title = 'Anomalies · flowhound';
    const body = h('div', { class: 'table-wrap' }, h('div', { class: 'empty' }, 'Loading…'));
    const summary = h('span', { class: 'muted' });
    const search = h('input', {
      type: 'search', placeholder: 'filter rule, resource, name…', value: listState.q, size: 28,
      oninput: () => { listState.q = search.value; draw(); },
    });
    const go = (status, since) => { location.hash = hashWith('#/', { status, since, q: listState.q }); };
    const sinceSel = h('select', { onchange: () => go(listState.status, sinceSel.value), title: 'started within' },
      [['', 'any time'], ['1h', 'last hour'], ['24h', 'last 24 h'], ['168h', 'last 7 days']].map(([v, l]) =>
        h('option', { value: v, selected: v === listState.since }, l)));
    show(
      h('div', { class: 'toolbar' },
        h('h1', null, 'Anomalies'),
        segmented([['', 'All'], ['ongoing', 'Ongoing'], ['pending', 'Pending'], ['ended', 'Ended']], listState.status,
          v => go(v, listState.since)),
        sinceSel, search, h('span', { class: 'spacer' }), summary),
      h('section', { class: 'panel' }, body));

    let list = null;
    let error = null;

    function draw() {
      if (error) { body.replaceChildren(errorBox(error)); return; }
      if (!list) return;
      const q = listState.q.trim().toLowerCase();
      const rows = q ? list.filter(a => [a.rule, a.resource && a.resource.key, a.resource && a.resource.name, a.resource && a.resource.type, a.direction, a.id]
        .some(s => s && String(s).toLowerCase().includes(q))) : list;
      const ongoing = list.filter(a => a.status === 'ongoing').length;
      summary.textContent = list.length + ' anomal' + (list.length === 1 ? 'y' : 'ies') + (ongoing ? ', ' + ongoing + ' ongoing' : '');
      if (rows.length === 0) {
        body.replaceChildren(h('div', { class: 'empty' }, list.length ? 'No anomaly matches the filter.' : 'No anomalies' + (listState.status ? ' with status ' + listState.status : '') + '.'));
        return;
      }
      body.replaceChildren(h('table', { class: 'anomalies' },
        h('thead', null, h('tr', null,
          h('th', null, 'Importance'), h('th', null, 'Rule'), h('th', null, 'Resource'), h('th', null, 'Direction'),
          h('th', null, 'Severity'), h('th', { class: 'num' }, 'Peak'), h('th', null, 'Start'), h('th', { class: 'num' }, 'Duration'), h('th', null, 'Status'))),
        h('tbody', null, rows.map(anomalyRow))));
    }

    async function load() {
      const q = new URLSearchParams();
      if (listState.status) q.set('status', listState.status);
      if (listState.since) q.set('since', listState.since);
      try {
        const r = await api('/api/anomalies' + (q.toString() ? '?' + q : ''));
        if (!ctx.live()) return;
        list = Array.isArray(r.anomalies) ? r.anomalies : [];
        error = null;
        setRefresh(true);
      } catch (e) {
        if (!ctx.live()) return;
        error = e;
        setRefresh(false, 'refresh failed');
      }
      draw();
    }
    load();
    every(5000, load);
    every(1000, tickDurations);
  }

  function peakText(a) {
    const m = Object.keys(a.threshold || {})[0] || 'pps';
    if (/bps$/.test(m)) return rate(a.peak && a.peak.bps, 'bps');
    if (/fps$/.test(m)) return rate(a.peak && a.peak.fps, 'fps');
    return rate(a.peak && a.peak.pps, 'pps');
  }

  function anomalyRow(a) {
    const res = a.resource || {};
    const href = anomalyHref(a.id);
    const live = a.status !== 'ended' && !a.end;
    return h('tr', {
      class: 'clickable', 'data-id': a.id,
      onclick: ev => { if (!ev.target.closest('a') && !String(window.getSelection())) location.hash = href; },
    },
    h('td', null, importanceBadge(a.importance)),
    h('td', null, h('a', { href }, a.rule || '?'), a.kind ? h('div', { class: 'muted' }, a.kind) : null),
    h('td', null,
      h('span', { class: 'flag' }, res.type || '?'), ' ',
      h('span', { class: 'mono' }, res.key || ''),
      res.name ? h('div', { class: 'muted' }, res.name) : null),
    h('td', null, a.direction || ''),
    h('td', { class: 'nowrap' }, a.severity_text || (a.severity_pct != null ? a.severity_pct.toFixed(1) + '%' : '')),
    h('td', { class: 'num' }, peakText(a)),
    h('td', null, timeEl(parseTime(a.start))),
    h('td', { class: 'num', 'data-live-start': live ? String(parseTime(a.start)) : null, 'data-last': live ? String(parseTime(a.last_update) || '') : null }, fmtDur(anomalyDuration(a))),
    h('td', null, statusPill(a.status)));
  }

  function tickDurations() {
    for (const el of app.querySelectorAll('[data-live-start]')) {
      el.textContent = fmtDur(anomalyDuration({ start: Number(el.dataset.liveStart), last_update: Number(el.dataset.last) || null }));
    }
  }

  // ---------------------------------------------------------------- anomaly page

  let chartMetric = 'pps';

  function pageAnomaly(ctx, id, printMode) {
    document.title = 'Anomaly ' + id + ' · flowhound';
    if (printMode) document.body.classList.add('printmode');
    let lastSeen = null;
    async function load(first) {
      let a;
      try {
        a = await api('/api/anomalies/' + encodeURIComponent(id));
      } catch (e) {
        if (!ctx.live()) return;
        if (first) show(backLink(), errorBox(e)); else setRefresh(false, 'refresh failed');
        return;
      }
      if (!ctx.live()) return;
      setRefresh(true);
      // Re-render only when the anomaly changed and the operator is not selecting text.
      if (!first && (a.last_update === lastSeen || String(window.getSelection()))) return;
      lastSeen = a.last_update;
      renderAnomaly(a, printMode);
      if (first && printMode) setTimeout(() => window.print(), 300);
      if (a.status === 'ended' || a.end) timers.forEach(clearInterval);
    }
    load(true);
    every(5000, () => load(false));
    every(1000, tickDurations);
  }

  function backLink() {
    return h('div', { class: 'no-print', style: { marginBottom: '8px' } }, h('a', { href: '#/' }, '← Anomalies'));
  }

  function renderAnomaly(a, printMode) {
    const res = a.resource || {};
    document.title = (a.rule || 'anomaly') + ' ' + (res.key || '') + ' · flowhound';
    const start = parseTime(a.start), end = parseTime(a.end), last = parseTime(a.last_update);
    const live = !end && a.status !== 'ended';
    const imp = String(a.importance || '').toLowerCase();

    const facts = h('div', { class: 'facts' },
      fact('Start', timeEl(start, true)),
      fact('End', end != null ? timeEl(end, true) : h('span', null, a.status || 'ongoing')),
      fact('Duration', h('span', { 'data-live-start': live ? String(start) : null, 'data-last': live ? String(last || '') : null }, fmtDur(anomalyDuration(a)))),
      fact('Last update', timeEl(last)),
      a.detection_delay_s ? fact('Detected after', a.detection_delay_s.toFixed(2) + ' s') : null,
      fact('ID', h('span', { class: 'mono' }, a.id || '')));

    const head = h('section', { class: 'panel', id: 'anomaly-head' },
      h('div', { class: 'print-only muted' }, 'flowhound anomaly report · printed ' + fmtTime(Date.now(), true)),
      h('div', { class: 'ahead' },
        h('div', { class: 'title' },
          h('h1', null, importanceBadge(a.importance), h('a', { href: hashWith('#/rules', { q: a.rule }) }, a.rule || '?'), statusPill(a.status),
            h('span', { class: 'muted', style: { fontWeight: 'normal', fontSize: '13px' } }, a.kind || '')),
          h('div', { class: 'severity ' + imp }, a.severity_text || (a.severity_pct != null ? a.severity_pct.toFixed(1) + '%' : '')),
          h('div', null,
            h('span', { class: 'muted' }, (a.direction || '') + ' ' + (res.type || '') + ' '),
            h('a', { class: 'victim', href: resourceHref(res.type || 'host', res.key || '') }, res.key || ''),
            res.name ? h('span', { class: 'muted' }, '  · ' + res.name) : null),
          a.description ? h('div', { class: 'muted', style: { marginTop: '4px' } }, a.description) : null,
          facts),
        h('div', { class: 'links no-print' },
          h('a', { href: '/api/anomalies/' + encodeURIComponent(a.id) + '?download=1', download: 'anomaly-' + a.id + '.json' }, 'Download JSON report'),
          printMode
            ? h('a', { href: '#', onclick: ev => { ev.preventDefault(); window.print(); } }, 'Print')
            : h('a', { href: anomalyHref(a.id) + '/print', target: '_blank', rel: 'noopener' }, 'Printable page'),
          h('a', { href: '#/' }, '← All anomalies'))));

    show(backLink(), head,
      h('div', { class: 'grid-rates' }, ratesPanel(a), chartPanel(a)),
      tracebackPanel(a),
      characterizationPanel(a),
      filtersPanel(a),
      snapshotPanel(a));
  }

  function fact(k, v) {
    return h('div', null, h('span', { class: 'k' }, k), v);
  }

  function ratesPanel(a) {
    const th = a.threshold || {};
    const rows = [['Observed', a.observed], ['Peak', a.peak]];
    // Misuse and signature rules compare with a threshold, not a baseline: an all-zero
    // expectation there means "not computed" and is left out rather than shown as 0.
    const e = a.expected || {};
    if (a.kind === 'profiled' || e.bps > 0 || e.pps > 0 || e.fps > 0) rows.push(['Expected', e]);
    const thKeys = Object.keys(th);
    return panel('Rates', null,
      h('table', { class: 'rates compact' },
        h('thead', null, h('tr', null, h('th'), h('th', { class: 'num' }, 'bits/s'), h('th', { class: 'num' }, 'packets/s'), h('th', { class: 'num' }, 'flows/s'))),
        h('tbody', null, rows.map(([label, r]) => h('tr', null, h('td', null, label),
          h('td', { class: 'num' }, rate(r && r.bps, 'bps')), h('td', { class: 'num' }, rate(r && r.pps, 'pps')), h('td', { class: 'num' }, rate(r && r.fps, 'fps')))))),
      thKeys.length ? h('dl', { class: 'kv', style: { marginTop: '10px' } },
        thKeys.map(k => [h('dt', null, 'Threshold ' + k), h('dd', null, thresholdText(k, th[k]))])) : null,
      h('dl', { class: 'kv' },
        h('dt', null, 'Severity'), h('dd', null, a.severity_pct != null ? a.severity_pct.toFixed(1) + '% of the ' + (a.kind === 'profiled' ? 'expected rate' : 'threshold') : '–')));
  }

  function thresholdText(metric, v) {
    const m = /(bps|pps|fps)$/.exec(metric);
    return m ? rate(v, m[1]) : count(v);
  }

  function chartPanel(a) {
    const holder = h('div');
    const hist = (a.history || []).map(p => ({ t: parseTime(field(p, 't') || field(p, 'time')), bps: p.bps, pps: p.pps }));
    const draw = () => {
      const unit = chartMetric;
      const hlines = [];
      for (const [k, v] of Object.entries(a.threshold || {})) {
        if ((unit === 'pps' && /pps$/.test(k)) || (unit === 'bps' && /bps$/.test(k))) hlines.push({ v, cls: 'limit', label: 'limit ' + k });
      }
      const exp = a.expected && a.expected[unit];
      if (exp > 0) hlines.push({ v: exp, cls: 'expected', label: 'expected' });
      holder.replaceChildren(
        lineChart({ series: hist.map(p => ({ t: p.t, v: p[unit] })), unit, hlines, label: 'observed ' + unit }),
        h('div', { class: 'legend' },
          h('span', null, h('i'), 'observed ' + unit),
          hlines.some(l => l.cls === 'limit') ? h('span', null, h('i', { class: 'limit' }), 'threshold') : null,
          hlines.some(l => l.cls === 'expected') ? h('span', null, h('i', { class: 'expected' }), 'expected') : null));
      toggle.replaceChildren(segmented([['pps', 'pps'], ['bps', 'bps']], chartMetric, m => { chartMetric = m; draw(); }));
    };
    const toggle = h('span', { class: 'no-print' });
    draw();
    return panel('Rate', toggle, holder);
  }

  function tracebackPanel(a) {
    const tb = a.traceback || [];
    if (!tb.length) return panel('Traceback', null, h('div', { class: 'empty' }, 'No ingress recorded.'));
    return panel('Traceback', h('span', { class: 'muted' }, 'where the traffic enters'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'traceback' },
        h('thead', null, h('tr', null, h('th', null, 'Exporter'), h('th', null, 'Address'), h('th', null, 'Input interface'), h('th', { class: 'num' }, 'ifIndex'),
          h('th', { class: 'num' }, 'bits/s'), h('th', { class: 'num' }, 'packets/s'), h('th', { style: { width: '28%' } }, 'Share'))),
        h('tbody', null, tb.map(t => h('tr', null,
          h('td', null, h('strong', null, t.exporter_name || t.exporter || '')),
          h('td', { class: 'mono' }, t.exporter || ''),
          h('td', null, t.in_if_name || h('span', { class: 'muted' }, 'if' + (t.in_if != null ? t.in_if : '?'))),
          h('td', { class: 'num' }, t.in_if != null ? String(t.in_if) : ''),
          h('td', { class: 'num' }, rate(t.bps, 'bps')),
          h('td', { class: 'num' }, rate(t.pps, 'pps')),
          h('td', null, shareCell(t.share))))))));
  }

  function countTable(title, rows, mono) {
    return h('div', null, h('h3', null, title),
      rows && rows.length
        ? h('table', { class: 'compact' }, h('tbody', null, rows.map(r => h('tr', null,
          h('td', { class: mono ? 'mono' : null }, r.value == null ? '' : String(r.value)),
          h('td', { style: { width: '55%' } }, shareCell(r.share))))))
        : h('div', { class: 'muted' }, '–'));
  }

  function characterizationPanel(a) {
    const c = a.characterization || {};
    const ps = c.packet_size || {};
    const est = v => (v ? '≈ ' + count(v) : '–');
    return panel('Characterization', h('span', { class: 'muted' }, c.sampled_flows ? 'from ' + count(c.sampled_flows) + ' sampled flows' : ''),
      h('div', { class: 'charac' },
        countTable('Protocols', c.protocols),
        countTable('Source prefixes', c.src_prefixes, true),
        countTable('Source ports', c.src_ports, true),
        countTable('Destination ports', c.dst_ports, true),
        countTable('TCP flags', c.tcp_flags, true),
        h('div', null, h('h3', null, 'Packets and sources'),
          h('dl', { class: 'kv' },
            h('dt', null, 'Packet size'), h('dd', null, ps.mean != null ? count(ps.min) + ' / ' + (Math.round(ps.mean * 10) / 10) + ' / ' + count(ps.max) + ' bytes' : '–'),
            h('dt', { class: 'muted' }, ''), h('dd', { class: 'muted' }, 'min / mean / max'),
            h('dt', null, 'Sources'), h('dd', null, est(c.src_count_estimate)),
            c.dst_count_estimate ? [h('dt', null, 'Destinations'), h('dd', null, est(c.dst_count_estimate))] : null,
            h('dt', null, 'Sampled flows'), h('dd', null, count(c.sampled_flows))))));
  }

  const FILTERS = [
    ['nftables', 'nftables'],
    ['bpf', 'BPF (tcpdump)'],
    ['cisco_acl', 'Cisco IOS ACL'],
    ['juniper', 'Junos firewall filter'],
    ['flowspec_exabgp', 'Flowspec (ExaBGP)'],
    ['flowspec_gobgp', 'Flowspec (GoBGP)'],
    ['nfdump', 'nfdump filter'],
  ];

  async function copyText(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch (e) { /* fall back below */ }
    // Plain http on a management address is not a secure context: the Clipboard API is
    // missing there, so copy through a selected off-screen textarea.
    const ta = h('textarea', { readonly: true, style: { position: 'fixed', top: '-1000px', left: '0', opacity: '0' } });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    ta.remove();
    return ok;
  }

  function filtersPanel(a) {
    const f = a.filters || {};
    const known = new Set(FILTERS.map(x => x[0]));
    const list = FILTERS.filter(([k]) => f[k]).concat(Object.keys(f).filter(k => !known.has(k) && f[k]).sort().map(k => [k, k]));
    const cov = a.filter_coverage;
    return panel('Filters', h('span', { class: 'muted' }, 'ready to paste'),
      cov ? h('div', { class: 'coverage' },
        h('div', null, h('span', { class: 'muted' }, 'Attack traffic matched '), h('strong', null, pct(cov.attack_share))),
        cov.normal_share != null ? h('div', null, h('span', { class: 'muted' }, 'Normal traffic matched '), h('strong', null, pct(cov.normal_share, 2))) : null) : null,
      list.length ? list.map(([k, label]) => {
        const note = h('span', { class: 'copied' });
        return h('div', { class: 'filter', 'data-filter': k },
          h('div', { class: 'fhead' }, h('span', { class: 'fname' }, label),
            h('button', {
              type: 'button', class: 'small no-print', onclick: async () => {
                const ok = await copyText(f[k]);
                note.textContent = ok ? 'copied' : 'copy failed: select the text';
                setTimeout(() => { note.textContent = ''; }, 2000);
              },
            }, 'Copy'), note),
          h('pre', null, f[k]));
      }) : h('div', { class: 'empty' }, 'No filters were generated.'));
  }

  const SNAP_KNOWN = new Set(['exporter', 'in_if', 'out_if', 'src_addr', 'src_port', 'dst_addr', 'dst_port', 'proto', 'tcp_flags',
    'packets', 'bytes', 'sampling_rate', 'start', 'end', 'version', 'observation_domain']);

  function snapshotPanel(a) {
    const flows = a.snapshot || [];
    if (!flows.length) return panel('Snapshot', null, h('div', { class: 'empty' }, 'No flows kept.'));
    const names = {};
    for (const t of a.traceback || []) if (t.exporter_name) names[t.exporter] = t.exporter_name;
    const extra = [];
    for (const r of flows) for (const k of Object.keys(r)) if (!SNAP_KNOWN.has(k) && !extra.includes(k)) extra.push(k);
    const has = k => flows.some(r => r[k] != null);
    const cols = [];
    if (has('exporter')) {
      cols.push({ label: 'Exporter', cell: r => [names[r.exporter] ? h('strong', null, names[r.exporter] + ' ') : null, h('span', { class: 'mono' }, r.exporter || '')] });
    }
    if (has('in_if')) cols.push({ label: 'In', num: true, cell: r => r.in_if == null ? '' : String(r.in_if) });
    if (has('out_if')) cols.push({ label: 'Out', num: true, cell: r => r.out_if == null ? '' : String(r.out_if) });
    cols.push({ label: 'Source', mono: true, cell: r => hostPort(r.src_addr, r.src_port) });
    cols.push({ label: 'Destination', mono: true, cell: r => hostPort(r.dst_addr, r.dst_port) });
    cols.push({ label: 'Proto', cell: r => protoName(r.proto) });
    if (has('tcp_flags')) cols.push({ label: 'Flags', mono: true, cell: r => r.proto === 6 && r.tcp_flags != null ? flagText(r.tcp_flags) : '' });
    cols.push({ label: 'Packets', num: true, cell: r => count(r.packets) });
    cols.push({ label: 'Bytes', num: true, cell: r => count(r.bytes) });
    cols.push({ label: 'B/pkt', num: true, cell: r => r.packets ? String(Math.round(r.bytes / r.packets)) : '' });
    if (has('sampling_rate')) cols.push({ label: 'Sampling', num: true, cell: r => r.sampling_rate ? '1:' + r.sampling_rate : '' });
    if (has('start')) cols.push({ label: 'Start', mono: true, cell: r => { const t = parseTime(r.start); return t == null ? '' : fmtClock(t); } });
    for (const k of extra) {
      cols.push({ label: k, mono: true, cell: r => (r[k] == null ? '' : typeof r[k] === 'object' ? JSON.stringify(r[k]) : String(r[k])) });
    }
    return panel('Snapshot', h('span', { class: 'muted' }, flows.length + ' sampled flow records'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'snapshot compact' },
        h('thead', null, h('tr', null, cols.map(c => h('th', { class: c.num ? 'num' : null }, c.label)))),
        h('tbody', null, flows.map(r => h('tr', null, cols.map(c =>
          h('td', { class: c.num ? 'num' : c.mono ? 'mono' : null }, c.cell(r)))))))));
  }

  function hostPort(addr, port) {
    if (!addr) return '';
    if (port == null) return addr;
    return (addr.includes(':') ? '[' + addr + ']' : addr) + ':' + port;
  }

  // ---------------------------------------------------------------- exporters

  function pageExporters(ctx) {
    document.title = 'Exporters · flowhound';
    const body = h('div', { class: 'table-wrap' }, h('div', { class: 'empty' }, 'Loading…'));
    const summary = h('span', { class: 'muted' });
    show(h('div', { class: 'toolbar' }, h('h1', null, 'Exporters'), h('span', { class: 'spacer' }), summary),
      h('section', { class: 'panel' }, body));
    const open = new Set();
    let list = null;

    function draw() {
      if (!list) return;
      if (!list.length) { body.replaceChildren(h('div', { class: 'empty' }, 'No exporter has sent anything yet.')); return; }
      let dg = 0, rec = 0, lost = 0;
      for (const e of list) { dg += Number(field(e, 'datagrams')) || 0; rec += Number(field(e, 'records')) || 0; lost += Number(field(e, 'lost_flows')) || 0; }
      summary.textContent = list.length + ' exporters · ' + count(dg) + ' datagrams · ' + count(rec) + ' records · ' + pct(rec + lost ? lost / (rec + lost) : 0, 2) + ' lost';
      const tbody = h('tbody');
      for (const e of list) {
        const addr = String(field(e, 'exporter') || field(e, 'address') || '');
        const key = addr || '(none)';
        const datagrams = Number(field(e, 'datagrams')) || 0;
        const records = Number(field(e, 'records')) || 0;
        const lostFlows = Number(field(e, 'lost_flows')) || 0;
        const loss = records + lostFlows ? lostFlows / (records + lostFlows) : 0;
        const drops = field(e, 'drops') || {};
        const dropTotal = Object.values(drops).reduce((s, v) => s + (Number(v) || 0), 0);
        const quirks = field(e, 'quirks') || {};
        const skew = field(e, 'clock_skew');
        const skewSec = typeof skew === 'number' ? skew / 1e9 : null;
        const rateN = field(e, 'sampling_rate');
        const src = field(e, 'sampling_source');
        const lastSeen = field(e, 'last_seen');
        const lastMs = typeof lastSeen === 'number' ? (lastSeen ? lastSeen / 1e6 : null) : parseTime(lastSeen);
        const domains = field(e, 'domains') || [];
        const ifaces = field(e, 'interfaces') || [];
        const name = field(e, 'name') || field(e, 'exporter_name');
        const agent = field(e, 'sflow_agent');
        const expandable = domains.length || ifaces.length || Object.keys(drops).length || Object.keys(quirks).length;
        const toggle = () => { if (open.has(key)) open.delete(key); else open.add(key); draw(); };
        tbody.append(h('tr', { class: expandable ? 'clickable' : null, onclick: expandable ? toggle : null, 'data-exporter': addr },
          h('td', null, expandable ? h('span', { class: 'muted' }, open.has(key) ? '▾ ' : '▸ ') : null,
            name ? [h('strong', null, name), ' '] : null,
            h('span', { class: 'mono' }, addr || '(refused: exporter table full)'),
            agent && agent !== addr ? h('div', { class: 'muted' }, 'sFlow agent ' + agent) : null),
          h('td', { class: 'num' }, lastMs ? h('span', { title: new Date(lastMs).toISOString() }, fmtDur((Date.now() - lastMs) / 1000) + ' ago') : '–'),
          h('td', { class: 'num' }, count(datagrams)),
          h('td', { class: 'num' }, count(records)),
          h('td', { class: 'num', title: Object.entries(drops).map(([k, v]) => k + ': ' + v).join('\n') || null }, dropTotal ? h('span', { class: 'flag warn' }, count(dropTotal)) : '0'),
          h('td', { class: 'num' }, count(lostFlows)),
          h('td', { class: 'num' }, loss > 0.001 ? h('span', { class: 'flag warn' }, pct(loss, 2)) : pct(loss, 2)),
          h('td', { class: 'num' }, count(field(e, 'lost_datagrams'))),
          h('td', { class: 'num' }, count(field(e, 'restarts'))),
          h('td', { class: 'num' }, count(field(e, 'reordered'))),
          h('td', { class: 'num' }, count(field(e, 'templates')),
            field(e, 'pending') ? h('span', { class: 'muted' }, ' +' + field(e, 'pending') + ' waiting') : null,
            field(e, 'template_changes') ? h('div', { class: 'muted' }, field(e, 'template_changes') + ' changed') : null),
          h('td', { class: 'nowrap' }, rateN ? '1:' + rateN : h('span', { class: 'muted' }, 'unsampled'), src ? h('span', { class: 'muted' }, ' (' + src + ')') : null),
          h('td', { class: 'num' }, skewSec == null ? (skew ? String(skew) : '–')
            : h('span', { class: Math.abs(skewSec) >= 2 ? 'flag warn' : null, title: 'export time minus arrival time' }, (skewSec >= 0 ? '+' : '') + skewFmt(skewSec)))));
        if (open.has(key)) tbody.append(h('tr', null, h('td', { colspan: 13 }, exporterDetail(domains, ifaces, drops, quirks))));
      }
      body.replaceChildren(h('table', { class: 'exporters' },
        h('thead', null, h('tr', null, h('th', null, 'Exporter'), h('th', { class: 'num' }, 'Last seen'), h('th', { class: 'num' }, 'Datagrams'), h('th', { class: 'num' }, 'Records'),
          h('th', { class: 'num' }, 'Drops'), h('th', { class: 'num' }, 'Lost flows'), h('th', { class: 'num' }, 'Loss'), h('th', { class: 'num', title: 'sequence gaps counted in datagrams (v9, sFlow)' }, 'Lost dgrams'),
          h('th', { class: 'num' }, 'Restarts'), h('th', { class: 'num' }, 'Reordered'), h('th', { class: 'num' }, 'Templates'), h('th', null, 'Sampling'), h('th', { class: 'num' }, 'Clock skew'))),
        tbody));
    }

    async function load() {
      try {
        const r = await api('/api/exporters');
        if (!ctx.live()) return;
        list = Array.isArray(r.exporters) ? r.exporters : [];
        setRefresh(true);
        draw();
      } catch (e) {
        if (!ctx.live()) return;
        if (list) setRefresh(false, 'refresh failed'); else body.replaceChildren(errorBox(e));
      }
    }
    load();
    every(5000, load);
  }

  function skewFmt(s) {
    const a = Math.abs(s);
    if (a < 1) return (s * 1000).toFixed(0) + ' ms';
    if (a < 120) return s.toFixed(1) + ' s';
    return (s < 0 ? '-' : '') + fmtDur(a);
  }

  const VERSIONS = { 1: 'NetFlow v1', 5: 'NetFlow v5', 7: 'NetFlow v7', 8: 'NetFlow v8', 9: 'NetFlow v9', 10: 'IPFIX', 245: 'sFlow v5' };

  function exporterDetail(domains, ifaces, drops, quirks) {
    const parts = [];
    if (domains.length) {
      parts.push(h('h3', null, 'Sequence streams'), h('table', { class: 'compact' },
        h('thead', null, h('tr', null, ['Version', 'Domain', 'Datagrams', 'Records', 'Next seq', 'Lost flows', 'Lost dgrams', 'Restarts', 'Reordered', 'Sampling'].map((l, i) => h('th', { class: i > 1 ? 'num' : null }, l)))),
        h('tbody', null, domains.map(d => {
          const v = field(d, 'version');
          return h('tr', null, h('td', null, VERSIONS[v] || String(v)), h('td', { class: 'mono' }, String(field(d, 'domain') ?? '')),
            ['datagrams', 'records', 'next_sequence', 'lost_flows', 'lost_datagrams', 'restarts', 'reordered'].map(k => h('td', { class: 'num' }, count(field(d, k)))),
            h('td', { class: 'num' }, field(d, 'sampling_rate') ? '1:' + field(d, 'sampling_rate') : ''));
        }))));
    }
    if (ifaces.length) {
      parts.push(h('h3', null, 'Interface counters (sFlow)'), h('table', { class: 'compact' },
        h('thead', null, h('tr', null, ['ifIndex', 'Speed', 'Status', 'In octets', 'Out octets', 'In errors', 'In discards', 'Out errors', 'Out discards'].map((l, i) => h('th', { class: i ? 'num' : null }, l)))),
        h('tbody', null, ifaces.map(c => {
          const st = Number(field(c, 'status')) || 0;
          return h('tr', null, h('td', null, String(field(c, 'index'))), h('td', { class: 'num' }, rate(Number(field(c, 'speed')) || 0, 'bps')),
            h('td', { class: 'num' }, (st & 1 ? 'admin up' : 'admin down') + ', ' + (st & 2 ? 'oper up' : 'oper down')),
            ['in_octets', 'out_octets', 'in_errors', 'in_discards', 'out_errors', 'out_discards'].map(k => h('td', { class: 'num' }, count(field(c, k)))));
        }))));
    }
    const kvs = (title, m) => Object.keys(m).length ? [h('h3', null, title), h('dl', { class: 'kv' }, Object.keys(m).sort().map(k => [h('dt', null, k), h('dd', null, count(m[k]))]))] : null;
    parts.push(kvs('Drops by reason', drops), kvs('Quirks (no loss)', quirks));
    return h('div', { style: { padding: '4px 0 8px 18px' } }, parts);
  }

  // ---------------------------------------------------------------- resources

  const resState = { type: '', limit: '100', q: '', sort: { col: 5, asc: false } };

  function resourceDirection(r) { return field(r, 'direction') || ''; }

  function pageResources(ctx) {
    resState.type = ctx.params.get('type') || '';
    resState.limit = ctx.params.get('limit') || '100';
    document.title = 'Resources · flowhound';
    const body = h('div', { class: 'table-wrap' }, h('div', { class: 'empty' }, 'Loading…'));
    const summary = h('span', { class: 'muted' });
    const go = (type, limit) => { location.hash = hashWith('#/resources', { type, limit: limit === '100' ? '' : limit }); };
    const limitSel = h('select', { onchange: () => go(resState.type, limitSel.value), title: 'how many to fetch' },
      ['50', '100', '500', '1000', '5000'].map(v => h('option', { value: v, selected: v === resState.limit }, 'top ' + v)));
    const search = h('input', { type: 'search', placeholder: 'filter key or name…', value: resState.q, size: 24, oninput: () => { resState.q = search.value; draw(); } });
    show(h('div', { class: 'toolbar' }, h('h1', null, 'Resources'),
      segmented([['', 'All'], ['host', 'Hosts'], ['prefix', 'Prefixes'], ['interface', 'Interfaces'], ['port', 'Ports'], ['global', 'Global']], resState.type, v => go(v, resState.limit)),
      limitSel, search, h('span', { class: 'spacer' }), summary),
    h('section', { class: 'panel' }, body));

    let list = null;
    const cur = (r, m) => Number((field(r, 'current') || {})[m]) || 0;
    const exp = (r, m) => Number((field(r, 'expected') || {})[m]) || 0;
    const ratio = r => { const e = exp(r, 'bps'); return e > 0 ? cur(r, 'bps') / e : (cur(r, 'bps') > 0 ? Infinity : 0); };
    const cols = [
      { label: 'Type', key: r => field(r, 'type'), ascFirst: true, cell: r => h('span', { class: 'flag' }, field(r, 'type') || '') },
      { label: 'Key', key: r => field(r, 'key'), ascFirst: true, cls: 'mono', cell: r => h('a', { href: resourceHref(field(r, 'type'), field(r, 'key')) }, field(r, 'key') || '') },
      { label: 'Name', key: r => field(r, 'name') || '', ascFirst: true, cell: r => field(r, 'name') || '' },
      { label: 'Direction', key: resourceDirection, ascFirst: true, cell: resourceDirection },
      { label: 'Current pps', num: true, key: r => cur(r, 'pps'), cell: r => rate(cur(r, 'pps'), 'pps') },
      { label: 'Current bps', num: true, key: r => cur(r, 'bps'), cell: r => rate(cur(r, 'bps'), 'bps') },
      { label: 'Current fps', num: true, key: r => cur(r, 'fps'), cell: r => rate(cur(r, 'fps'), 'fps') },
      { label: 'Expected pps', num: true, key: r => exp(r, 'pps'), cell: r => rate(exp(r, 'pps'), 'pps') },
      { label: 'Expected bps', num: true, key: r => exp(r, 'bps'), cell: r => rate(exp(r, 'bps'), 'bps') },
      { label: 'Now / expected', num: true, key: ratio, title: 'current bps over expected bps', cell: r => { const x = ratio(r); return !isFinite(x) ? '–' : '×' + x.toFixed(2); } },
      { label: 'Baseline', key: r => (field(r, 'warming_up') ? 1 : 0), cell: r => field(r, 'warming_up') ? h('span', { class: 'flag warn' }, 'warming up') : h('span', { class: 'muted' }, 'learned') },
    ];

    function draw() {
      if (!list) return;
      const q = resState.q.trim().toLowerCase();
      const rows = q ? list.filter(r => [field(r, 'key'), field(r, 'name')].some(s => s && String(s).toLowerCase().includes(q))) : list;
      const warming = list.filter(r => field(r, 'warming_up')).length;
      summary.textContent = list.length + ' resources' + (warming ? ', ' + warming + ' warming up' : '');
      if (!rows.length) { body.replaceChildren(h('div', { class: 'empty' }, list.length ? 'No resource matches the filter.' : 'No resources tracked yet.')); return; }
      body.replaceChildren(sortableTable(cols, rows, resState.sort, null, draw));
    }

    async function load() {
      const q = new URLSearchParams();
      if (resState.type) q.set('type', resState.type);
      q.set('limit', resState.limit);
      try {
        const r = await api('/api/resources?' + q);
        if (!ctx.live()) return;
        list = Array.isArray(r.resources) ? r.resources : [];
        setRefresh(true);
        draw();
      } catch (e) {
        if (!ctx.live()) return;
        if (list) setRefresh(false, 'refresh failed'); else body.replaceChildren(errorBox(e));
      }
    }
    load();
    every(10000, load);
  }

  let resourceMetric = 'bps';

  function pageResource(ctx, type, key) {
    document.title = type + ' ' + key + ' · flowhound';
    const back = h('div', { class: 'no-print', style: { marginBottom: '8px' } }, h('a', { href: '#/resources' }, '← Resources'));
    async function load(first) {
      let d;
      try {
        d = await api('/api/resources/' + encodeURIComponent(type) + '/' + encodeURIComponent(key));
      } catch (e) {
        if (!ctx.live()) return;
        if (first) show(back, errorBox(e)); else setRefresh(false, 'refresh failed');
        return;
      }
      if (!ctx.live()) return;
      setRefresh(true);
      if (!first && String(window.getSelection())) return;
      renderResource(d, type, key, back);
    }
    load(true);
    every(10000, () => load(false));
  }

  const RESOURCE_SHOWN = new Set(['type', 'key', 'name', 'direction', 'current', 'expected', 'spread', 'warming_up', 'model', 'learned_slots', 'buckets', 'series', 'baseline']);

  function renderResource(d, type, key, back) {
    const norm = k => k.replace(/_/g, '').toLowerCase();
    const shown = new Set([...RESOURCE_SHOWN].map(norm));
    const current = field(d, 'current'), expected = field(d, 'expected'), spread = field(d, 'spread');
    const rows = [['Current', current], ['Expected', expected], ['Spread (1σ up)', spread]].filter(([, r]) => r && typeof r === 'object');

    const facts = h('div', { class: 'facts' },
      field(d, 'direction') ? fact('Direction', String(field(d, 'direction'))) : null,
      field(d, 'model') ? fact('Model', String(field(d, 'model'))) : null,
      field(d, 'learned_slots') != null ? fact('Learned slots', count(field(d, 'learned_slots'))) : null,
      fact('Baseline', field(d, 'warming_up') ? h('span', { class: 'flag warn' }, 'warming up') : 'learned'));

    const head = h('section', { class: 'panel' },
      h('h1', null, h('span', { class: 'flag' }, field(d, 'type') || type), ' ', h('span', { class: 'mono' }, field(d, 'key') || key),
        field(d, 'name') ? h('span', { class: 'muted', style: { fontWeight: 'normal' } }, '  · ' + field(d, 'name')) : null),
      facts,
      h('div', { class: 'no-print', style: { marginTop: '6px' } }, h('a', { href: hashWith('#/', { q: field(d, 'key') || key }) }, 'Anomalies on this resource')));

    const ratesTable = rows.length ? panel('Now', null, h('table', { class: 'rates compact' },
      h('thead', null, h('tr', null, h('th'), h('th', { class: 'num' }, 'bits/s'), h('th', { class: 'num' }, 'packets/s'), h('th', { class: 'num' }, 'flows/s'))),
      h('tbody', null, rows.map(([l, r]) => h('tr', null, h('td', null, l),
        ['bps', 'pps', 'fps'].map(m => h('td', { class: 'num' }, rate(Number(field(r, m)), m)))))))) : null;

    const buckets = field(d, 'buckets');
    const bucketList = Array.isArray(buckets) ? buckets : buckets && typeof buckets === 'object' ? Object.entries(buckets).map(([name, b]) => Object.assign({ name }, b)) : [];
    const ratesText = r => r && typeof r === 'object' ? ['bps', 'pps', 'fps'].map(m => rate(Number(field(r, m)), m)).join(' · ') : (r == null ? '' : String(r));
    const factorText = r => r && typeof r === 'object' ? ['bps', 'pps', 'fps'].map(m => '×' + (Number(field(r, m)) || 0).toFixed(2) + ' ' + m).join(' · ') : (r == null ? '' : String(r));
    const bucketPanel = bucketList.length ? panel('Buckets', h('span', { class: 'muted' }, 'the seasonal cells that apply now'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'compact buckets' },
        h('thead', null, h('tr', null, h('th', null, 'Bucket'), h('th', { class: 'num' }, 'Cell'), h('th', { class: 'num' }, 'Samples'), h('th', null, 'Expected'), h('th', null, 'Spread'), h('th', null, 'Factor'))),
        h('tbody', null, bucketList.map(b => h('tr', null,
          h('td', null, String(field(b, 'name') || '')), h('td', { class: 'num' }, String(field(b, 'cell') ?? '')), h('td', { class: 'num' }, count(field(b, 'samples'))),
          h('td', { class: 'nowrap' }, ratesText(field(b, 'expected'))), h('td', { class: 'nowrap' }, ratesText(field(b, 'spread'))), h('td', { class: 'nowrap' }, factorText(field(b, 'factor'))))))))) : null;

    const toPts = arr => (Array.isArray(arr) ? arr : []).map(p => ({ t: parseTime(field(p, 'time') || field(p, 't')), p }));
    const series = toPts(field(d, 'series'));
    const baseline = toPts(field(d, 'baseline'));
    let chart = null;
    if (series.length || baseline.length) {
      const holder = h('div');
      const toggle = h('span', { class: 'no-print' });
      const draw = () => {
        const m = resourceMetric;
        const recent = series.map(x => ({ t: x.t, v: Number(field(x.p, m)) })).filter(p => p.t != null).sort((a, b) => a.t - b.t);
        // The baseline covers the day around now; over the recent series' span only, so
        // that the recent traffic is not squeezed into a sliver of the day.
        const over = within(baseline.map(x => ({ t: x.t, v: Number(field(x.p, m)) })).filter(p => p.t != null).sort((a, b) => a.t - b.t), recent);
        const hl = [];
        const e = expected && Number(field(expected, m));
        if (!over.length && e > 0) hl.push({ v: e, cls: 'expected', label: 'expected' });
        holder.replaceChildren(lineChart({ series: recent, overlay: over, hlines: hl, unit: m }),
          h('div', { class: 'legend' }, series.length ? h('span', null, h('i'), 'observed ' + m) : null,
            over.length || hl.length ? h('span', null, h('i', { class: 'expected' }), 'expected') : null));
        toggle.replaceChildren(segmented([['bps', 'bps'], ['pps', 'pps'], ['fps', 'fps']], resourceMetric, v => { resourceMetric = v; draw(); }));
      };
      draw();
      chart = panel('Recent rate', toggle, holder);
    }

    const others = Object.keys(d).filter(k => !shown.has(norm(k)) && k !== 'ID');
    const otherPanel = others.length ? panel('More', null, h('dl', { class: 'kv' }, others.map(k => [h('dt', null, k),
      h('dd', null, typeof d[k] === 'object' && d[k] !== null ? h('pre', null, JSON.stringify(d[k], null, 1)) : String(d[k]))]))) : null;
    show(back, head, h('div', { class: 'stack' }, ratesTable, chart, bucketPanel, otherPanel));
  }

  // ---------------------------------------------------------------- rules

  const rulesState = { q: '', sort: { col: 0, asc: true } };

  function exprText(v) {
    if (v == null) return '';
    if (typeof v === 'string') return v;
    if (typeof v === 'object') {
      const s = field(v, 'source');
      if (typeof s === 'string') return s;
      return JSON.stringify(v);
    }
    return String(v);
  }

  function pageRules(ctx) {
    rulesState.q = ctx.params.get('q') || rulesState.q;
    document.title = 'Rules · flowhound';
    const body = h('div', { class: 'table-wrap' }, h('div', { class: 'empty' }, 'Loading…'));
    const summary = h('span', { class: 'muted' });
    const search = h('input', { type: 'search', placeholder: 'filter name, kind, expression…', value: rulesState.q, size: 30, oninput: () => { rulesState.q = search.value; draw(); } });
    show(h('div', { class: 'toolbar' }, h('h1', null, 'Rules'), search, h('span', { class: 'spacer' }), summary),
      h('section', { class: 'panel' }, body));
    let list = null;
    const str = (r, k) => { const v = field(r, k); return v == null ? '' : String(v); };
    const cols = [
      { label: 'Name', key: r => str(r, 'name'), ascFirst: true, cell: r => h('strong', { class: 'mono' }, str(r, 'name')) },
      { label: 'Kind', key: r => str(r, 'kind'), ascFirst: true, cell: r => str(r, 'kind') },
      { label: 'Importance', key: r => ({ high: 0, medium: 1, low: 2 })[str(r, 'importance')] ?? 3, ascFirst: true, cell: r => importanceBadge(str(r, 'importance')) },
      { label: 'Direction', key: r => str(r, 'direction'), ascFirst: true, cell: r => str(r, 'direction') },
      { label: 'Group by', cell: r => { const g = field(r, 'group_by'); return Array.isArray(g) ? g.join(', ') : (g || ''); } },
      { label: 'Window', cell: r => {
        const set = k => { const v = field(r, k); return v && v !== '0s' ? fmtGoDuration(v) : ''; };
        return [set('window'), set('for') ? h('div', { class: 'muted' }, 'for ' + set('for')) : null, set('hold') ? h('div', { class: 'muted' }, 'hold ' + set('hold')) : null];
      } },
      { label: 'Match', cls: 'mono', cell: r => exprText(field(r, 'match')) || h('span', { class: 'muted' }, 'every flow') },
      { label: 'Threshold', cls: 'mono', cell: r => {
        const lim = field(r, 'limits');
        const after = field(r, 'after');
        return [exprText(field(r, 'threshold')),
          lim && Object.keys(lim).length ? h('div', { class: 'muted' }, Object.entries(lim).map(([k, v]) => k + '=' + count(v)).join(' ')) : null,
          after ? h('div', { class: 'muted' }, 'after ' + after + (field(r, 'within') ? ' within ' + fmtGoDuration(field(r, 'within')) : '')) : null];
      } },
      { label: 'Description', cell: r => {
        const refs = (field(r, 'references') || []).filter(u => /^https?:\/\//i.test(u));
        return [str(r, 'description'), refs.length ? h('div', null, refs.map((u, i) => [i ? ' ' : '', h('a', { href: u, rel: 'noopener noreferrer', target: '_blank', class: 'muted' }, '[' + (i + 1) + ']')])) : null];
      } },
    ];
    function draw() {
      if (!list) return;
      const q = rulesState.q.trim().toLowerCase();
      const rows = q ? list.filter(r => [str(r, 'name'), str(r, 'kind'), str(r, 'description'), exprText(field(r, 'match')), exprText(field(r, 'threshold'))]
        .some(s => s.toLowerCase().includes(q))) : list;
      summary.textContent = list.length + ' rules';
      if (!rows.length) { body.replaceChildren(h('div', { class: 'empty' }, list.length ? 'No rule matches the filter.' : 'No rules loaded.')); return; }
      body.replaceChildren(sortableTable(cols, rows, rulesState.sort, r => ({ 'data-rule': str(r, 'name') }), draw));
    }
    (async () => {
      try {
        const r = await api('/api/rules');
        if (!ctx.live()) return;
        list = Array.isArray(r.rules) ? r.rules : [];
        setRefresh(true);
        draw();
      } catch (e) {
        if (ctx.live()) body.replaceChildren(errorBox(e));
      }
    })();
  }

  // ---------------------------------------------------------------- start

  document.getElementById('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    tokenPrompt = null;
    updateTokenButton();
    route();
  });
  window.addEventListener('hashchange', route);
  updateTokenButton();
  route();
})();
