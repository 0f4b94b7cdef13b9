// Applications / Workloads / Services: the lists for the chosen namespaces
// and each one's details page with tabs (overview, traffic, metrics, traces,
// logs, Envoy config).
import {
  api, el, parseHash, setHashParams, selectedNamespaces, durationSeconds, setReady, errorBox, loading, table,
  healthIcon, labelsChips, tabs, href, fmtRate, fmtMs, fmtBytesRate,
} from './core.js';
import { lineChart } from './charts.js';
import { tracesView } from './traces.js';
import { openWizard, WIZARD_ACTIONS } from './wizard.js';
import { miniGraph } from './graph.js';

// route kind (URL) -> API collection name and title
export const KINDS = {
  applications: { api: 'apps', title: 'Applications', one: 'Application' },
  workloads: { api: 'workloads', title: 'Workloads', one: 'Workload' },
  services: { api: 'services', title: 'Services', one: 'Service' },
};

function sidecarCell(item) {
  return item.istioSidecar === false
    ? el('span', { class: 'warn', title: 'no istio-proxy: this is not in the mesh' }, '⊘ Missing sidecar')
    : el('span', { class: 'ok' }, '✔ sidecar');
}

export async function renderList(main, kind, signal) {
  const k = KINDS[kind];
  main.append(el('h1', null, k.title));
  const namespaces = selectedNamespaces();
  const results = await Promise.all(namespaces.map((ns) =>
    api(`api/namespaces/${encodeURIComponent(ns)}/${k.api}`, { signal }).then((r) => ({ ns, items: (r && r.items) || [] }), (err) => ({ ns, err }))));
  if (signal.aborted) return;
  const rows = [];
  for (const r of results) {
    if (r.err) { main.append(errorBox(r.err)); continue; }
    for (const it of r.items) {
      const ns = it.namespace || r.ns;
      const extra = kind === 'applications' ? (it.versions || []).join(', ')
        : kind === 'workloads' ? (it.services || []).join(', ') : (it.workloads || []).join(', ');
      rows.push(el('tr', { class: 'list-row', dataset: { name: it.name, namespace: ns } },
        el('td', null, healthIcon(it.health)),
        el('td', null, el('a', { href: href(`/namespaces/${ns}/${kind}/${it.name}`) }, it.name)),
        el('td', null, ns),
        el('td', null, sidecarCell(it)),
        el('td', null, labelsChips(it.labels)),
        el('td', null, extra)));
    }
  }
  const extraTitle = kind === 'applications' ? 'versions' : kind === 'workloads' ? 'services' : 'workloads';
  const text = el('input', { type: 'search', id: 'list-filter', placeholder: 'Filter by name…', oninput: () => {
    const t = text.value.trim().toLowerCase();
    for (const r of rows) r.hidden = !!t && !r.dataset.name.toLowerCase().includes(t);
  } });
  main.append(el('div', { class: 'toolbar' }, text));
  main.append(rows.length ? table(['health', 'name', 'namespace', 'sidecar', 'labels', extraTitle], rows, { id: 'list-table' })
    : el('p', { class: 'muted' }, `No ${k.title.toLowerCase()} in ${namespaces.join(', ') || 'the selected namespaces'}.`));
  setReady('list');
}

// toSeries flattens the metrics endpoint's values: an array of
// {labels, datapoints} or an object of such arrays keyed by quantile.
function toSeries(v, prefix) {
  if (!v) return [];
  if (Array.isArray(v)) {
    return v.map((s) => {
      const lbl = Object.entries(s.labels || {}).map(([a, b]) => `${a}=${b}`).join(',');
      return { name: [prefix, lbl].filter(Boolean).join(' ') || 'total', points: s.datapoints || [] };
    });
  }
  if (typeof v === 'object') {
    const names = { avg: 'avg', 0.5: 'p50', '0.5': 'p50', 0.95: 'p95', '0.95': 'p95', 0.99: 'p99', '0.99': 'p99' };
    return Object.entries(v).flatMap(([q, s]) => toSeries(s, [prefix, names[q] || q].filter(Boolean).join(' ')));
  }
  return [];
}

async function metricsTab(box, ns, k, name, direction, signal) {
  box.append(loading(`${direction} metrics`));
  const m = await api(`api/namespaces/${ns}/${k.api}/${name}/metrics?direction=${direction}&duration=${durationSeconds()}s&step=15s`, { signal });
  const tracesHref = href(`/namespaces/${ns}/${k === KINDS.applications ? 'applications' : k === KINDS.workloads ? 'workloads' : 'services'}/${name}`, { tab: 'Traces' });
  box.replaceChildren(el('p', null, el('a', { href: tracesHref }, `Traces of ${name} in this window`)), el('div', { class: 'charts' },
    lineChart('Request volume (rps)', toSeries(m.request_count), fmtRate),
    lineChart('Request errors (rps)', toSeries(m.request_error_count), fmtRate),
    lineChart('Request duration', toSeries(m.request_duration_millis), fmtMs),
    lineChart('Request size', toSeries(m.request_size), (v) => `${v.toFixed(0)}B`),
    lineChart('Response size', toSeries(m.response_size), (v) => `${v.toFixed(0)}B`),
    lineChart('TCP sent', toSeries(m.tcp_sent), fmtBytesRate),
    lineChart('TCP received', toSeries(m.tcp_received), fmtBytesRate)));
}

async function trafficTab(box, ns, kind, name, signal, graphs) {
  box.append(loading('traffic'));
  const g = await api(`api/namespaces/${ns}/${kind}/${name}/graph?graphType=workload&duration=${durationSeconds()}s&injectServiceNodes=true`, { signal });
  const nodes = new Map(((g.elements && g.elements.nodes) || []).map((n) => [n.data.id, n.data]));
  const label = (d) => (d ? `${d.workload || d.app || d.service || d.nodeType} (${d.namespace || '—'})` : '?');
  const rows = ((g.elements && g.elements.edges) || []).map((e) => {
    const r = (e.data.traffic && e.data.traffic.rates) || {};
    const proto = (e.data.traffic && e.data.traffic.protocol) || '';
    return el('tr', null, el('td', null, label(nodes.get(e.data.source))), el('td', null, label(nodes.get(e.data.target))),
      el('td', null, proto), el('td', null, proto === 'tcp' ? fmtBytesRate(r.tcp) : `${fmtRate(r.http || r.grpc)} rps`),
      el('td', null, Number(e.data.isMTLS) > 0 ? '🔒' : ''), el('td', null, e.data.responseTime ? fmtMs(e.data.responseTime) : ''));
  });
  const mini = el('div', { class: 'mini-graph', id: 'mini-graph' });
  // (el() drops null children; replaceChildren would print "null")
  box.replaceChildren(el('div', null,
    g.emptyReason ? el('p', { class: 'muted' }, g.emptyReason.message) : null),
    mini,
    table(['source', 'destination', 'protocol', 'rate', 'mTLS', 'response time'], rows),
    el('a', { href: href('/graph', { namespaces: ns }) }, 'Open in the graph'));
  if (nodes.size) {
    const cy = miniGraph(mini, g);
    if (cy) graphs.push(cy);
  } else {
    mini.remove();
  }
}

async function logsTab(box, ns, pods, signal) {
  if (!pods.length) { box.append(el('p', { class: 'muted' }, 'No pods.')); return; }
  const podSel = el('select', { id: 'logs-pod' }, pods.map((p) => el('option', { value: p.name }, p.name)));
  const ctrSel = el('select', { id: 'logs-container' });
  const out = el('pre', { class: 'logs', id: 'logs' });
  const fill = () => {
    const p = pods.find((x) => x.name === podSel.value) || pods[0];
    ctrSel.replaceChildren(...(p.containers || []).map((c) => el('option', { value: c.name }, c.name)));
  };
  const load = async () => {
    out.textContent = 'loading…';
    try {
      const r = await api(`api/namespaces/${ns}/pods/${encodeURIComponent(podSel.value)}/logs?container=${encodeURIComponent(ctrSel.value)}&tailLines=500`, { signal });
      out.textContent = ((r && r.entries) || []).map((e) => e.message).join('\n') || '(no log lines)';
    } catch (err) {
      out.textContent = String(err.message || err);
    }
  };
  podSel.addEventListener('change', () => { fill(); load(); });
  ctrSel.addEventListener('change', load);
  fill();
  box.append(el('div', { class: 'toolbar' }, el('label', null, 'Pod ', podSel), el('label', null, 'Container ', ctrSel)), out);
  await load();
}

// Envoy's admin config dump sections, as the API passes them through: the
// field names are Envoy's snake_case, or protojson's lowerCamelCase; get()
// reads either.
function get(o, path) {
  let v = o;
  for (const k of path.split('.')) {
    if (v === null || v === undefined) return undefined;
    const camel = k.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
    v = v[k] !== undefined ? v[k] : v[camel];
  }
  return v;
}
const list = (o, path) => get(o, path) || [];

function sockAddr(a) {
  const sa = get(a, 'socket_address');
  if (sa) return [get(sa, 'address') || '', get(sa, 'port_value') ?? ''];
  const pipe = get(a, 'pipe');
  return pipe ? [get(pipe, 'path') || '', ''] : ['', ''];
}

// envoyRows turns one section into proxy-config's columns.
export function envoyRows(what, d) {
  switch (what) {
    case 'listeners': {
      const ls = [...list(d, 'static_listeners').map((x) => get(x, 'listener')), ...list(d, 'dynamic_listeners').map((x) => get(x, 'active_state.listener') || get(x, 'warming_state.listener'))].filter(Boolean);
      return { cols: ['name', 'address', 'port', 'filter chains'], rows: ls.map((l) => { const [a, p] = sockAddr(get(l, 'address') || {}); return [get(l, 'name'), a, p, list(l, 'filter_chains').length]; }) };
    }
    case 'routes': {
      const rcs = [...list(d, 'static_route_configs'), ...list(d, 'dynamic_route_configs')].map((x) => get(x, 'route_config')).filter(Boolean);
      const rows = [];
      for (const rc of rcs) {
        for (const vh of list(rc, 'virtual_hosts')) {
          for (const r of list(vh, 'routes')) {
            const m = get(r, 'match') || {};
            const match = get(m, 'prefix') !== undefined ? `${get(m, 'prefix')}*` : get(m, 'path') || get(m, 'safe_regex.regex') || '';
            const wc = list(r, 'route.weighted_clusters.clusters').map((c) => `${get(c, 'name')} ${get(c, 'weight')}%`).join(', ');
            rows.push([get(rc, 'name'), get(vh, 'name'), list(vh, 'domains').slice(0, 3).join(', '), match, get(r, 'route.cluster') || wc || (get(r, 'direct_response') ? `direct ${get(r, 'direct_response.status')}` : '')]);
          }
        }
      }
      return { cols: ['name', 'virtual host', 'domains', 'match', 'destination'], rows };
    }
    case 'clusters': {
      const cs = [...list(d, 'static_clusters'), ...list(d, 'dynamic_active_clusters'), ...list(d, 'dynamic_warming_clusters')].map((x) => get(x, 'cluster')).filter(Boolean);
      return { cols: ['name', 'direction', 'port', 'subset', 'fqdn', 'type'], rows: cs.map((c) => {
        const name = get(c, 'name') || '';
        const parts = name.split('|'); // outbound|9080|v1|reviews.bookinfo.svc.cluster.local
        return parts.length === 4 ? [name, parts[0], parts[1], parts[2], parts[3], get(c, 'type') || (get(c, 'eds_cluster_config') ? 'EDS' : '')]
          : [name, '', '', '', '', get(c, 'type') || ''];
      }) };
    }
    case 'endpoints': {
      const ecs = [...list(d, 'static_endpoint_configs'), ...list(d, 'dynamic_endpoint_configs')].map((x) => get(x, 'endpoint_config')).filter(Boolean);
      const rows = [];
      for (const ec of ecs) {
        for (const le of list(ec, 'endpoints')) {
          for (const lb of list(le, 'lb_endpoints')) {
            const [a, p] = sockAddr(get(lb, 'endpoint.address') || {});
            rows.push([`${a}:${p}`, get(lb, 'health_status') || 'HEALTHY', get(ec, 'cluster_name')]);
          }
        }
      }
      return { cols: ['endpoint', 'status', 'cluster'], rows };
    }
    case 'secrets': {
      const ss = [...list(d, 'static_secrets'), ...list(d, 'dynamic_active_secrets'), ...list(d, 'dynamic_warming_secrets')];
      return { cols: ['name', 'type', 'version', 'last updated'], rows: ss.map((x) => {
        const sec = get(x, 'secret') || {};
        const type = get(sec, 'tls_certificate') ? 'Cert Chain' : get(sec, 'validation_context') ? 'CA' : '';
        return [get(x, 'name') || get(sec, 'name'), type, get(x, 'version_info') || '', get(x, 'last_updated') || ''];
      }) };
    }
  }
  return { cols: [], rows: [] };
}

function envoyView(what, data) {
  const { cols, rows } = envoyRows(what, data || {});
  const raw = el('details', { class: 'raw' }, el('summary', null, 'JSON'), el('pre', { class: 'json' }, JSON.stringify(data, null, 2)));
  if (!rows.length) return el('div', null, el('p', { class: 'muted' }, `No ${what} in this proxy's config.`), raw);
  return el('div', null, table(cols, rows.map((r) => el('tr', { class: 'envoy-row' }, r.map((v) => el('td', { class: 'mono' }, v === undefined || v === null ? '' : String(v)))))), raw);
}

async function envoyTab(box, ns, pods, signal) {
  const withProxy = pods.filter((p) => p.istioSidecar !== false);
  if (!withProxy.length) { box.append(el('p', { class: 'muted' }, 'No pod with a sidecar: no Envoy config to show.')); return; }
  const podSel = el('select', { id: 'envoy-pod' }, withProxy.map((p) => el('option', { value: p.name }, p.name)));
  const out = el('div', { id: 'envoy-out' });
  let what = 'listeners';
  const load = async () => {
    out.replaceChildren(loading(what));
    try {
      const r = await api(`api/namespaces/${ns}/pods/${encodeURIComponent(podSel.value)}/config_dump/${what}`, { signal });
      out.replaceChildren(envoyView(what, r));
    } catch (err) {
      out.replaceChildren(errorBox(err));
    }
  };
  const sub = () => tabs(['listeners', 'routes', 'clusters', 'endpoints', 'secrets'], what, (n) => { what = n; bar.replaceWith(bar = sub()); load(); });
  let bar = sub();
  podSel.addEventListener('change', load);
  box.append(el('div', { class: 'toolbar' }, el('label', null, 'Pod ', podSel)), bar, out);
  await load();
}

function overviewTab(box, d, ns) {
  const pods = d.pods || [];
  const cfg = d.istioConfig || [];
  box.append(
    el('dl', { class: 'kv' },
      el('dt', null, 'health'), el('dd', null, healthIcon(d.health), ' ', d.health || 'NA'),
      el('dt', null, 'labels'), el('dd', null, labelsChips(d.labels)),
      d.versions && [el('dt', null, 'versions'), el('dd', null, d.versions.join(', '))],
      d.workloads && [el('dt', null, 'workloads'), el('dd', null, d.workloads.map((w) => el('a', { href: href(`/namespaces/${ns}/workloads/${w}`) }, w, ' ')))],
      d.services && [el('dt', null, 'services'), el('dd', null, d.services.map((s) => el('a', { href: href(`/namespaces/${ns}/services/${s}`) }, s, ' ')))],
      d.ports && [el('dt', null, 'ports'), el('dd', null, d.ports.map((p) => (typeof p === 'object' ? `${p.name ? p.name + ':' : ''}${p.port}${p.protocol ? '/' + p.protocol : ''}` : String(p))).join(', '))],
      el('dt', null, 'sidecar'), el('dd', null, sidecarCell(d))),
    el('h3', null, 'Pods'),
    pods.length ? table(['name', 'status', 'IP', 'containers', 'sidecar', 'proxy'], pods.map((p) => el('tr', { class: 'pod-row', dataset: { pod: p.name } },
      el('td', null, p.name), el('td', null, p.status || ''), el('td', { class: 'mono' }, p.ip || ''),
      el('td', null, (p.containers || []).map((c) => el('span', { class: c.ready ? 'chip ok' : 'chip bad' }, `${c.name}${c.ready ? '' : ' (not ready)'}`))),
      el('td', null, p.istioSidecar ? '✔' : el('span', { class: 'warn' }, '⊘ missing')),
      el('td', null, p.istioSidecar ? (p.proxySynced ? el('span', { class: 'ok' }, 'synced') : el('span', { class: 'warn' }, 'not synced')) : '—'))))
      : el('p', { class: 'muted' }, 'No pods.'),
    el('h3', null, 'Istio config'),
    cfg.length ? table(['kind', 'name', 'namespace'], cfg.map((c) => el('tr', null, el('td', null, c.kind),
      el('td', null, el('a', { href: href('/istio', { namespaces: c.namespace || ns, open: `${c.kind}/${c.namespace || ns}/${c.name}` }) }, c.name)),
      el('td', null, c.namespace || ns))))
      : el('p', { class: 'muted' }, 'No Istio config applies.'),
    validationsBlock(d.validations));
}

function validationsBlock(v) {
  if (!v) return null;
  const results = Array.isArray(v) ? v : Object.values(v).flatMap((x) => (x && x.checks ? [x] : Object.values(x || {})));
  const checks = results.flatMap((r) => (r.checks || []).map((c) => ({ ...c, obj: `${r.objectType || ''} ${r.name || ''}` })));
  if (!checks.length) return el('p', { class: 'ok' }, '✔ no validation findings');
  return el('div', null, el('h3', null, 'Validations'), table(['severity', 'code', 'object', 'message'],
    checks.map((c) => el('tr', { class: c.severity }, el('td', null, c.severity), el('td', null, c.code), el('td', null, c.obj), el('td', null, c.message)))));
}

export async function renderDetails(main, ns, kind, name, signal) {
  const k = KINDS[kind];
  const { params } = parseHash();
  main.append(el('nav', { class: 'crumbs' }, el('a', { href: href(`/${kind}`) }, k.title), ' / ', ns, ' / ', name),
    el('h1', null, `${k.one}: ${name}`));
  let d;
  try {
    d = await api(`api/namespaces/${encodeURIComponent(ns)}/${k.api}/${encodeURIComponent(name)}`, { signal });
  } catch (err) {
    if (signal.aborted) return;
    main.append(errorBox(err));
    setReady('details');
    return;
  }
  const names = ['Overview', 'Traffic', 'Inbound Metrics'];
  if (kind !== 'services') names.push('Outbound Metrics');
  names.push('Traces');
  if (kind !== 'services') names.push('Logs', 'Envoy');
  let tab = names.includes(params.get('tab')) ? params.get('tab') : 'Overview';
  if (kind === 'services') {
    const versions = d.versions && d.versions.length ? d.versions : [];
    main.append(el('div', { class: 'wizard-buttons' }, el('span', { class: 'muted' }, 'Actions: '),
      WIZARD_ACTIONS.map(([action, title]) => el('button', { type: 'button', dataset: { wizard: action }, onclick: () => openWizard({ namespace: ns, service: name, versions, action }) }, title))));
  }
  const box = el('div', { class: 'tab-body', id: 'tab-body' });
  let bar = tabs(names, tab, select);
  main.append(bar, box);
  const graphs = []; // cytoscape instances of the Traffic tab, destroyed on leaving
  const dropGraphs = () => { for (const cy of graphs.splice(0)) cy.destroy(); };
  async function select(n) {
    tab = n;
    dropGraphs();
    setHashParams({ tab: n === 'Overview' ? '' : n });
    const nb = tabs(names, tab, select);
    bar.replaceWith(nb);
    bar = nb;
    box.replaceChildren();
    try {
      switch (n) {
        case 'Overview': overviewTab(box, d, ns); break;
        case 'Traffic': await trafficTab(box, ns, kind, name, signal, graphs); break;
        case 'Inbound Metrics': await metricsTab(box, ns, k, name, 'inbound', signal); break;
        case 'Outbound Metrics': await metricsTab(box, ns, k, name, 'outbound', signal); break;
        case 'Traces': await tracesView(box, ns, k.api, name, signal); break;
        case 'Logs': await logsTab(box, ns, d.pods || [], signal); break;
        case 'Envoy': await envoyTab(box, ns, d.pods || [], signal); break;
      }
    } catch (err) {
      if (!signal.aborted) box.replaceChildren(errorBox(err));
    }
    if (!signal.aborted) setReady('details');
  }
  await select(tab);
  return { cleanup: dropGraphs };
}
