// Mesh: the status of the lab's components and proxy-status for every proxy.
import { api, el, setReady, errorBox, table, healthIcon } from './core.js';

export async function renderMesh(main, signal) {
  main.append(el('h1', null, 'Mesh'));
  let data, status;
  try {
    [data, status] = await Promise.all([api('api/mesh', { signal }), api('api/status', { signal }).catch(() => null)]);
  } catch (err) {
    if (signal.aborted) return;
    main.append(errorBox(err));
    setReady('mesh');
    return;
  }
  if (signal.aborted) return; // the user already left this page
  main.append(el('h2', null, 'Components'), table(['', 'name', 'namespace', 'status', 'detail'],
    (data.components || []).map((c) => el('tr', { class: 'component-row', dataset: { name: c.name, status: c.status } },
      el('td', null, healthIcon(c.status === 'Healthy' ? 'Healthy' : c.status === 'NotReady' ? 'Degraded' : 'Failure')),
      el('td', null, c.name), el('td', null, c.namespace || ''), el('td', null, c.status), el('td', { class: 'mono' }, c.detail || '')))));
  if (status && status.externalServices) {
    main.append(el('h2', null, 'External services'), table(['name', 'url', 'ok', 'error'],
      status.externalServices.map((s) => el('tr', null, el('td', null, s.name), el('td', { class: 'mono' }, s.url || ''),
        el('td', null, s.ok ? '✔' : '✖'), el('td', null, s.error || '')))));
  }
  // api.ProxyStatus: {id, type, pod, namespace, ip, connected, identity, types: {CDS: {state, sent, acked, nacked, error}, ...}}
  const proxies = data.proxies || [];
  const xds = ['CDS', 'LDS', 'EDS', 'RDS', 'SDS'].filter((t) => proxies.some((p) => p.types && p.types[t]));
  main.append(el('h2', null, `Proxies (${proxies.length})`), table(['proxy', 'namespace', 'type', 'IP', 'connected', ...xds, 'identity'],
    proxies.map((p) => el('tr', { class: 'proxy-row', dataset: { proxy: p.id } },
      el('td', { class: 'mono' }, p.pod || p.id), el('td', null, p.namespace || ''), el('td', null, p.type || ''),
      el('td', { class: 'mono' }, p.ip || ''), el('td', null, p.connected ? '✔' : el('span', { class: 'bad' }, '✖')),
      xds.map((t) => {
        const st = (p.types && p.types[t]) || {};
        const state = st.state || '—';
        const tip = [st.sent && `sent ${st.sent}`, st.acked && `acked ${st.acked}`, st.nacked && `nacked ${st.nacked}`, st.error].filter(Boolean).join('; ');
        return el('td', { class: state === 'SYNCED' ? 'ok' : state === '—' ? 'muted' : 'bad', title: tip, dataset: { xds: t, state } }, state);
      }),
      el('td', { class: 'mono' }, p.identity || '')))));
  setReady('mesh');
}
