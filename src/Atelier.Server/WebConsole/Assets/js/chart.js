// Line charts drawn as inline SVG by hand: no library, no canvas, so the points are elements a test
// (and a screen reader, through the table beside it) can count and read.
import { h, s } from './dom.js';

const W = 640;
const H = 240;
const PAD = { left: 52, right: 16, top: 26, bottom: 32 };

function ticks(min, max, count) {
  if (min === max) return [min];
  const step = (max - min) / (count - 1);
  return Array.from({ length: count }, (_, i) => min + (i * step));
}

const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));

/**
 * A chart of series [{ name, cls, points: [{ x, y }] }] with x the training step. The figure carries
 * data-points, the count of plotted points, and a table of the same values for screen readers.
 */
export function lineChart({ id, title, yLabel, series }) {
  const all = series.flatMap((sr) => sr.points);
  const figure = h('figure', { class: 'chart', id, 'data-points': String(all.length) });
  const captionId = `${id}-caption`;
  figure.append(h('figcaption', { id: captionId }, title));
  if (all.length === 0) {
    figure.append(h('p', { class: 'hint' }, 'No points yet: they appear as the job reports its steps.'));
    return figure;
  }

  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => PAD.left + ((x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right));
  const sy = (y) => H - PAD.bottom - (((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom));

  const summary = series.filter((sr) => sr.points.length)
    .map((sr) => `${sr.name}: ${sr.points.length} points, last ${fmt(sr.points.at(-1).y)} at step ${sr.points.at(-1).x}`).join('; ');
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': captionId, 'aria-describedby': `${id}-summary` });
  for (const t of ticks(y0, y1, 5)) {
    svg.append(s('line', { class: 'grid-line', x1: PAD.left, x2: W - PAD.right, y1: sy(t), y2: sy(t) }));
    svg.append(s('text', { x: PAD.left - 6, y: sy(t) + 4, 'text-anchor': 'end' }, fmt(t)));
  }
  // Whole steps only: every step up to ten of them, else about six evenly spread.
  const every = x1 - x0 <= 10 ? 1 : Math.ceil((x1 - x0) / 6);
  for (let t = x0; t <= x1; t += every) {
    svg.append(s('text', { x: sx(t), y: H - PAD.bottom + 16, 'text-anchor': 'middle' }, String(t)));
  }
  svg.append(s('line', { class: 'axis', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
  svg.append(s('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  svg.append(s('text', { x: (W + PAD.left) / 2, y: H - 4, 'text-anchor': 'middle' }, 'step'));
  svg.append(s('text', { x: 8, y: 14 }, yLabel));
  for (const sr of series) {
    if (sr.points.length === 0) continue;
    const g = s('g', { class: `series series-${sr.cls}`, 'data-series': sr.name });
    g.append(s('polyline', { points: sr.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(' ') }));
    for (const p of sr.points) g.append(s('circle', { class: 'point', cx: sx(p.x), cy: sy(p.y), r: 3 }));
    svg.append(g);
  }
  figure.append(svg);
  figure.append(h('ul', { class: 'legend' }, series.map((sr) => h('li', null, h('span', { class: `swatch series-${sr.cls}`, 'aria-hidden': 'true' }), sr.name))));
  figure.append(h('p', { id: `${id}-summary`, class: 'visually-hidden' }, summary));
  const steps = [...new Set(xs)].sort((a, b) => a - b);
  figure.append(h('details', null, h('summary', null, `${title}: the values`),
    h('table', null,
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'step'), series.map((sr) => h('th', { scope: 'col', class: 'num' }, sr.name)))),
      h('tbody', null, steps.map((x) => h('tr', null, h('th', { scope: 'row' }, String(x)),
        series.map((sr) => { const p = sr.points.find((q) => q.x === x); return h('td', { class: 'num' }, p ? fmt(p.y) : '—'); })))))));
  return figure;
}
