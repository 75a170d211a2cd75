// A lineage graph as inline SVG: nodes in columns by kind (files on the left, replicas on the
// right), edges between them; a list of the same nodes and edges follows for screen readers.
import { h, s } from './dom.js';

const ORDER = ['file', 'dataset', 'job', 'checkpoint', 'model', 'adapter', 'location', 'replica'];
const BOX = { w: 150, h: 34, gapX: 40, gapY: 14 };

function column(kind) {
  // A base model is an input of the job, like its files: drawn in their column, so that no edge
  // from a file to the job crosses it.
  const i = ORDER.indexOf(kind === 'base_model' ? 'file' : kind);
  return i < 0 ? ORDER.length : i;
}

/** Draws nodes [{ id, kind, label }] and edges [{ from, to }]. */
export function lineageGraph({ nodes, edges, title }) {
  const kinds = [...new Set(nodes.map((n) => column(n.kind)))].sort((a, b) => a - b);
  const byColumn = new Map(kinds.map((k) => [k, nodes.filter((n) => column(n.kind) === k)]));
  const rows = Math.max(1, ...[...byColumn.values()].map((list) => list.length));
  const width = (kinds.length * (BOX.w + BOX.gapX)) + BOX.gapX;
  const height = (rows * (BOX.h + BOX.gapY)) + BOX.gapY;
  const at = new Map();
  kinds.forEach((k, ci) => byColumn.get(k).forEach((n, ri) => at.set(n.id, { x: BOX.gapX + (ci * (BOX.w + BOX.gapX)), y: BOX.gapY + (ri * (BOX.h + BOX.gapY)) })));

  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${title}: ${nodes.length} nodes, ${edges.length} edges` });
  for (const e of edges) {
    const a = at.get(e.from);
    const b = at.get(e.to);
    if (!a || !b) continue;
    const [x1, y1, x2, y2] = [a.x + BOX.w, a.y + (BOX.h / 2), b.x, b.y + (BOX.h / 2)];
    svg.append(s('path', { class: 'edge', d: `M${x1},${y1} C${x1 + 20},${y1} ${x2 - 20},${y2} ${x2},${y2}` }));
  }
  for (const n of nodes) {
    const p = at.get(n.id);
    const label = n.label.length > 22 ? `${n.label.slice(0, 21)}…` : n.label;
    svg.append(s('g', { class: `node kind-${n.kind}${n.tainted ? ' tainted' : ''}`, 'data-kind': n.kind, 'data-id': n.id },
      s('rect', { x: p.x, y: p.y, width: BOX.w, height: BOX.h, rx: 4 }),
      s('text', { x: p.x + 6, y: p.y + 13 }, n.kind.replace('_', ' ')),
      s('text', { x: p.x + 6, y: p.y + 27 }, label),
      s('title', null, `${n.kind} ${n.label}${where(n)}`)));
  }
  const name = (id) => nodes.find((n) => n.id === id)?.label ?? id;
  return h('figure', { class: 'graph', 'data-nodes': String(nodes.length) },
    h('figcaption', null, title),
    svg,
    h('details', null, h('summary', null, 'The graph as a list'),
      h('ul', { class: 'lineage-nodes' }, nodes.map((n) => h('li', { 'data-id': n.id }, `${n.kind} ${n.label}${where(n)}`))),
      h('ul', null, edges.map((e) => h('li', null, `${name(e.from)} → ${name(e.to)}`)))));
}

/** Where a node's bytes may live and where they are: its residency policy and its locations. */
function where(n) {
  const parts = [];
  if (n.policy) parts.push(`policy ${n.policy}`);
  if (n.locations?.length) parts.push(`at ${n.locations.join(', ')}`);
  if (n.tainted) parts.push('tainted by an erasure');
  return parts.length ? ` (${parts.join('; ')})` : '';
}
