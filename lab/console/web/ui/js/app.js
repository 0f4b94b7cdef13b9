// The console's entry: login when the API wants a token, the masthead
// (nav, namespaces, duration, refresh) and the hash router that mounts one
// page at a time. Every page sets body[data-ready] once its data is shown.
import { api, el, parseHash, setHashParams, selectedNamespaces, state, setReady, errorBox } from './core.js';
import { renderOverview } from './overview.js';
import { renderGraph } from './graph.js';
import { renderList, renderDetails } from './lists.js';
import { renderIstio } from './istio.js';
import { renderTraces } from './traces.js';
import { renderMesh } from './mesh.js';

const main = document.getElementById('main');
let current = null; // {abort, cleanup, refresh}
let refreshTimer = 0;

function route() {
  const { path } = parseHash();
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'namespaces' && parts.length === 4 && ['applications', 'workloads', 'services'].includes(parts[2])) {
    return { nav: parts[2], render: (m, s) => renderDetails(m, parts[1], parts[2], parts[3], s) };
  }
  switch (parts[0]) {
    case 'overview': return { nav: 'overview', render: renderOverview };
    case 'graph': return { nav: 'graph', render: (m) => renderGraph(m) };
    case 'applications': case 'workloads': case 'services':
      return { nav: parts[0], render: (m, s) => renderList(m, parts[0], s) };
    case 'istio': return { nav: 'istio', render: renderIstio };
    case 'traces': return { nav: 'traces', render: renderTraces };
    case 'mesh': return { nav: 'mesh', render: renderMesh };
    default: return null;
  }
}

function unmount() {
  if (!current) return;
  current.abort.abort();
  if (current.cleanup) current.cleanup();
  current = null;
}

async function mount() {
  unmount();
  setReady('');
  main.replaceChildren();
  const dlg = document.getElementById('wizard');
  if (dlg.open) dlg.close();
  const r = route();
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', !!r && a.dataset.nav === r.nav);
  const navLink = r && document.querySelector(`#nav a[data-nav="${r.nav}"]`);
  document.title = navLink ? `${navLink.textContent} · meshlab console` : 'meshlab console';
  syncMasthead();
  if (!r) {
    main.append(el('h1', null, 'Not found'), el('p', null, `No page at ${location.hash}. `, el('a', { href: '#/overview' }, 'Overview')));
    setReady('notfound');
    return;
  }
  const abort = new AbortController();
  const me = { abort, cleanup: null, refresh: null };
  current = me;
  try {
    const out = await r.render(main, abort.signal);
    if (out && typeof out === 'object') {
      me.cleanup = out.cleanup;
      me.refresh = out.refresh;
    }
  } catch (err) {
    if (abort.signal.aborted) return;
    main.append(errorBox(err));
    setReady('error');
  }
}

// --- masthead ---

const nsButton = document.getElementById('ns-button');
const nsMenu = document.getElementById('ns-menu');
const durationSel = document.getElementById('duration');
const refreshSel = document.getElementById('refresh');

function syncMasthead() {
  const chosen = selectedNamespaces();
  const explicit = !!parseHash().params.get('namespaces');
  nsButton.textContent = `${(explicit ? chosen.join(', ') : chosen.join(', ') || 'all namespaces') || 'no namespace'} ▾`;
  nsButton.title = `Namespaces: ${chosen.join(', ') || 'none'}`;
  nsMenu.replaceChildren(...state.allNamespaces.map((n) => el('label', { class: 'ns-option' },
    el('input', { type: 'checkbox', value: n.name, checked: chosen.includes(n.name), onchange: onNamespacesChanged }), n.name,
    n.injected ? el('span', { class: 'chip', title: 'sidecar injection enabled' }, 'injected') : null)));
  durationSel.value = parseHash().params.get('duration') || '600';
}

function onNamespacesChanged() {
  const names = [...nsMenu.querySelectorAll('input:checked')].map((i) => i.value);
  setHashParams({ namespaces: names.join(',') }, false);
}

nsButton.addEventListener('click', () => { nsMenu.hidden = !nsMenu.hidden; });
document.addEventListener('click', (ev) => {
  if (!nsMenu.hidden && !document.getElementById('ns-select').contains(ev.target)) nsMenu.hidden = true;
});
durationSel.addEventListener('change', () => setHashParams({ duration: durationSel.value }, false));
refreshSel.addEventListener('change', () => {
  localStorage.setItem('meshlab-refresh', refreshSel.value);
  armRefresh();
});
document.getElementById('refresh-now').addEventListener('click', refresh);

function refresh() {
  if (current && current.refresh) current.refresh();
  else mount();
}

function armRefresh() {
  clearInterval(refreshTimer);
  const s = Number(refreshSel.value);
  // Refreshing while a dialog is open would throw away what the user typed.
  if (s > 0) refreshTimer = setInterval(() => { if (!document.getElementById('wizard').open && !document.hidden) refresh(); }, s * 1000);
}

// --- login ---

function showLogin(message) {
  unmount();
  document.body.classList.add('login');
  const token = el('input', { type: 'password', id: 'login-token', autocomplete: 'current-password', placeholder: 'API token' });
  const msg = el('div', { id: 'login-result', role: 'status', class: message ? 'bad' : '' }, message || '');
  const submit = async () => {
    msg.textContent = 'logging in…';
    try {
      await api('api/authenticate', { login: true, method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: token.value }).toString() });
      document.body.classList.remove('login');
      await start();
    } catch (err) {
      msg.className = 'bad';
      msg.textContent = String(err.text || err.message);
    }
  };
  main.replaceChildren(el('section', { class: 'login-box' },
    el('h1', null, 'Log in to the meshlab console'),
    el('p', null, 'This console is exposed beyond loopback and asks for the lab\'s API token (meshlab token).'),
    el('form', { onsubmit: (ev) => { ev.preventDefault(); submit(); } }, token,
      el('button', { type: 'submit', id: 'login-submit', class: 'primary' }, 'Log in')), msg));
  setReady('login');
}

window.addEventListener('meshlab-unauthorized', () => showLogin('Your session has expired or the token was refused; log in again.'));

async function start() {
  try {
    const info = await api('api/auth/info');
    if (info && info.strategy === 'token' && !info.authenticated) {
      showLogin('');
      return;
    }
    if (info && info.strategy === 'token' && !document.getElementById('logout')) {
      document.querySelector('.controls').append(el('button', { type: 'button', id: 'logout', onclick: async () => {
        try { await api('api/logout', { login: true }); } catch { /* the session is gone either way */ }
        showLogin('Logged out.');
      } }, 'Log out'));
    }
  } catch (err) {
    if (err.status === 401) return; // the unauthorized event already shows the login
    main.replaceChildren(errorBox(err));
  }
  try {
    state.allNamespaces = (await api('api/namespaces')) || [];
  } catch (err) {
    main.replaceChildren(errorBox(err));
    state.allNamespaces = [];
  }
  refreshSel.value = localStorage.getItem('meshlab-refresh') || '0';
  armRefresh();
  if (!location.hash) history.replaceState(null, '', '#/overview');
  await mount();
}

window.addEventListener('hashchange', () => { if (!document.body.classList.contains('login')) mount(); });
// Clickable rows (traces, spans, Istio config) open with Enter as with a click.
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && ev.target instanceof HTMLElement && ev.target.matches('.trace-row, .span-row, .config-row')) ev.target.click();
});
start();
