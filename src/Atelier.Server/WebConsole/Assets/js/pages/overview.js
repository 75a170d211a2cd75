// Overview: what runs and waits, the nodes and their slots, and what each location stores.
import { api, optional } from '../api.js';
import { h, put, table, badge, when, bytes, num } from '../dom.js';

const ACTIVE = ['QUEUED', 'VALIDATING', 'VALIDATED', 'STARTED', 'RUNNING', 'CANCELLATION_REQUESTED'];

/** Per-location bytes from the Prometheus text of /metrics, when the server exports such a gauge. */
async function locationBytes() {
  try {
    const text = await api('/metrics', { accept: 'text/plain' });
    const found = new Map();
    for (const line of String(text).split('\n')) {
      const m = /^atelier_\w*(?:location|storage)\w*bytes\w*\{[^}]*location="([^"]+)"[^}]*\}\s+([0-9.eE+]+)/.exec(line);
      if (m) found.set(m[1], (found.get(m[1]) ?? 0) + Number(m[2]));
    }
    return found;
  } catch {
    return new Map();
  }
}

export async function render(root, ctx) {
  put(root, h('h1', null, 'Overview'));
  const body = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' });
  root.append(body);

  const refresh = async () => {
    const [jobs, nodes, locations, stored] = await Promise.all([
      api('/v1/fine_tuning/jobs?page_size=200', { signal: ctx.signal }),
      optional('/api/v1/nodes', { signal: ctx.signal }),
      api('/api/v1/locations', { signal: ctx.signal }),
      locationBytes(),
    ]);
    const running = jobs.data.filter((j) => j.status === 'RUNNING' || j.status === 'STARTED');
    const queued = jobs.data.filter((j) => ACTIVE.includes(j.status) && !running.includes(j));
    const slots = nodes?.data?.reduce((sum, n) => sum + n.slots, 0);
    const free = nodes?.data?.reduce((sum, n) => sum + n.free, 0);
    const jobColumns = [
      { label: 'Job', value: (j) => h('a', { href: `#/jobs/${j.id}` }, j.id) },
      { label: 'Status', value: (j) => badge(j.status) },
      { label: 'Base model', value: (j) => j.model },
      { label: 'Suffix', value: (j) => j.suffix ?? '—' },
      { label: 'Created', value: (j) => when(j.created_at) },
    ];
    put(body,
      h('div', { class: 'grid' },
        h('div', { class: 'card' }, h('p', { class: 'stat', id: 'stat-running' }, String(running.length)), h('p', { class: 'stat-label' }, 'jobs running')),
        h('div', { class: 'card' }, h('p', { class: 'stat', id: 'stat-queued' }, String(queued.length)), h('p', { class: 'stat-label' }, 'jobs queued or validating')),
        h('div', { class: 'card' }, h('p', { class: 'stat' }, slots === undefined ? '—' : `${free} / ${slots}`), h('p', { class: 'stat-label' }, 'training slots free')),
        h('div', { class: 'card' }, h('p', { class: 'stat' }, String(locations.data.length)), h('p', { class: 'stat-label' }, 'storage locations'))),
      h('h2', null, 'Running jobs'),
      table('Running jobs', jobColumns, running, 'none running.'),
      h('h2', null, 'Queued jobs'),
      table('Queued jobs', jobColumns, queued, 'none waiting.'),
      h('h2', null, 'Nodes and slots'),
      nodes === null
        ? h('p', { class: 'note' }, 'This server does not report its nodes (GET /api/v1/nodes is not available).')
        : table('Training nodes', [
          { label: 'Node', value: (n) => n.name },
          { label: 'Slots', value: (n) => num(n.slots), num: true },
          { label: 'Running', value: (n) => num(n.running), num: true },
          { label: 'Free', value: (n) => num(n.free), num: true },
        ], nodes.data, 'no node has registered yet.'),
      h('h2', null, 'Storage per location'),
      table('Storage locations', [
        { label: 'Location', value: (l) => l.id },
        { label: 'Country', value: (l) => l.country },
        { label: 'Site', value: (l) => l.site ?? '—' },
        { label: 'On premises', value: (l) => (l.on_prem ? 'yes' : 'no') },
        { label: 'Operator', value: (l) => l.operator ?? '—' },
        { label: 'Stored', value: (l) => (stored.has(l.id) ? bytes(stored.get(l.id)) : 'not reported'), num: true },
      ], locations.data));
    body.setAttribute('aria-busy', 'false');
  };
  await refresh();
  ctx.every(3000, refresh);
}
