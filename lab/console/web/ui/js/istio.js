// Istio Config: every resource with its validation (KIA checks and the
// analyzer's IST messages) and a YAML editor that applies through the API.
import { api, el, parseHash, setHashParams, selectedNamespaces, setReady, errorBox, table } from './core.js';

function validationState(item) {
  const v = item.validation || {};
  const checks = [...(v.checks || []).map((c) => ({ code: c.code, severity: c.severity, message: c.message, path: c.path })),
    ...(item.analyzer || v.analyzer || []).map((a) => ({ code: a.code, severity: String(a.level || '').toLowerCase(), message: a.message, path: a.field }))];
  const errors = checks.filter((c) => c.severity === 'error').length;
  const warnings = checks.filter((c) => c.severity === 'warning').length;
  const valid = v.valid !== false && errors === 0;
  return { checks, errors, warnings, valid };
}

function validationIcon(st) {
  const [glyph, cls, title] = !st.valid ? ['✖', 'failure', `${st.errors} error(s)`] : st.warnings ? ['⚠', 'degraded', `${st.warnings} warning(s)`] : ['✔', 'healthy', 'valid'];
  return el('span', { class: `validation ${cls}`, dataset: { valid: String(st.valid), errors: st.errors, warnings: st.warnings }, title }, glyph);
}

function keyOf(item) {
  return `${item.kind}/${item.namespace}/${item.name}`;
}

function editor(item, onChanged) {
  const ta = el('textarea', { id: 'config-yaml', spellcheck: 'false', rows: 24 }, item.yaml || '');
  const result = el('div', { id: 'config-result', role: 'status' });
  const path = `api/namespaces/${encodeURIComponent(item.namespace)}/istio/${encodeURIComponent(item.kind)}/${encodeURIComponent(item.name)}`;
  const show = (cls, text) => { result.className = cls; result.textContent = text; };
  const st = validationState(item);
  return el('section', { class: 'config-editor', dataset: { key: keyOf(item) } },
    el('h2', null, keyOf(item), ' ', validationIcon(st)),
    st.checks.length ? el('ul', { class: 'checks' }, st.checks.map((c) => el('li', { class: c.severity }, el('strong', null, c.code), ` ${c.message}`, c.path ? el('span', { class: 'muted' }, ` (${c.path})`) : ''))) : null,
    ta,
    el('div', { class: 'buttons' },
      el('button', { type: 'button', id: 'config-apply', class: 'primary', onclick: async () => {
        show('', 'applying…');
        try {
          await api(path, { method: 'PUT', headers: { 'Content-Type': 'application/yaml' }, body: ta.value });
          show('ok', 'applied');
          onChanged();
        } catch (err) {
          show('bad', String(err.text || err.message));
        }
      } }, 'Apply'),
      el('button', { type: 'button', id: 'config-delete', class: 'danger', onclick: async () => {
        show('', 'deleting…');
        try {
          await api(path, { method: 'DELETE' });
          show('ok', 'deleted');
          onChanged();
        } catch (err) {
          show('bad', String(err.text || err.message));
        }
      } }, 'Delete')),
    result);
}

export async function renderIstio(main, signal) {
  main.append(el('h1', null, 'Istio Config'));
  const namespaces = selectedNamespaces();
  let data;
  try {
    data = await api(`api/istio/config?namespaces=${encodeURIComponent(namespaces.join(','))}&validate=true`, { signal });
  } catch (err) {
    if (signal.aborted) return;
    main.append(errorBox(err));
    setReady('istio');
    return;
  }
  if (signal.aborted) return; // the user already left this page
  const items = (data && data.items) || [];
  const sum = (data && data.summary) || {};
  const edit = el('div', { id: 'config-edit' });
  const open = (item) => {
    setHashParams({ open: keyOf(item) });
    edit.replaceChildren(editor(item, () => {}));
    for (const r of main.querySelectorAll('.config-row')) r.classList.toggle('selected', r.dataset.key === keyOf(item));
  };
  const rows = items.map((it) => {
    const st = validationState(it);
    return el('tr', { class: 'config-row', tabindex: 0, dataset: { key: keyOf(it) }, onclick: () => open(it) },
      el('td', null, validationIcon(st)), el('td', null, it.kind), el('td', null, el('span', { class: 'link' }, it.name)),
      el('td', null, it.namespace), el('td', { class: 'mono' }, it.apiVersion || ''),
      el('td', null, st.checks.slice(0, 3).map((c) => el('div', { class: c.severity }, `${c.code}: ${c.message}`)), st.checks.length > 3 ? `+${st.checks.length - 3} more` : ''));
  });
  const kinds = [...new Set(items.map((i) => i.kind))].sort();
  const kindSel = el('select', { id: 'config-kind' }, el('option', { value: '' }, 'all kinds'), kinds.map((k) => el('option', { value: k }, k)));
  const text = el('input', { type: 'search', id: 'config-filter', placeholder: 'Filter by name…' });
  const onlyInvalid = el('input', { type: 'checkbox', id: 'config-invalid' });
  const filter = () => {
    const t = text.value.trim().toLowerCase();
    for (const r of rows) {
      const [kind, , name] = r.dataset.key.split('/');
      const bad = r.querySelector('.validation').dataset.valid === 'false' || Number(r.querySelector('.validation').dataset.warnings) > 0;
      r.hidden = (kindSel.value && kind !== kindSel.value) || (t && !name.toLowerCase().includes(t)) || (onlyInvalid.checked && !bad);
    }
  };
  for (const c of [kindSel, text, onlyInvalid]) c.addEventListener(c === text ? 'input' : 'change', filter);
  main.append(el('div', { class: 'toolbar' }, kindSel, text, el('label', { class: 'toggle' }, onlyInvalid, 'with findings only')),
    el('p', { class: 'summary' }, `${items.length} objects · `, el('span', { class: 'count failure' }, `✖ ${sum.errors || 0}`), ' ', el('span', { class: 'count degraded' }, `⚠ ${sum.warnings || 0}`)),
    items.length ? table(['', 'kind', 'name', 'namespace', 'apiVersion', 'validation'], rows, { id: 'config-table' }) : el('p', { class: 'muted' }, 'No Istio config in the selected namespaces.'),
    edit);
  const want = parseHash().params.get('open');
  const it = want && items.find((x) => keyOf(x) === want);
  if (it) open(it);
  setReady('istio');
}
