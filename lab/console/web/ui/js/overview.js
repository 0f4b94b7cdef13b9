// Overview: one card per namespace (health counts, validations, mTLS lock,
// traffic sparkline) and a control-plane card, from api/overview.
import { api, el, durationSeconds, selectedNamespaces, parseHash, setReady, errorBox, href, fmtMs } from './core.js';
import { sparkline } from './charts.js';

function counts(title, c, link) {
  c = c || {};
  const parts = [['Healthy', 'healthy', '●'], ['Degraded', 'degraded', '▲'], ['Failure', 'failure', '■'], ['NA', 'na', '○']]
    .filter(([k]) => (c[k] || 0) > 0)
    .map(([k, cls, g]) => el('span', { class: `count ${cls}`, title: k, dataset: { status: k } }, `${g} ${c[k]}`));
  const total = Object.values(c).reduce((a, b) => a + (Number(b) || 0), 0);
  return el('div', { class: 'health-row', dataset: { kind: title.toLowerCase() } },
    el('a', { href: link }, `${total} ${title}`), el('span', { class: 'counts' }, parts.length ? parts : el('span', { class: 'muted' }, '—')));
}

export function mtlsLock(tls) {
  const mode = (tls && tls.mode) || '';
  const status = (tls && tls.status) || '';
  if (mode === 'STRICT' || status === 'MTLS_ENABLED') {
    return el('span', { class: 'mtls-lock strict', dataset: { mode: 'STRICT' }, title: 'mTLS enabled (STRICT)' }, '🔒');
  }
  if (mode === 'PERMISSIVE' || status === 'MTLS_PARTIALLY_ENABLED') {
    return el('span', { class: 'mtls-lock permissive', dataset: { mode: 'PERMISSIVE' }, title: 'mTLS permissive (plain text accepted)' }, '🔓');
  }
  return el('span', { class: 'mtls-lock none', dataset: { mode: mode || 'NONE' }, title: `mTLS ${status || 'not enabled'}` }, '');
}

export async function renderOverview(main, signal) {
  main.append(el('h1', null, 'Overview'));
  let data;
  try {
    data = await api(`api/overview?duration=${durationSeconds()}s`, { signal });
  } catch (err) {
    if (signal.aborted) return;
    main.append(errorBox(err));
    setReady('overview');
    return;
  }
  if (signal.aborted) return; // the user already left this page
  const chosen = parseHash().params.get('namespaces') ? new Set(selectedNamespaces()) : null;
  const grid = el('div', { class: 'cards' });
  const cp = data.controlPlane || {};
  grid.append(el('section', { class: 'card cp-card', id: 'control-plane' },
    el('h2', null, 'Control plane', data.meshTLS ? mtlsLock(data.meshTLS) : null),
    el('dl', { class: 'kv' },
      el('dt', null, 'version'), el('dd', null, cp.version || '—'),
      el('dt', null, 'proxies'), el('dd', null, cp.proxies ?? '—'),
      el('dt', null, 'push time'), el('dd', null, cp.pushTimeMs !== undefined && cp.pushTimeMs !== null ? fmtMs(cp.pushTimeMs) : '—'),
      el('dt', null, 'CPU'), el('dd', null, cp.cpu !== undefined && cp.cpu !== null ? `${Number(cp.cpu).toFixed(3)} cores` : '—'),
      el('dt', null, 'memory'), el('dd', null, cp.memoryBytes ? `${(cp.memoryBytes / 1048576).toFixed(1)} MiB` : '—'),
    ),
    cp.error ? el('p', { class: 'warn card-error' }, cp.error) : null,
    el('a', { href: href('/mesh') }, 'Mesh status')));
  for (const ns of data.namespaces || []) {
    if (chosen && !chosen.has(ns.name)) continue;
    const h = ns.health || {};
    const v = ns.validations || {};
    const q = { namespaces: ns.name };
    grid.append(el('section', { class: 'card ns-card', dataset: { namespace: ns.name } },
      el('h2', null, ns.name, ' ', mtlsLock(ns.tls), ns.injected ? el('span', { class: 'chip', title: 'sidecar injection enabled' }, 'istio-injection') : null),
      el('div', { class: 'health' },
        counts('Applications', h.apps, href('/applications', q)),
        counts('Workloads', h.workloads, href('/workloads', q)),
        counts('Services', h.services, href('/services', q))),
      el('div', { class: 'validations', dataset: { errors: v.errors || 0, warnings: v.warnings || 0 } },
        el('a', { href: href('/istio', q) }, `Istio config: ${v.objectCount || 0}`), ' ',
        el('span', { class: (v.errors || 0) > 0 ? 'count failure' : 'count healthy' }, `✖ ${v.errors || 0}`), ' ',
        el('span', { class: (v.warnings || 0) > 0 ? 'count degraded' : 'count healthy' }, `⚠ ${v.warnings || 0}`)),
      sparkline(ns.sparkline),
      Object.entries(ns.errors || {}).map(([what, msg]) => el('p', { class: 'warn card-error', dataset: { what } }, `${what}: ${msg}`)),
      el('div', { class: 'card-links' },
        el('a', { href: href('/graph', { namespaces: ns.name }) }, 'Graph'),
        el('a', { href: href('/traces', { namespace: ns.name }) }, 'Traces'))));
  }
  if (!(data.namespaces || []).length) grid.append(el('p', { class: 'muted' }, 'No namespaces.'));
  main.append(grid);
  setReady('overview');
}
