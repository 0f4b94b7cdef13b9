// Inline SVG charts: a sparkline for overview cards, line charts for the
// metrics tabs and the traces scatter. Small on purpose: no chart library.
import { el, svg, fmtTime, fmtMicros } from './core.js';

const PALETTE = ['#0066cc', '#3e8635', '#f0ab00', '#c9190b', '#6753ac', '#009596', '#8a8d90'];

export function sparkline(points, w = 220, h = 40) {
  const pts = (points || []).map(([t, v]) => [Number(t), Number(v)]).filter(([t, v]) => isFinite(t) && isFinite(v));
  const root = svg('svg', { class: 'sparkline', width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
  if (pts.length < 2) {
    root.appendChild(svg('text', { x: 4, y: h / 2 + 4, class: 'muted' }, 'no traffic'));
    return root;
  }
  const [x0, x1] = [pts[0][0], pts[pts.length - 1][0]];
  const ymax = Math.max(...pts.map((p) => p[1]), 1e-9);
  const sx = (t) => ((t - x0) / (x1 - x0 || 1)) * (w - 2) + 1;
  const sy = (v) => h - 2 - (v / ymax) * (h - 6);
  const d = pts.map((p, i) => `${i ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join('');
  root.appendChild(svg('path', { d: `${d}L${sx(x1)},${h}L${sx(x0)},${h}Z`, class: 'spark-fill' }));
  root.appendChild(svg('path', { d, class: 'spark-line' }));
  root.appendChild(svg('title', null, `peak ${ymax.toFixed(2)} rps`));
  return root;
}

// lineChart draws series [{name, points: [[unix, value]]}] with a y-axis in
// the given formatter; returns a figure with a legend.
export function lineChart(title, series, fmt = (v) => v.toFixed(2), w = 460, h = 180) {
  const fig = el('figure', { class: 'chart' }, el('figcaption', null, title));
  const all = series.flatMap((s) => s.points.map(([t, v]) => [Number(t), Number(v)])).filter(([, v]) => isFinite(v));
  const root = svg('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
  fig.appendChild(root);
  if (!all.length) {
    root.appendChild(svg('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle', class: 'muted' }, 'no data'));
    return fig;
  }
  const pad = { l: 56, r: 8, t: 8, b: 22 };
  const xs = all.map((p) => p[0]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const ymax = Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
  const sx = (t) => pad.l + ((t - x0) / (x1 - x0 || 1)) * (w - pad.l - pad.r);
  const sy = (v) => h - pad.b - (v / ymax) * (h - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    root.appendChild(svg('line', { x1: pad.l, x2: w - pad.r, y1: sy(v), y2: sy(v), class: 'gridline' }));
    root.appendChild(svg('text', { x: pad.l - 4, y: sy(v) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v)));
  }
  root.appendChild(svg('text', { x: pad.l, y: h - 4, class: 'axis' }, fmtTime(x0)));
  root.appendChild(svg('text', { x: w - pad.r, y: h - 4, 'text-anchor': 'end', class: 'axis' }, fmtTime(x1)));
  const legend = el('div', { class: 'legend' });
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const pts = s.points.map(([t, v]) => [Number(t), Number(v)]).filter(([, v]) => isFinite(v));
    if (!pts.length) return;
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join('');
    root.appendChild(svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 1.6 }, svg('title', null, s.name)));
    legend.appendChild(el('span', { class: 'legend-item' }, el('i', { style: `background:${color}` }), s.name));
  });
  fig.appendChild(legend);
  return fig;
}

// scatter plots traces by start time (x) and duration (y); errors are red.
export function traceScatter(traces, onPick, w = 900, h = 220) {
  const root = svg('svg', { class: 'scatter', width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
  if (!traces.length) {
    root.appendChild(svg('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle', class: 'muted' }, 'no traces in this window'));
    return root;
  }
  const pad = { l: 60, r: 10, t: 10, b: 22 };
  const xs = traces.map((t) => Number(t.startTime));
  const ys = traces.map((t) => Number(t.duration));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const ymax = Math.max(...ys, 1) * 1.1;
  const sx = (v) => pad.l + ((v - x0) / (x1 - x0 || 1)) * (w - pad.l - pad.r);
  const sy = (v) => h - pad.b - (v / ymax) * (h - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    root.appendChild(svg('line', { x1: pad.l, x2: w - pad.r, y1: sy(v), y2: sy(v), class: 'gridline' }));
    root.appendChild(svg('text', { x: pad.l - 4, y: sy(v) + 4, 'text-anchor': 'end', class: 'axis' }, fmtMicros(v)));
  }
  root.appendChild(svg('text', { x: pad.l, y: h - 4, class: 'axis' }, fmtTime(x0 / 1e6)));
  root.appendChild(svg('text', { x: w - pad.r, y: h - 4, 'text-anchor': 'end', class: 'axis' }, fmtTime(x1 / 1e6)));
  for (const t of traces) {
    const c = svg('circle', {
      cx: sx(Number(t.startTime)), cy: sy(Number(t.duration)), r: 5,
      class: t.error ? 'dot error' : 'dot', 'data-trace-id': t.traceID,
      onclick: () => onPick(t),
    }, svg('title', null, `${t.rootService || ''} ${t.rootOperation || ''} ${fmtMicros(t.duration)}${t.error ? ' (error)' : ''}`));
    root.appendChild(c);
  }
  return root;
}
