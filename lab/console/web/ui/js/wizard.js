// The service wizards (Kiali's service actions): a dialog collecting what
// package wizard's Request needs, a YAML preview from api/meshlab/wizard,
// apply through api/meshlab/apply and delete of the service's wizard group.
import { api, el } from './core.js';

export const WIZARD_ACTIONS = [
  ['request_routing', 'Request Routing'],
  ['fault_injection', 'Fault Injection'],
  ['traffic_shifting', 'Traffic Shifting'],
  ['tcp_traffic_shifting', 'TCP Traffic Shifting'],
  ['request_timeouts', 'Request Timeouts'],
];

// defaultSplit is Kiali's: equal shares, the remainder on the last version.
export function defaultSplit(versions) {
  const n = versions.length;
  if (!n) return [];
  const each = Math.floor(100 / n);
  return versions.map((v, i) => ({ version: v, weight: i === n - 1 ? 100 - each * (n - 1) : each }));
}

function field(label, input, hint) {
  return el('label', { class: 'field' }, el('span', null, label), input, hint ? el('small', { class: 'muted' }, hint) : null);
}

function numberInput(attrs) {
  return el('input', Object.assign({ type: 'number' }, attrs));
}

// weightsEditor: a number input per version (input[data-weight=v]) with a
// slider and, for HTTP, a mirror toggle; get() returns []Weight.
function weightsEditor(versions, { mirror = true, idPrefix = '' } = {}) {
  const split = defaultSplit(versions);
  const sum = el('span', { class: 'weight-sum' });
  const rows = split.map(({ version, weight }) => {
    const num = numberInput({ min: 0, max: 100, value: weight, dataset: { weight: version }, class: 'weight' });
    const slider = el('input', { type: 'range', min: 0, max: 100, value: weight, 'aria-label': `weight ${version}` });
    const mir = mirror ? el('input', { type: 'checkbox', dataset: { mirror: version }, title: 'mirror this version' }) : null;
    num.addEventListener('input', () => { slider.value = num.value; update(); });
    slider.addEventListener('input', () => { num.value = slider.value; update(); });
    if (mir) mir.addEventListener('change', update);
    return { version, num, mir, row: el('div', { class: 'weight-row' }, el('span', { class: 'version' }, version), slider, num, '%', mir ? el('label', { class: 'toggle' }, mir, 'mirror') : null) };
  });
  function update() {
    const total = rows.filter((r) => !(r.mir && r.mir.checked)).reduce((a, r) => a + (Number(r.num.value) || 0), 0);
    sum.textContent = `total ${total}%`;
    sum.className = total === 100 ? 'weight-sum ok' : 'weight-sum bad';
  }
  update();
  const node = el('div', { class: 'weights', id: idPrefix ? `${idPrefix}-weights` : null },
    versions.length ? rows.map((r) => r.row) : el('p', { class: 'muted' }, 'This service has no versioned workloads.'), sum);
  return {
    node,
    get: () => rows.map((r) => ({ version: r.version, weight: Number(r.num.value) || 0, mirror: !!(r.mir && r.mir.checked) })),
  };
}

function matchEditor() {
  const fieldSel = el('select', { class: 'match-field' }, ['headers', 'uri', 'scheme', 'method', 'authority'].map((f) => el('option', { value: f }, f)));
  const name = el('input', { type: 'text', class: 'match-name', placeholder: 'header name' });
  const op = el('select', { class: 'match-op' }, ['exact', 'prefix', 'regex'].map((o) => el('option', { value: o }, o)));
  const value = el('input', { type: 'text', class: 'match-value', placeholder: 'value' });
  const sync = () => { name.hidden = fieldSel.value !== 'headers'; };
  fieldSel.addEventListener('change', sync);
  sync();
  const row = el('div', { class: 'match-row' }, fieldSel, name, op, value);
  return { row, get: () => ({ field: fieldSel.value, name: fieldSel.value === 'headers' ? name.value : undefined, op: op.value, value: value.value }) };
}

function routingEditor(versions) {
  const rules = [];
  const list = el('ol', { class: 'rules' });
  function addRule() {
    const matches = [];
    const mbox = el('div', { class: 'matches' });
    const w = weightsEditor(versions, { idPrefix: '' });
    const rule = {
      get: () => ({ matches: matches.map((m) => m.get()).filter((m) => m.value !== ''), weights: w.get() }),
    };
    const li = el('li', { class: 'rule' },
      el('div', null, el('strong', null, 'Matches'), ' ', el('button', { type: 'button', onclick: () => { const m = matchEditor(); matches.push(m); mbox.append(m.row); } }, '+ match'),
        ' ', el('button', { type: 'button', onclick: () => { rules.splice(rules.indexOf(rule), 1); li.remove(); } }, 'remove rule')),
      mbox, el('strong', null, 'Route to'), w.node);
    rules.push(rule);
    list.append(li);
  }
  addRule();
  return {
    node: el('div', null, el('p', { class: 'muted' }, 'Rules are matched in order; a rule without matches is the default route and belongs last.'),
      list, el('button', { type: 'button', id: 'wizard-add-rule', onclick: addRule }, '+ rule')),
    get: () => rules.map((r) => r.get()),
  };
}

function faultEditor() {
  const delayOn = el('input', { type: 'checkbox', id: 'fault-delay', checked: true });
  const delayPct = numberInput({ id: 'fault-delay-percentage', min: 0, max: 100, step: 0.1, value: 100 });
  const delay = el('input', { type: 'text', id: 'fault-delay-fixed', value: '5s' });
  const abortOn = el('input', { type: 'checkbox', id: 'fault-abort', checked: true });
  const abortPct = numberInput({ id: 'fault-abort-percentage', min: 0, max: 100, step: 0.1, value: 100 });
  const status = numberInput({ id: 'fault-abort-status', min: 200, max: 599, value: 503 });
  return {
    node: el('div', null,
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, delayOn, 'Add HTTP delay')),
        field('Delay percentage', delayPct), field('Fixed delay', delay, 'e.g. 5s, 500ms')),
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, abortOn, 'Add HTTP abort')),
        field('Abort percentage', abortPct), field('HTTP status', status))),
    get: () => ({
      delay: delayOn.checked ? { fixedDelay: delay.value, percentage: Number(delayPct.value) } : null,
      abort: abortOn.checked ? { httpStatus: Number(status.value), percentage: Number(abortPct.value) } : null,
    }),
  };
}

function timeoutsEditor() {
  const tOn = el('input', { type: 'checkbox', id: 'timeout-on', checked: true });
  const t = el('input', { type: 'text', id: 'timeout', value: '2s' });
  const rOn = el('input', { type: 'checkbox', id: 'retries-on', checked: true });
  const attempts = numberInput({ id: 'retries-attempts', min: 1, value: 3 });
  const perTry = el('input', { type: 'text', id: 'retries-per-try', value: '2s' });
  const retryOn = el('input', { type: 'text', id: 'retries-retry-on', value: 'gateway-error,connect-failure,refused-stream' });
  return {
    node: el('div', null,
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, tOn, 'Add HTTP timeout')), field('Timeout', t)),
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, rOn, 'Add HTTP retry')),
        field('Attempts', attempts), field('Per try timeout', perTry), field('Retry on', retryOn))),
    get: () => ({
      timeout: tOn.checked ? t.value : '',
      retries: rOn.checked ? { attempts: Number(attempts.value), perTryTimeout: perTry.value, retryOn: retryOn.value } : null,
    }),
  };
}

function advancedEditor(service) {
  const hosts = el('input', { type: 'text', id: 'adv-hosts', placeholder: `${service} (default)` });
  const tls = el('select', { id: 'adv-tls' }, ['UNSET', 'DISABLE', 'ISTIO_MUTUAL', 'SIMPLE', 'MUTUAL'].map((m) => el('option', { value: m }, m)));
  const cert = el('input', { type: 'text', id: 'adv-tls-cert', placeholder: 'clientCertificate' });
  const key = el('input', { type: 'text', id: 'adv-tls-key', placeholder: 'privateKey' });
  const ca = el('input', { type: 'text', id: 'adv-tls-ca', placeholder: 'caCertificates' });
  const mutualBox = el('div', { hidden: true }, cert, key, ca);
  tls.addEventListener('change', () => { mutualBox.hidden = tls.value !== 'MUTUAL'; });
  const lbOn = el('input', { type: 'checkbox', id: 'adv-lb' });
  const lbKind = el('select', { id: 'adv-lb-kind' }, [['simple', 'Simple'], ['header', 'Consistent hash: header'], ['cookie', 'Consistent hash: cookie'], ['sourceIp', 'Consistent hash: source IP']].map(([v, t]) => el('option', { value: v }, t)));
  const lbSimple = el('select', { id: 'adv-lb-simple' }, ['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'PASSTHROUGH'].map((m) => el('option', { value: m }, m)));
  const lbHeader = el('input', { type: 'text', id: 'adv-lb-header', placeholder: 'header name' });
  const lbCookie = el('input', { type: 'text', id: 'adv-lb-cookie', placeholder: 'cookie name' });
  const lbTTL = el('input', { type: 'text', id: 'adv-lb-ttl', placeholder: 'ttl e.g. 10s' });
  const lbSync = () => {
    lbSimple.hidden = lbKind.value !== 'simple';
    lbHeader.hidden = lbKind.value !== 'header';
    lbCookie.hidden = lbTTL.hidden = lbKind.value !== 'cookie';
  };
  lbKind.addEventListener('change', lbSync);
  lbSync();
  const cpOn = el('input', { type: 'checkbox', id: 'adv-cp' });
  const cpMax = numberInput({ id: 'adv-cp-max-connections', min: 1, value: 1 });
  const cpPending = numberInput({ id: 'adv-cp-pending', min: 1, value: 1 });
  const odOn = el('input', { type: 'checkbox', id: 'adv-od' });
  const od5xx = numberInput({ id: 'adv-od-5xx', min: 1, value: 1 });
  const odInterval = el('input', { type: 'text', id: 'adv-od-interval', placeholder: 'e.g. 10s' });
  const odEject = el('input', { type: 'text', id: 'adv-od-ejection', placeholder: 'e.g. 30s' });
  const odMax = numberInput({ id: 'adv-od-max-percent', min: 0, max: 100 });
  const gwOn = el('input', { type: 'checkbox', id: 'adv-gateway' });
  const gwExisting = el('input', { type: 'text', id: 'adv-gateway-existing', placeholder: 'namespace/name; empty = create one' });
  const gwPort = numberInput({ id: 'adv-gateway-port', value: 80 });
  const gwHosts = el('input', { type: 'text', id: 'adv-gateway-hosts', placeholder: '* (default)' });
  const gwMesh = el('input', { type: 'checkbox', id: 'adv-gateway-mesh', checked: true });
  const paOn = el('input', { type: 'checkbox', id: 'adv-pa' });
  const paMode = el('select', { id: 'adv-pa-mode' }, ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'].map((m) => el('option', { value: m }, m)));
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  return {
    node: el('details', { class: 'advanced' }, el('summary', null, 'Advanced options'),
      field('VirtualService hosts', hosts, 'comma separated'),
      field('TLS', tls), mutualBox,
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, lbOn, 'Load balancer')), lbKind, lbSimple, lbHeader, lbCookie, lbTTL),
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, cpOn, 'Connection pool')),
        field('Max connections', cpMax), field('HTTP/1 max pending requests', cpPending)),
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, odOn, 'Outlier detection')),
        field('Consecutive 5xx errors', od5xx), field('Interval', odInterval), field('Base ejection time', odEject), field('Max ejection %', odMax)),
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, gwOn, 'Gateway')),
        field('Existing gateway', gwExisting), field('Port', gwPort), field('Hosts', gwHosts), el('label', { class: 'toggle' }, gwMesh, 'include mesh')),
      el('fieldset', null, el('legend', null, el('label', { class: 'toggle' }, paOn, 'PeerAuthentication')), field('Mode', paMode))),
    get: () => {
      const a = {};
      if (list(hosts.value).length) a.hosts = list(hosts.value);
      if (tls.value !== 'UNSET') {
        a.tls = { mode: tls.value };
        if (tls.value === 'MUTUAL') Object.assign(a.tls, { clientCertificate: cert.value, privateKey: key.value, caCertificates: ca.value });
      }
      if (lbOn.checked) {
        if (lbKind.value === 'simple') a.loadBalancer = { simple: lbSimple.value };
        else if (lbKind.value === 'header') a.loadBalancer = { consistentHash: { httpHeaderName: lbHeader.value } };
        else if (lbKind.value === 'cookie') a.loadBalancer = { consistentHash: { httpCookie: { name: lbCookie.value, ttl: lbTTL.value } } };
        else a.loadBalancer = { consistentHash: { useSourceIp: true } };
      }
      if (cpOn.checked) a.connectionPool = { maxConnections: Number(cpMax.value), http1MaxPendingRequests: Number(cpPending.value) };
      if (odOn.checked) {
        a.outlierDetection = { consecutive5xxErrors: Number(od5xx.value) };
        if (odInterval.value) a.outlierDetection.interval = odInterval.value;
        if (odEject.value) a.outlierDetection.baseEjectionTime = odEject.value;
        if (odMax.value !== '') a.outlierDetection.maxEjectionPercent = Number(odMax.value);
      }
      if (gwOn.checked) {
        a.gateway = { mesh: gwMesh.checked };
        if (gwExisting.value) a.gateway.existing = gwExisting.value;
        if (Number(gwPort.value)) a.gateway.port = Number(gwPort.value);
        if (list(gwHosts.value).length) a.gateway.hosts = list(gwHosts.value);
      }
      if (paOn.checked) a.peerAuthentication = { mode: paMode.value };
      return Object.keys(a).length ? a : null;
    },
  };
}

// openWizard shows the dialog for one service action.
export function openWizard({ namespace, service, versions, action }) {
  const dlg = document.getElementById('wizard');
  const title = (WIZARD_ACTIONS.find(([a]) => a === action) || [action, action])[1];
  let editor;
  switch (action) {
    case 'traffic_shifting': editor = weightsEditor(versions, { mirror: true, idPrefix: 'wizard' }); break;
    case 'tcp_traffic_shifting': editor = weightsEditor(versions, { mirror: false, idPrefix: 'wizard' }); break;
    case 'request_routing': editor = routingEditor(versions); break;
    case 'fault_injection': editor = faultEditor(); break;
    case 'request_timeouts': editor = timeoutsEditor(); break;
    default: editor = { node: el('p', null, `unknown action ${action}`), get: () => null };
  }
  const advanced = advancedEditor(service);
  const apiVersion = el('select', { id: 'wizard-api-version' },
    el('option', { value: 'v1', selected: true }, 'v1 (Kiali 2.x)'), el('option', { value: 'v1beta1' }, 'v1beta1 (Kiali 1.80)'));
  const yaml = el('pre', { id: 'wizard-yaml', class: 'yaml' });
  const result = el('div', { id: 'wizard-result', role: 'status' });
  const changes = el('ul', { id: 'wizard-changes' });
  let previewed = '';

  const request = () => {
    const r = { action, namespace, service, apiVersion: apiVersion.value, versions };
    const v = editor.get();
    if (action === 'traffic_shifting' || action === 'tcp_traffic_shifting') r.weights = v;
    else if (action === 'request_routing') r.rules = v;
    else if (action === 'fault_injection') r.fault = v;
    else if (action === 'request_timeouts') r.timeouts = v;
    const adv = advanced.get();
    if (adv) r.advanced = adv;
    return r;
  };
  const show = (cls, text) => { result.className = cls; result.textContent = text; };
  const errText = (err) => String(err.text || err.message || err);

  async function preview() {
    show('', 'generating…');
    changes.replaceChildren();
    try {
      const r = await api('api/meshlab/wizard', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(request()) });
      previewed = r.yaml || '';
      yaml.textContent = previewed;
      show('', `${(r.objects || []).length} objects; review the YAML, then Apply.`);
      return true;
    } catch (err) {
      previewed = '';
      yaml.textContent = '';
      show('bad', errText(err));
      return false;
    }
  }
  async function apply() {
    if (!(await preview())) return;
    show('', 'applying…');
    try {
      const r = await api('api/meshlab/apply', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ yaml: previewed }) });
      show('ok', 'applied');
      changes.replaceChildren(...((r && r.changes) || []).map((c) => el('li', null, `${c.op} ${c.key}`)),
        ...((r && r.warnings) || []).map((w) => el('li', { class: 'warn' }, typeof w === 'string' ? w : JSON.stringify(w))));
    } catch (err) {
      show('bad', errText(err));
    }
  }
  async function del() {
    show('', 'deleting…');
    try {
      await api(`api/namespaces/${encodeURIComponent(namespace)}/services/${encodeURIComponent(service)}/wizard`, { method: 'DELETE' });
      show('ok', 'deleted');
    } catch (err) {
      show('bad', errText(err));
    }
  }

  dlg.replaceChildren(el('form', { method: 'dialog', class: 'wizard-form', dataset: { action }, onsubmit: (ev) => ev.preventDefault() },
    el('header', null, el('h2', null, `${title}: ${service}`), el('span', { class: 'muted' }, namespace)),
    el('div', { class: 'wizard-body' },
      editor.node, advanced.node,
      field('API version', apiVersion),
      el('div', { class: 'buttons' },
        el('button', { type: 'button', id: 'wizard-preview', onclick: preview }, 'Preview YAML'),
        el('button', { type: 'button', id: 'wizard-apply', class: 'primary', onclick: apply }, 'Apply'),
        el('button', { type: 'button', id: 'wizard-delete', class: 'danger', onclick: del, title: 'delete every object this service\'s wizards created' }, 'Delete traffic routing'),
        el('button', { type: 'button', id: 'wizard-close', onclick: () => dlg.close() }, 'Close')),
      result, changes, yaml)));
  if (!dlg.open) dlg.showModal();
}
