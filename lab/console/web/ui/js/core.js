// Shared plumbing for every page: API calls relative to the page (the console
// lives under a web root), a small DOM builder that never parses strings as
// HTML, the URL-held state (namespaces, duration) and formatting.

export class ApiError extends Error {
  constructor(status, message, text) {
    super(message);
    this.status = status;
    this.text = text; // the server's own error text, as `meshlab apply` prints it
  }
}

// api fetches a path relative to the page and decodes JSON; errors carry the
// server's {"error": ...} text so pages can show what went wrong.
export async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  const text = await r.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch { body = text; }
  }
  if (!r.ok) {
    const msg = body && body.error ? body.error : (typeof body === 'string' && body ? body : `${r.status} ${r.statusText}`);
    if (r.status === 401 && !opts.login) window.dispatchEvent(new CustomEvent('meshlab-unauthorized'));
    throw new ApiError(r.status, `${opts.method || 'GET'} ${path.split('?')[0]}: ${msg}`, msg);
  }
  return body;
}

// el builds an element: el('div', {class: 'x', onclick: fn, dataset: {a: 1}}, child, 'text', [more]).
export function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(n.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') n.addEventListener(k.slice(2), v);
    else if (k === 'class') n.className = v;
    else if (k === 'value') n.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden') n[k] = !!v;
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  append(n, children);
  return n;
}

function append(n, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(n, c);
    else if (c instanceof Node) n.appendChild(c);
    else n.appendChild(document.createTextNode(String(c)));
  }
}

const SVGNS = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs, ...children) {
  const n = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('on') && typeof v === 'function') n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

// Route state lives in the hash: #/page?namespaces=a,b&duration=60.
export function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/overview';
  const i = h.indexOf('?');
  const path = i < 0 ? h : h.slice(0, i);
  const params = new URLSearchParams(i < 0 ? '' : h.slice(i + 1));
  return { path: path.replace(/\/+$/, '') || '/overview', params };
}

export function setHashParams(updates, replace = true) {
  const { path, params } = parseHash();
  for (const [k, v] of Object.entries(updates)) {
    if (v === undefined || v === null || v === '') params.delete(k);
    else params.set(k, v);
  }
  const q = params.toString().replace(/%2C/gi, ',');
  const url = `#${path}${q ? '?' + q : ''}`;
  if (replace) history.replaceState(null, '', url);
  else location.hash = url;
}

// href builds a hash link keeping the masthead's namespaces and duration.
export function href(path, extra = {}) {
  const { params } = parseHash();
  const p = new URLSearchParams();
  for (const k of ['namespaces', 'duration']) if (params.get(k)) p.set(k, params.get(k));
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== '') p.set(k, v);
  const q = p.toString().replace(/%2C/gi, ',');
  return `#${path}${q ? '?' + q : ''}`;
}

export const state = {
  allNamespaces: [], // [{name, labels, injected}]
};

export function selectedNamespaces() {
  const v = parseHash().params.get('namespaces');
  if (v) return v.split(',').filter(Boolean);
  const ns = state.allNamespaces;
  const inj = ns.filter((n) => n.injected).map((n) => n.name);
  if (inj.length) return inj;
  return ns.map((n) => n.name).filter((n) => n !== 'istio-system' && !n.startsWith('kube-'));
}

export function durationSeconds() {
  const v = Number(parseHash().params.get('duration'));
  return v > 0 ? v : 600;
}

export function setReady(name) {
  document.body.dataset.ready = name;
}

export function fmtRate(v) {
  const n = Number(v);
  if (!isFinite(n) || n === 0) return '0';
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function fmtBytesRate(v) {
  const n = Number(v) || 0;
  if (n >= 1024 * 1024) return (n / 1024 / 1024).toFixed(2) + 'mbps';
  if (n >= 1024) return (n / 1024).toFixed(2) + 'kps';
  return n.toFixed(0) + 'bps';
}

export function fmtMs(v) {
  const n = Number(v);
  if (!isFinite(n)) return '';
  if (n >= 1000) return (n / 1000).toFixed(2) + 's';
  return (n < 10 ? n.toFixed(1) : n.toFixed(0)) + 'ms';
}

export function fmtMicros(us) {
  return fmtMs(Number(us) / 1000);
}

export function fmtTime(unixSeconds) {
  const d = new Date(unixSeconds * 1000);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export const HEALTH_CLASS = { Healthy: 'healthy', Degraded: 'degraded', Failure: 'failure', NA: 'na', NotReady: 'notready' };

export function healthIcon(status) {
  const s = status || 'NA';
  const glyph = { Healthy: '●', Degraded: '▲', Failure: '■', NotReady: '◌', NA: '○' }[s] || '○';
  return el('span', { class: `health-icon ${HEALTH_CLASS[s] || 'na'}`, title: s, dataset: { health: s } }, glyph);
}

export function errorBox(err) {
  return el('div', { class: 'error-box', role: 'alert' }, String(err && err.message ? err.message : err));
}

export function loading(what) {
  return el('div', { class: 'loading' }, `Loading ${what}…`);
}

export function table(headers, rows, attrs = {}) {
  return el('table', Object.assign({ class: 'grid' }, attrs),
    el('thead', null, el('tr', null, headers.map((h) => el('th', null, h)))),
    el('tbody', null, rows));
}

export function labelsChips(labels) {
  return Object.entries(labels || {}).map(([k, v]) => el('span', { class: 'chip' }, `${k}=${v}`));
}

export function tabs(names, active, onSelect) {
  return el('div', { class: 'tabs', role: 'tablist' }, names.map((n) =>
    el('button', { type: 'button', class: n === active ? 'tab active' : 'tab', dataset: { tab: n }, onclick: () => onSelect(n) }, n)));
}
