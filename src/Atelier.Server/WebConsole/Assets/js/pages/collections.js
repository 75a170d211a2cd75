// Vector collections: browse with a filter, a collection's configuration, and a search.
import { api } from '../api.js';
import { h, put, field, table, kv, num } from '../dom.js';

async function detail(root, ctx, name) {
  const c = await api(`/api/v1/collections/${encodeURIComponent(name)}`, { signal: ctx.signal });
  const dimension = c.config?.dimension ?? c.dimension;
  const vector = h('textarea', { id: 'search-vector', rows: '2', placeholder: `[${Array.from({ length: Math.min(dimension ?? 4, 4) }, () => '0.0').join(', ')}${(dimension ?? 4) > 4 ? ', …' : ''}]` });
  const limit = h('input', { type: 'number', id: 'search-limit', min: '1', max: '1000', value: '10' });
  const filter = h('textarea', { id: 'search-filter', rows: '2', placeholder: '{"must": [{"key": "lang", "match": {"value": "fr"}}]}' });
  const results = h('div', { id: 'search-results', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', role: 'search', 'aria-label': `Search ${name}` },
    h('h2', null, 'Search'),
    field(`Query vector (JSON array of ${dimension ?? 'n'} numbers)`, vector),
    h('div', { class: 'row' }, field('Results', limit), field('Payload filter (JSON, optional)', filter)),
    h('button', { type: 'submit' }, 'Search'), results);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const request = { vector: JSON.parse(vector.value), limit: Number(limit.value), with_payload: true };
      if (filter.value.trim()) request.filter = JSON.parse(filter.value);
      const answer = await api(`/api/v1/collections/${encodeURIComponent(name)}/points/search`, { method: 'POST', json: request });
      const hits = answer.result ?? answer.data ?? answer;
      put(results, table('Nearest points', [
        { label: 'Id', value: (p) => String(p.id) },
        { label: 'Score', value: (p) => (typeof p.score === 'number' ? p.score.toFixed(4) : '—'), num: true },
        { label: 'Payload', value: (p) => h('code', null, JSON.stringify(p.payload ?? {})) },
      ], Array.isArray(hits) ? hits : [], 'no point matched.'));
    } catch (e) {
      put(results, h('p', { class: 'error', role: 'alert' }, e instanceof SyntaxError ? `Not valid JSON: ${e.message}` : e.message));
    }
  });
  put(root, h('p', null, h('a', { href: '#/collections' }, '← All collections')), h('h1', null, `Collection ${name}`), kv(c), form);
}

export async function render(root, ctx, [name]) {
  if (name) {
    await detail(root, ctx, name);
    return;
  }
  const answer = await api('/api/v1/collections', { signal: ctx.signal });
  const all = answer.data ?? answer.collections ?? [];
  const search = h('input', { type: 'search', id: 'collection-filter' });
  const list = h('div', { 'aria-live': 'polite' });
  const show = () => {
    const q = search.value.trim().toLowerCase();
    const rows = all.filter((c) => !q || JSON.stringify(c).toLowerCase().includes(q));
    put(list, table(`Collections (${rows.length} of ${all.length})`, [
      { label: 'Name', value: (c) => h('a', { href: `#/collections/${encodeURIComponent(c.name)}` }, c.name) },
      { label: 'Points', value: (c) => num(c.points_count), num: true },
      { label: 'Dimension', value: (c) => String(c.config?.dimension ?? c.dimension ?? '—'), num: true },
      { label: 'Metric', value: (c) => c.config?.metric ?? c.metric ?? '—' },
      { label: 'Policy', value: (c) => c.policy ?? '—' },
    ], rows, q ? 'none matches the filter.' : 'no collection yet.'));
  };
  search.addEventListener('input', show);
  put(root, h('h1', null, 'Collections'), h('div', { class: 'card', role: 'search' }, field('Filter collections', search, 'Matches any part of a name, metric or policy.')), list);
  show();
}
