// Traces: a scatter of recent traces (start time x duration, errors red), a
// list, and a timeline per trace with every span's tags. Used by the Traces
// page and by the details pages' Traces tab.
import { api, el, parseHash, setHashParams, selectedNamespaces, durationSeconds, setReady, errorBox, loading, table, fmtMicros, state } from './core.js';
import { traceScatter } from './charts.js';

// traceDetail renders the timeline of one trace into #trace-detail.
export function traceDetail(trace) {
  const spans = [...(trace.spans || [])].sort((a, b) => Number(a.startTime) - Number(b.startTime));
  const box = el('div', { id: 'trace-detail', dataset: { traceId: trace.traceID } });
  if (!spans.length) {
    box.append(el('p', { class: 'muted' }, 'This trace has no spans.'));
    return box;
  }
  const t0 = Math.min(...spans.map((s) => Number(s.startTime)));
  const t1 = Math.max(...spans.map((s) => Number(s.startTime) + Number(s.duration)));
  const total = Math.max(t1 - t0, 1);
  const byId = new Map(spans.map((s) => [s.spanID, s]));
  const depth = (s) => {
    let d = 0;
    for (let p = byId.get(s.parentSpanID); p && d < 30; p = byId.get(p.parentSpanID)) d++;
    return d;
  };
  box.append(el('h3', null, `Trace ${trace.traceID}`),
    el('p', { class: 'muted' }, `${spans.length} spans · ${fmtMicros(total)} · ${new Date(t0 / 1000).toLocaleString()}`, trace.error ? el('span', { class: 'count failure' }, ' error') : ''));
  const list = el('div', { class: 'timeline' });
  for (const s of spans) {
    const left = ((Number(s.startTime) - t0) / total) * 100;
    const width = Math.max((Number(s.duration) / total) * 100, 0.3);
    const tags = el('div', { class: 'span-tags', hidden: true },
      table(['tag', 'value'], Object.entries(s.tags || {}).sort().map(([k, v]) => el('tr', null, el('td', { class: 'mono' }, k), el('td', { class: 'mono' }, String(v))))));
    const row = el('div', { class: s.error ? 'span-row error' : 'span-row', tabindex: 0, dataset: { spanId: s.spanID }, onclick: () => { tags.hidden = !tags.hidden; } },
      el('div', { class: 'span-label', style: `padding-left:${depth(s) * 12}px` },
        el('span', { class: 'span-service' }, s.serviceName || '?'), ' ', el('span', { class: 'span-op' }, s.operationName || ''), s.kind ? el('span', { class: 'muted' }, ` ${s.kind}`) : ''),
      el('div', { class: 'span-bar-track' },
        el('div', { class: 'span-bar', style: `left:${left.toFixed(2)}%;width:${width.toFixed(2)}%` }),
        el('span', { class: 'span-dur' }, fmtMicros(s.duration))));
    list.append(row, tags);
  }
  box.append(list);
  return box;
}

async function showTrace(detailBox, t, signal) {
  let trace = t;
  if (!t.spans || !t.spans.length) {
    try {
      trace = await api(`api/traces/${encodeURIComponent(t.traceID)}`, { signal });
    } catch (err) {
      detailBox.replaceChildren(errorBox(err));
      return;
    }
  }
  detailBox.replaceChildren(traceDetail(trace));
  detailBox.scrollIntoView({ block: 'nearest' });
}

// tracesView fills box with the scatter and list of one app/workload/service's traces.
export async function tracesView(box, ns, apiKind, name, signal, openID) {
  const errorsOnly = el('input', { type: 'checkbox', id: 'traces-errors' });
  const holder = el('div');
  const detail = el('div', { class: 'trace-detail-box' });
  box.append(el('div', { class: 'toolbar' }, el('label', { class: 'toggle' }, errorsOnly, 'errors only')), holder, detail);
  const load = async () => {
    holder.replaceChildren(loading('traces'));
    const end = Date.now() * 1000;
    const start = end - durationSeconds() * 1e6;
    const q = new URLSearchParams({ startMicros: String(Math.floor(start)), endMicros: String(Math.floor(end)), limit: '100' });
    if (errorsOnly.checked) q.set('errorsOnly', 'true');
    let r;
    try {
      r = await api(`api/namespaces/${encodeURIComponent(ns)}/${apiKind}/${encodeURIComponent(name)}/traces?${q}`, { signal });
    } catch (err) {
      if (!signal.aborted) holder.replaceChildren(errorBox(err));
      return;
    }
    const traces = (r && r.data) || [];
    const pick = (t) => { setHashParams({ trace: t.traceID }); showTrace(detail, t, signal); };
    const rows = traces.map((t) => el('tr', { class: t.error ? 'trace-row error' : 'trace-row', tabindex: 0, dataset: { traceId: t.traceID }, onclick: () => pick(t) },
      el('td', null, new Date(Number(t.startTime) / 1000).toLocaleTimeString()),
      el('td', null, t.rootService || ''), el('td', null, t.rootOperation || ''),
      el('td', null, String((t.spans || []).length)), el('td', null, fmtMicros(t.duration)), el('td', null, t.error ? '✖' : '')));
    holder.replaceChildren(
      ...(r.errors || []).map((e) => errorBox(typeof e === 'string' ? e : JSON.stringify(e))),
      traceScatter(traces, pick),
      traces.length ? table(['time', 'root service', 'root operation', 'spans', 'duration', 'error'], rows, { id: 'trace-list' })
        : el('p', { class: 'muted' }, `No traces for ${name} in the last ${durationSeconds()}s.`));
    const want = openID && traces.find((t) => t.traceID === openID);
    if (want) await showTrace(detail, want, signal);
    else if (openID) await showTrace(detail, { traceID: openID }, signal);
  };
  errorsOnly.addEventListener('change', load);
  await load();
}

export async function renderTraces(main, signal) {
  const { params } = parseHash();
  main.append(el('h1', null, 'Traces'));
  const nsList = state.allNamespaces.map((n) => n.name);
  const ns = params.get('namespace') || selectedNamespaces()[0] || nsList[0] || '';
  const nsSel = el('select', { id: 'traces-namespace' }, (nsList.includes(ns) ? nsList : [ns, ...nsList]).map((n) => el('option', { value: n, selected: n === ns }, n)));
  const svcSel = el('select', { id: 'traces-service' });
  const body = el('div');
  main.append(el('div', { class: 'toolbar' }, el('label', null, 'Namespace ', nsSel), el('label', null, 'Service ', svcSel)), body);
  nsSel.addEventListener('change', () => setHashParams({ namespace: nsSel.value, service: '', trace: '' }, false));
  svcSel.addEventListener('change', () => setHashParams({ service: svcSel.value, trace: '' }, false));
  let services = [];
  if (ns) {
    try {
      const r = await api(`api/namespaces/${encodeURIComponent(ns)}/services`, { signal });
      services = ((r && r.items) || []).map((s) => s.name);
    } catch (err) {
      if (signal.aborted) return;
      body.append(errorBox(err));
    }
  }
  const svc = params.get('service') || '';
  if (svc && !services.includes(svc)) services.unshift(svc);
  svcSel.append(el('option', { value: '' }, '— choose —'), ...services.map((s) => el('option', { value: s, selected: s === svc }, s)));
  if (!svc) {
    body.append(el('p', { class: 'muted' }, 'Choose a service to see its traces.'));
    setReady('traces');
    return;
  }
  await tracesView(body, ns, 'services', svc, signal, params.get('trace'));
  if (!signal.aborted) setReady('traces');
}
