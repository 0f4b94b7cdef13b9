// The topology graph: Kiali's cytoscape JSON from api/namespaces/graph drawn
// with cytoscape + dagre, Kiali's visual language (shapes per node type,
// health borders, badges, mTLS locks), edge label modes, a traffic animation
// on a canvas overlay and a side panel per node or edge.
import {
  api, el, parseHash, setHashParams, selectedNamespaces, durationSeconds, setReady,
  fmtRate, fmtMs, fmtBytesRate, errorBox, href, table,
} from './core.js';

const BADGES = [
  // [data flag, class, glyph, title]
  ['hasCB', 'badge-cb', '⚡', 'Circuit breaker'],
  ['hasVS', 'badge-vs', '🔀', 'VirtualService'],
  ['hasFaultInjection', 'badge-fault', '⚠', 'Fault injection'],
  ['hasTrafficShifting', 'badge-shift', '⚖', 'Traffic shifting'],
  ['hasTCPTrafficShifting', 'badge-shift', '⚖', 'TCP traffic shifting'],
  ['hasRequestRouting', 'badge-routing', '⤳', 'Request routing'],
  ['hasRequestTimeout', 'badge-timeout', '⏱', 'Request timeout'],
  ['hasMirroring', 'badge-mirror', '🪞', 'Mirroring'],
];

// Beyond this many nodes+edges the auto layout leaves dagre (see runLayout).
const DAGRE_MAX_ELEMENTS = 1200;

const COLORS = {
  healthy: '#3e8635', degraded: '#f0ab00', failure: '#c9190b', tcp: '#0066cc', idle: '#b8bbbe',
  node: '#6a6e73', nodeFill: '#ffffff', text: '#151515',
};

function truthy(v) {
  if (v === undefined || v === null || v === false || v === '' || v === 'false') return false;
  if (Array.isArray(v)) return v.length > 0;
  return true;
}

function num(v) {
  const n = Number(v);
  return isFinite(n) ? n : 0;
}

// edgeStats summarises an edge's rates the way the labels and colours need.
export function edgeStats(d) {
  const t = d.traffic || {};
  const r = t.rates || {};
  const protocol = t.protocol || '';
  if (protocol === 'tcp') return { protocol, rate: num(r.tcp), err: 0, pct5: 0, pct4: 0, percentReq: 0 };
  const rate = num(r.http) + num(r.grpc);
  const e5 = num(r.http5xx) + num(r.grpcErr);
  const e4 = num(r.http4xx);
  const noResp = num(r.httpNoResponse) + num(r.grpcNoResponse);
  const pct = (x) => (rate > 0 ? (100 * x) / rate : 0);
  return {
    protocol, rate, err: pct(e5 + e4 + noResp), pct5: pct(e5), pct4: pct(e4), pctNoResp: pct(noResp),
    percentReq: num(r.httpPercentReq || r.grpcPercentReq),
  };
}

function statusOf(s) {
  if (s.pct5 >= 10 || s.pct4 >= 20 || s.pctNoResp >= 10) return 'failure';
  if (s.pct5 > 0 || s.pct4 >= 10) return 'degraded';
  return 'healthy';
}

function nodeName(d, graphType) {
  switch (d.nodeType) {
    case 'app': return graphType === 'versionedApp' && d.version && d.version !== 'latest' ? `${d.app} ${d.version}` : d.app;
    case 'workload': return d.workload;
    case 'service': return d.service;
    case 'unknown': return 'unknown';
    case 'box': return d.app || d.namespace || d.cluster;
    default: return d.workload || d.app || d.service || d.id;
  }
}

function edgeLabel(d, mode, security) {
  const s = edgeStats(d);
  let text = '';
  switch (mode) {
    case 'trafficRate':
      if (s.protocol === 'tcp') text = s.rate > 0 ? fmtBytesRate(s.rate) : '';
      else if (s.rate > 0) text = `${fmtRate(s.rate)}rps` + (s.err > 0 ? `\n${s.err.toFixed(1)}%` : '');
      break;
    case 'trafficDistribution':
      if (s.percentReq > 0 && s.percentReq < 100) text = `${s.percentReq.toFixed(1)}%`;
      break;
    case 'responseTime':
      if (d.responseTime !== undefined && d.responseTime !== '') text = fmtMs(d.responseTime);
      break;
    case 'throughput':
      if (d.throughput !== undefined && d.throughput !== '') text = fmtBytesRate(d.throughput);
      break;
  }
  if (security && num(d.isMTLS) > 0) text = text ? `🔒 ${text}` : '🔒';
  return text;
}

function nodeHealth(node) {
  const hd = node.data('healthData');
  if (hd && typeof hd === 'object' && hd.status) {
    const st = String(hd.status).toLowerCase();
    if (st === 'failure' || st === 'degraded') return st;
  }
  let worst = 'healthy';
  node.incomers('edge').forEach((e) => {
    const st = statusOf(edgeStats(e.data()));
    if (st === 'failure' || (st === 'degraded' && worst === 'healthy')) worst = st;
  });
  return worst;
}

const STYLE = [
  { selector: 'node', style: {
    'background-color': COLORS.nodeFill, 'border-color': COLORS.node, 'border-width': 2,
    label: 'data(label)', 'text-valign': 'bottom', 'text-halign': 'center', 'text-margin-y': 4,
    'font-size': 12, 'font-family': 'system-ui, sans-serif', color: COLORS.text,
    'text-wrap': 'wrap', 'text-background-color': '#ffffff', 'text-background-opacity': 0.85,
    'text-background-padding': 2, 'text-background-shape': 'roundrectangle', width: 34, height: 34,
  } },
  { selector: 'node[nodeType="app"]', style: { shape: 'round-rectangle', width: 40, height: 30 } },
  { selector: 'node[nodeType="workload"]', style: { shape: 'ellipse' } },
  { selector: 'node[nodeType="service"]', style: { shape: 'round-triangle', width: 36, height: 32 } },
  { selector: 'node[nodeType="box"]', style: {
    shape: 'round-rectangle', 'background-color': '#f5f5f5', 'background-opacity': 0.6, 'border-color': '#b8bbbe',
    'border-width': 1, 'text-valign': 'top', 'text-halign': 'center', 'text-margin-y': -4, padding: 12,
  } },
  { selector: 'node[nodeType="unknown"]', style: { shape: 'round-diamond', 'border-style': 'dashed' } },
  { selector: 'node.out-of-mesh', style: { 'border-style': 'dashed' } },
  { selector: 'node.service-entry', style: { shape: 'round-tag', 'background-color': '#f3faf2' } },
  { selector: 'node.gateway', style: { shape: 'round-hexagon', 'border-width': 4, 'border-style': 'double', width: 40, height: 40 } },
  { selector: 'node.root', style: { 'border-width': 3 } },
  { selector: 'node.idle', style: { 'border-color': COLORS.idle, color: '#8a8d90', 'border-style': 'dotted' } },
  { selector: 'node.health-degraded', style: { 'border-color': COLORS.degraded, 'border-width': 3 } },
  { selector: 'node.health-failure', style: { 'border-color': COLORS.failure, 'border-width': 3 } },
  { selector: 'node.found', style: { 'border-color': '#0066cc', 'border-width': 5, 'underlay-color': '#73bcf7', 'underlay-opacity': 0.5, 'underlay-padding': 6 } },
  { selector: 'node:selected', style: { 'overlay-color': '#0066cc', 'overlay-opacity': 0.15, 'border-color': '#0066cc' } },
  { selector: 'edge', style: {
    width: 2, 'curve-style': 'bezier', 'line-color': COLORS.healthy, 'target-arrow-color': COLORS.healthy,
    'target-arrow-shape': 'vee', 'arrow-scale': 0.9, label: 'data(label)', 'font-size': 10,
    'text-wrap': 'wrap', 'text-background-color': '#ffffff', 'text-background-opacity': 0.9,
    'text-background-padding': 1, color: '#151515', 'text-rotation': 'none',
  } },
  { selector: 'edge.tcp', style: { 'line-color': COLORS.tcp, 'target-arrow-color': COLORS.tcp } },
  { selector: 'edge.degraded', style: { 'line-color': COLORS.degraded, 'target-arrow-color': COLORS.degraded } },
  { selector: 'edge.failure', style: { 'line-color': COLORS.failure, 'target-arrow-color': COLORS.failure } },
  { selector: 'edge.idle', style: { 'line-color': COLORS.idle, 'target-arrow-color': COLORS.idle, 'line-style': 'dashed', width: 1 } },
  { selector: 'edge:selected', style: { width: 4, 'overlay-color': '#0066cc', 'overlay-opacity': 0.15 } },
];

function decorate(cy, opts) {
  const graphType = opts.graphType;
  cy.batch(() => {
    const badgeClasses = [...new Set(BADGES.map((b) => b[1]))].join(' ');
    cy.nodes().forEach((n) => {
      const d = n.data();
      const glyphs = [];
      n.removeClass(badgeClasses);
      for (const [flag, cls, glyph] of BADGES) {
        if (truthy(d[flag])) {
          n.addClass(cls);
          if (!glyphs.includes(glyph)) glyphs.push(glyph);
        }
      }
      n.toggleClass('gateway', truthy(d.isGateway));
      n.toggleClass('service-entry', truthy(d.isServiceEntry));
      n.toggleClass('out-of-mesh', truthy(d.isOutOfMesh) || truthy(d.hasMissingSC));
      n.toggleClass('idle', truthy(d.isIdle));
      n.toggleClass('root', truthy(d.isRoot));
      const name = nodeName(d, graphType) || d.id;
      const badgeLine = opts.badges && glyphs.length ? glyphs.join(' ') + '\n' : '';
      const mesh = truthy(d.isOutOfMesh) || truthy(d.hasMissingSC) ? ' ⊘' : '';
      n.data('label', badgeLine + name + mesh);
    });
    cy.edges().forEach((e) => {
      const d = e.data();
      const s = edgeStats(d);
      e.toggleClass('mtls', num(d.isMTLS) > 0);
      e.toggleClass('tcp', s.protocol === 'tcp');
      e.removeClass('degraded failure idle');
      if (s.rate === 0) e.addClass('idle');
      else if (s.protocol !== 'tcp') {
        const st = statusOf(s);
        if (st !== 'healthy') e.addClass(st);
      }
      e.data('label', edgeLabel(d, opts.edgeLabels, opts.security));
    });
    cy.nodes().forEach((n) => {
      n.removeClass('health-degraded health-failure');
      const h = nodeHealth(n);
      if (h !== 'healthy') n.addClass('health-' + h);
    });
  });
}

// Animation: dots travel along edges; density follows the request rate, speed
// the response time, and the error share travels as red diamonds.
class TrafficAnimation {
  constructor(cy, canvas) {
    this.cy = cy;
    this.canvas = canvas;
    this.particles = new Map(); // edge id -> [{t, err}]
    this.credit = new Map();
    this.raf = 0;
    this.last = 0;
  }

  start() {
    if (this.raf) return;
    this.last = performance.now();
    const step = (now) => {
      this.raf = requestAnimationFrame(step);
      this.frame(Math.min((now - this.last) / 1000, 0.1));
      this.last = now;
    };
    this.raf = requestAnimationFrame(step);
  }

  stop() {
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
    this.particles.clear();
    const ctx = this.canvas.getContext('2d');
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  frame(dt) {
    const c = this.canvas;
    const parent = c.parentElement;
    const dpr = window.devicePixelRatio || 1;
    const w = parent.clientWidth, h = parent.clientHeight;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
      c.style.width = w + 'px';
      c.style.height = h + 'px';
    }
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const zoom = this.cy.zoom(), pan = this.cy.pan();
    const toScreen = (p) => ({ x: p.x * zoom + pan.x, y: p.y * zoom + pan.y });
    const edges = this.cy.edges();
    // Big meshes share a bounded budget of dots, so a frame stays cheap.
    const share = Math.min(1, 400 / Math.max(1, edges.length));
    edges.forEach((e) => {
      const s = edgeStats(e.data());
      if (s.rate <= 0) return;
      const id = e.id();
      // per-second spawn: more dots for busier edges, bounded so big meshes stay light
      const spawn = share * (s.protocol === 'tcp' ? 1 : Math.min(12, 0.8 + Math.log2(1 + s.rate) * 1.5));
      const rt = num(e.data('responseTime'));
      const travel = Math.min(5, 1.2 + Math.log10(1 + rt) * 0.9); // seconds end to end
      let list = this.particles.get(id);
      if (!list) { list = []; this.particles.set(id, list); }
      let credit = (this.credit.get(id) || Math.random()) + spawn * dt;
      while (credit >= 1) {
        credit -= 1;
        list.push({ t: 0, err: Math.random() * 100 < s.err });
      }
      this.credit.set(id, credit);
      const a = toScreen(e.sourceEndpoint()), b = toScreen(e.targetEndpoint()), m = toScreen(e.midpoint());
      const cx = 2 * m.x - (a.x + b.x) / 2, cy = 2 * m.y - (a.y + b.y) / 2;
      for (const p of list) p.t += dt / travel;
      const alive = list.filter((p) => p.t < 1);
      this.particles.set(id, alive);
      for (const p of alive) {
        const u = 1 - p.t;
        const x = u * u * a.x + 2 * u * p.t * cx + p.t * p.t * b.x;
        const y = u * u * a.y + 2 * u * p.t * cy + p.t * p.t * b.y;
        if (p.err) {
          ctx.fillStyle = COLORS.failure;
          ctx.beginPath();
          ctx.moveTo(x, y - 4); ctx.lineTo(x + 4, y); ctx.lineTo(x, y + 4); ctx.lineTo(x - 4, y);
          ctx.closePath();
          ctx.fill();
        } else {
          ctx.fillStyle = s.protocol === 'tcp' ? COLORS.tcp : '#1e4f18';
          ctx.beginPath();
          ctx.arc(x, y, 2.5, 0, Math.PI * 2);
          ctx.fill();
        }
      }
    });
  }
}

function detailsLink(d) {
  const ns = d.namespace;
  if (!ns || d.nodeType === 'unknown') return null;
  if (d.nodeType === 'service' && d.service) return [href(`/namespaces/${ns}/services/${d.service}`), `Service ${d.service}`];
  if (d.nodeType === 'workload' && d.workload) return [href(`/namespaces/${ns}/workloads/${d.workload}`), `Workload ${d.workload}`];
  if (d.app) return [href(`/namespaces/${ns}/applications/${d.app}`), `Application ${d.app}`];
  if (d.workload) return [href(`/namespaces/${ns}/workloads/${d.workload}`), `Workload ${d.workload}`];
  return null;
}

function tracesLink(d) {
  const name = d.service || d.app || d.workload;
  if (!d.namespace || !name) return null;
  return href('/traces', { namespace: d.namespace, service: name });
}

function ratesTable(stats) {
  return table(['', 'rate'], [
    el('tr', null, el('td', null, 'total'), el('td', null, stats.protocol === 'tcp' ? fmtBytesRate(stats.rate) : `${fmtRate(stats.rate)} rps`)),
    stats.protocol !== 'tcp' && el('tr', null, el('td', null, '% error'), el('td', null, `${stats.err.toFixed(2)}%`)),
  ]);
}

function nodePanel(node) {
  const d = node.data();
  const sum = (edges) => {
    let rate = 0, bad = 0, tcp = 0;
    edges.forEach((e) => {
      const s = edgeStats(e.data());
      if (s.protocol === 'tcp') tcp += s.rate;
      else { rate += s.rate; bad += (s.rate * s.err) / 100; }
    });
    return { rate, err: rate > 0 ? (100 * bad) / rate : 0, tcp };
  };
  const inb = sum(node.incomers('edge')), out = sum(node.outgoers('edge'));
  const badges = BADGES.filter(([f]) => truthy(d[f])).map(([, cls, glyph, title]) => el('span', { class: `badge ${cls}` }, `${glyph} ${title}`));
  const link = detailsLink(d), tl = tracesLink(d);
  return el('div', null,
    el('h3', null, `${d.nodeType || 'node'}: ${nodeName(d, '') || d.id}`),
    el('dl', { class: 'kv' },
      el('dt', null, 'namespace'), el('dd', null, d.namespace || '—'),
      d.version && [el('dt', null, 'version'), el('dd', null, d.version)],
      d.workload && d.nodeType !== 'workload' && [el('dt', null, 'workload'), el('dd', null, d.workload)],
      el('dt', null, 'health'), el('dd', null, nodeHealth(node)),
      truthy(d.isOutOfMesh) && [el('dt', null, 'sidecar'), el('dd', null, 'out of mesh (no sidecar)')],
    ),
    d.explain && el('p', { class: 'explain' }, d.explain),
    badges.length > 0 && el('div', { class: 'badges' }, badges),
    el('h4', null, 'Inbound'),
    el('p', null, `HTTP ${fmtRate(inb.rate)} rps, ${inb.err.toFixed(2)}% error` + (inb.tcp ? `; TCP ${fmtBytesRate(inb.tcp)}` : '')),
    el('h4', null, 'Outbound'),
    el('p', null, `HTTP ${fmtRate(out.rate)} rps, ${out.err.toFixed(2)}% error` + (out.tcp ? `; TCP ${fmtBytesRate(out.tcp)}` : '')),
    el('p', { class: 'links' }, link && el('a', { href: link[0] }, `Details: ${link[1]}`), tl && el('a', { href: tl }, 'Traces')),
    nodeTraces(d),
  );
}

// nodeTraces lists the node's latest traces in the panel (filled in when
// the trace store answers), each opening the trace's timeline.
function nodeTraces(d) {
  const box = el('div', { class: 'panel-traces' });
  const kind = d.nodeType === 'service' ? ['services', d.service] : d.nodeType === 'workload' ? ['workloads', d.workload] : d.app ? ['apps', d.app] : null;
  if (!d.namespace || !kind || !kind[1] || d.nodeType === 'unknown') return box;
  const name = d.service || d.app || d.workload;
  const end = Date.now() * 1000;
  const q = new URLSearchParams({ startMicros: String(Math.floor(end - durationSeconds() * 1e6)), endMicros: String(Math.floor(end)), limit: '5' });
  box.append(el('h4', null, 'Latest traces'), el('p', { class: 'muted' }, 'loading…'));
  api(`api/namespaces/${encodeURIComponent(d.namespace)}/${kind[0]}/${encodeURIComponent(kind[1])}/traces?${q}`).then((r) => {
    const traces = ((r && r.data) || []).slice(0, 5);
    box.replaceChildren(el('h4', null, 'Latest traces'), traces.length
      ? el('ul', { class: 'trace-links' }, traces.map((t) => el('li', { class: t.error ? 'error' : '' },
        el('a', { href: href('/traces', { namespace: d.namespace, service: name, trace: t.traceID }), dataset: { traceId: t.traceID } },
          `${new Date(Number(t.startTime) / 1000).toLocaleTimeString()} ${fmtMs(Number(t.duration) / 1000)}${t.error ? ' error' : ''}`))))
      : el('p', { class: 'muted' }, 'No traces in this window.'));
  }, (err) => {
    box.replaceChildren(el('h4', null, 'Latest traces'), el('p', { class: 'muted' }, String(err.text || err.message)));
  });
  return box;
}

function edgePanel(edge) {
  const d = edge.data();
  const s = edgeStats(d);
  const src = edge.source().data(), dst = edge.target().data();
  const rates = (d.traffic && d.traffic.rates) || {};
  const responses = (d.traffic && d.traffic.responses) || {};
  const codeRows = Object.entries(responses).sort().map(([code, info]) => {
    const flags = Object.entries((info && info.flags) || {}).map(([f, p]) => `${f} ${p}%`).join(', ');
    const hosts = Object.entries((info && info.hosts) || {}).map(([hname, p]) => `${hname} ${p}%`).join(', ');
    return el('tr', { class: /^[45]/.test(code) || code === '-' ? 'bad' : '' }, el('td', null, code), el('td', null, flags), el('td', null, hosts));
  });
  const tl = tracesLink(dst);
  const dl = detailsLink(dst), sl = detailsLink(src);
  return el('div', null,
    el('h3', null, `${nodeName(src, '') || src.id} → ${nodeName(dst, '') || dst.id}`),
    el('dl', { class: 'kv' },
      el('dt', null, 'protocol'), el('dd', null, s.protocol || '—'),
      el('dt', null, 'mTLS'), el('dd', null, num(d.isMTLS) > 0 ? `🔒 ${num(d.isMTLS).toFixed(0)}%` : 'none'),
      d.responseTime !== undefined && [el('dt', null, 'response time'), el('dd', null, fmtMs(d.responseTime))],
      d.throughput !== undefined && [el('dt', null, 'throughput'), el('dd', null, fmtBytesRate(d.throughput))],
      d.sourcePrincipal && [el('dt', null, 'source principal'), el('dd', { class: 'mono' }, d.sourcePrincipal)],
      d.destPrincipal && [el('dt', null, 'dest principal'), el('dd', { class: 'mono' }, d.destPrincipal)],
    ),
    ratesTable(s),
    el('h4', null, 'Rates'),
    table(['key', 'value'], Object.entries(rates).map(([k, v]) => el('tr', null, el('td', null, k), el('td', null, String(v))))),
    el('h4', null, 'Response codes'),
    codeRows.length ? table(['code', 'flags', 'hosts'], codeRows) : el('p', { class: 'muted' }, 'no responses recorded'),
    el('p', { class: 'links' },
      sl && el('a', { href: sl[0] }, `Source: ${sl[1]}`),
      dl && el('a', { href: dl[0] }, `Destination: ${dl[1]}`),
      tl && el('a', { href: tl }, 'Traces of ' + (nodeName(dst, '') || 'destination'))),
  );
}

// miniGraph draws a node's neighbourhood (the per-node graph endpoint) in
// the details page's Traffic tab, in the main graph's visual language.
export function miniGraph(container, cfg) {
  if (typeof window.cytoscape !== 'function') return null;
  const els = (cfg && cfg.elements) || {};
  const cy = window.cytoscape({
    container, style: STYLE, minZoom: 0.2, maxZoom: 1.2,
    elements: [...(els.nodes || []).map((n) => ({ group: 'nodes', data: { label: '', ...n.data } })), ...(els.edges || []).map((e) => ({ group: 'edges', data: { label: '', ...e.data } }))],
  });
  decorate(cy, { graphType: cfg.graphType || 'workload', edgeLabels: 'trafficRate', security: true, badges: true });
  cy.layout({ name: 'dagre', rankDir: 'LR', nodeSep: 24, rankSep: 70, fit: true, padding: 20, animate: false }).run();
  return cy;
}

function boolParam(params, name, dflt) {
  const v = params.get(name);
  if (v === null) return dflt;
  return v === 'true' || v === '1';
}

export function renderGraph(main) {
  const { params } = parseHash();
  const opts = {
    graphType: params.get('graphType') || 'versionedApp',
    edgeLabels: params.get('edgeLabels') || 'trafficRate',
    responseTime: params.get('responseTime') || 'avg',
    security: boolParam(params, 'security', true),
    badges: boolParam(params, 'badges', true),
    animate: boolParam(params, 'animate', false),
    idleEdges: boolParam(params, 'idleEdges', false),
    idleNodes: boolParam(params, 'idleNodes', false),
    serviceNodes: boolParam(params, 'injectServiceNodes', true),
    layout: params.get('layout') || 'auto',
  };
  const select = (id, values, value, onchange) => el('select', { id, onchange },
    values.map(([v, label]) => el('option', { value: v, selected: v === value }, label)));
  const toggle = (id, label, key) => el('label', { class: 'toggle' },
    el('input', { type: 'checkbox', id, checked: opts[key], onchange: (ev) => { opts[key] = ev.target.checked; onOption(key); } }), label);

  const graphDiv = el('div', { id: 'graph' });
  const canvas = el('canvas', { id: 'graph-anim', class: 'anim-overlay' });
  const empty = el('div', { id: 'graph-empty', hidden: true });
  const panel = el('aside', { id: 'side-panel' }, el('p', { class: 'muted' }, 'Select a node or an edge to see its traffic.'));
  const status = el('span', { class: 'muted', id: 'graph-status' });
  const toolbar = el('div', { class: 'toolbar' },
    el('label', null, 'Graph ', select('graph-type', [['app', 'App graph'], ['versionedApp', 'Versioned app graph'], ['workload', 'Workload graph'], ['service', 'Service graph']], opts.graphType, (ev) => { opts.graphType = ev.target.value; onOption('graphType'); })),
    el('label', null, 'Edge labels ', select('edge-labels', [['trafficRate', 'Traffic rate'], ['trafficDistribution', 'Traffic distribution'], ['responseTime', 'Response time'], ['throughput', 'Throughput']], opts.edgeLabels, (ev) => { opts.edgeLabels = ev.target.value; onOption('edgeLabels'); })),
    el('label', null, ' ', select('response-time', [['avg', 'avg'], ['50', 'p50'], ['95', 'p95'], ['99', 'p99']], opts.responseTime, (ev) => { opts.responseTime = ev.target.value; onOption('responseTime'); })),
    el('label', null, 'Layout ', select('layout', [['auto', 'auto'], ['dagre', 'dagre'], ['breadthfirst', 'breadthfirst'], ['grid', 'grid'], ['concentric', 'concentric']], opts.layout, (ev) => { opts.layout = ev.target.value; onOption('layout'); })),
    el('span', { class: 'sep' }, 'Display:'),
    toggle('security', 'Security', 'security'),
    toggle('badges', 'Badges', 'badges'),
    toggle('animate', 'Traffic animation', 'animate'),
    toggle('idle-edges', 'Idle edges', 'idleEdges'),
    toggle('idle-nodes', 'Idle nodes', 'idleNodes'),
    toggle('service-nodes', 'Service nodes', 'serviceNodes'),
    el('input', { type: 'search', id: 'graph-find', placeholder: 'Find…', 'aria-label': 'find nodes', oninput: (ev) => find(ev.target.value) }),
    status,
  );
  const legend = el('div', { class: 'graph-legend' },
    el('span', null, '▢ app'), el('span', null, '◯ workload'), el('span', null, '△ service'), el('span', null, '◇ unknown'),
    el('span', null, '⬡ gateway'), el('span', null, '🔒 mTLS'), BADGES.filter((b, i) => i !== 4).map(([, , g, t]) => el('span', null, `${g} ${t}`)));
  main.append(toolbar, el('div', { class: 'graph-wrap' }, el('div', { class: 'graph-area' }, graphDiv, canvas, empty), panel), legend);

  if (typeof window.cytoscape !== 'function') {
    main.prepend(errorBox('The graph library (vendor/cytoscape) did not load.'));
    setReady('graph');
    return null;
  }
  const cy = window.cytoscape({ container: graphDiv, style: STYLE, elements: [], minZoom: 0.05, maxZoom: 4 });
  window.meshlabGraph = cy;
  const anim = new TrafficAnimation(cy, canvas);
  let abort = null;
  let disposed = false;

  cy.on('tap', 'node', (ev) => { panel.replaceChildren(nodePanel(ev.target)); });
  cy.on('tap', 'edge', (ev) => { panel.replaceChildren(edgePanel(ev.target)); });
  cy.on('tap', (ev) => { if (ev.target === cy) panel.replaceChildren(el('p', { class: 'muted' }, 'Select a node or an edge to see its traffic.')); });

  // find highlights the nodes whose name contains the text, as Kiali's Find.
  function find(text) {
    const t = text.trim().toLowerCase();
    cy.batch(() => {
      cy.nodes().removeClass('found');
      if (t) cy.nodes().filter((n) => String(n.data('label') || '').toLowerCase().includes(t)).addClass('found');
    });
  }

  function syncURL() {
    setHashParams({
      graphType: opts.graphType, edgeLabels: opts.edgeLabels === 'trafficRate' ? '' : opts.edgeLabels,
      responseTime: opts.responseTime === 'avg' ? '' : opts.responseTime,
      security: opts.security ? '' : 'false', badges: opts.badges ? '' : 'false', animate: opts.animate ? 'true' : '',
      idleEdges: opts.idleEdges ? 'true' : '', idleNodes: opts.idleNodes ? 'true' : '',
      injectServiceNodes: opts.serviceNodes ? '' : 'false',
      layout: opts.layout === 'auto' ? '' : opts.layout,
    });
  }

  function onOption(key) {
    syncURL();
    document.getElementById('response-time').hidden = opts.edgeLabels !== 'responseTime';
    if (key === 'animate') {
      if (opts.animate) anim.start(); else anim.stop();
      return;
    }
    if (key === 'layout') { if (cy.nodes().length) runLayout(cy.elements().length); return; }
    if (['graphType', 'idleEdges', 'idleNodes', 'serviceNodes', 'responseTime'].includes(key)) load();
    else decorate(cy, opts);
  }

  // dagre (Kiali's layout) ranks a call graph best but grows steeply: a
  // 1,000-service mesh takes seconds. "auto" keeps dagre while it is quick
  // and switches to breadthfirst (also ranked, left to right) beyond that.
  function runLayout(count) {
    let name = opts.layout;
    if (name === 'auto') name = count <= DAGRE_MAX_ELEMENTS ? 'dagre' : 'breadthfirst';
    const common = { fit: true, padding: 30, animate: false };
    const layouts = {
      dagre: { name: 'dagre', rankDir: 'LR', nodeSep: 24, rankSep: 70, edgeSep: 10 },
      breadthfirst: { name: 'breadthfirst', directed: true, spacingFactor: 1.1,
        transform: (node, pos) => ({ x: pos.y, y: pos.x }) }, // ranks left to right, as dagre's LR
      grid: { name: 'grid', avoidOverlap: true },
      concentric: { name: 'concentric', minNodeSpacing: 20 },
    };
    status.dataset.layout = name;
    cy.layout(Object.assign({}, layouts[name] || layouts.dagre, common)).run();
  }

  async function load() {
    if (abort) abort.abort();
    abort = new AbortController();
    const signal = abort.signal;
    setReady('');
    const namespaces = selectedNamespaces();
    const q = new URLSearchParams({
      namespaces: namespaces.join(','), graphType: opts.graphType, duration: `${durationSeconds()}s`,
      injectServiceNodes: String(opts.serviceNodes), idleEdges: String(opts.idleEdges), idleNodes: String(opts.idleNodes),
      responseTime: opts.responseTime, throughput: 'request',
    });
    status.textContent = 'loading…';
    let cfg;
    try {
      if (!namespaces.length) throw new Error('Select at least one namespace in the masthead.');
      cfg = await api(`api/namespaces/graph?${q}`, { signal });
    } catch (err) {
      if (signal.aborted || disposed) return;
      cy.elements().remove();
      empty.hidden = false;
      empty.replaceChildren(el('strong', null, 'The graph could not be loaded. '), String(err.message || err));
      status.textContent = '';
      setReady('graph');
      return;
    }
    if (disposed) return;
    const els = (cfg && cfg.elements) || {};
    // label is set by decorate(); an empty one keeps cytoscape's data(label)
    // mapping defined in between.
    const nodes = (els.nodes || []).map((n) => ({ group: 'nodes', data: { label: '', ...n.data } }));
    const edges = (els.edges || []).map((e) => ({ group: 'edges', data: { label: '', ...e.data } }));
    // A refresh of the same topology updates the data in place, so the
    // user's layout, zoom and selection survive the refresh timer.
    const all = [...nodes, ...edges];
    const same = cy.elements().length === all.length && all.every((e) => cy.getElementById(e.data.id).nonempty());
    cy.batch(() => {
      if (same) {
        for (const e of all) {
          const ele = cy.getElementById(e.data.id);
          const gone = Object.keys(ele.data()).filter((k) => !(k in e.data) && !['id', 'source', 'target', 'label'].includes(k));
          if (gone.length) ele.removeData(gone.join(' '));
          ele.data(e.data);
        }
      } else {
        cy.elements().remove();
        cy.add(nodes);
        cy.add(edges);
      }
    });
    decorate(cy, opts);
    const reason = cfg && cfg.emptyReason;
    if (reason || !nodes.length) {
      empty.hidden = false;
      empty.replaceChildren(
        el('strong', null, nodes.length ? 'No traffic edges. ' : 'Empty graph. '),
        el('span', { class: 'reason', dataset: { code: (reason && reason.code) || '' } }, (reason && reason.message) || 'No nodes for the selected namespaces.'));
    } else {
      empty.hidden = true;
    }
    if (nodes.length && !same) runLayout(all.length);
    status.textContent = `${nodes.length} nodes, ${edges.length} edges · ${new Date((cfg.timestamp || Date.now() / 1000) * 1000).toLocaleTimeString()}`;
    setReady('graph');
  }

  document.getElementById('response-time').hidden = opts.edgeLabels !== 'responseTime';
  if (opts.animate) anim.start();
  load();
  return {
    refresh: load,
    cleanup() {
      disposed = true;
      if (abort) abort.abort();
      anim.stop();
      cy.destroy();
      if (window.meshlabGraph === cy) window.meshlabGraph = null;
    },
  };
}
