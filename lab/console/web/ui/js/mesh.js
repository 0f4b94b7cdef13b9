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
  main.append(el('h2', null, 'Components'), table(['', 'name', 'namespace', 'status', 'detail'],
    (data.components || []).map((c) => el('tr', { class: 'component-row', dataset: { name: c.name, status: c.status } },
      el('td', null, healthIcon(c.status === 'Healthy' ? 'Healthy' : c.status === 'NotReady' ? 'Degraded' : 'Failure')),
      el('td', null, c.name), el('td', null, c.namespace || ''), el('td', null, c.status), el('td', { class: 'mono' }, c.detail || '')))));
  if (status && status.externalServices) {
    main.append(el('h2', null, 'External services'), table(['name', 'url', 'ok', 'error'],
      status.externalServices.map((s) => el('tr', null, el('td', null, s.name), el('td', { class: 'mono' }, s.url || ''),
        el('td', null, s.ok ? '✔' : '✖'), el('td', null, s.error || '')))));
  }
  const proxies = data.proxies || [];
  const cols = proxies.length ? Object.keys(proxies[0]) : ['proxy'];
  main.append(el('h2', null, `Proxies (${proxies.length})`), table(cols,
    proxies.map((p) => el('tr', { class: 'proxy-row' }, cols.map((c) => {
      const v = p[c];
      const text = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
      return el('td', { class: /STALE|NOT SENT/.test(text) ? 'bad' : '' }, text);
    })))));
  setReady('mesh');
}
