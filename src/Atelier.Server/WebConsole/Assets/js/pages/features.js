// Feature views and training sets: browse with a filter, a view's schema and versions.
import { api } from '../api.js';
import { h, put, field, table, kv, when } from '../dom.js';

async function detail(root, ctx, name) {
  const v = await api(`/api/v1/features/views/${encodeURIComponent(name)}`, { signal: ctx.signal });
  const features = v.features ?? v.schema?.features ?? [];
  put(root, h('p', null, h('a', { href: '#/features' }, '← All feature views')), h('h1', null, `Feature view ${name}`),
    Array.isArray(features) && features.length ? table('Features', [
      { label: 'Name', value: (f) => f.name ?? String(f) },
      { label: 'Type', value: (f) => f.type ?? f.dtype ?? '—' },
      { label: 'Description', value: (f) => f.description ?? '—' },
    ], features) : null,
    h('h2', null, 'Definition'), kv(v));
}

export async function render(root, ctx, [name]) {
  if (name) {
    await detail(root, ctx, name);
    return;
  }
  const [views, sets] = await Promise.all([
    api('/api/v1/features/views', { signal: ctx.signal }),
    api('/api/v1/features/training-sets', { signal: ctx.signal }),
  ]);
  const allViews = views.data ?? [];
  const allSets = sets.data ?? [];
  const search = h('input', { type: 'search', id: 'feature-filter' });
  const list = h('div', { 'aria-live': 'polite' });
  const show = () => {
    const q = search.value.trim().toLowerCase();
    const match = (x) => !q || JSON.stringify(x).toLowerCase().includes(q);
    put(list,
      table(`Feature views (${allViews.filter(match).length} of ${allViews.length})`, [
        { label: 'Name', value: (v) => h('a', { href: `#/features/${encodeURIComponent(v.name)}` }, v.name) },
        { label: 'Version', value: (v) => String(v.version ?? '—'), num: true },
        { label: 'Entity', value: (v) => [v.entity ?? v.entities ?? v.join_keys].flat().filter(Boolean).join(', ') || '—' },
        { label: 'Policy', value: (v) => v.policy ?? '—' },
        { label: 'Created', value: (v) => when(v.created_at) },
      ], allViews.filter(match), q ? 'none matches the filter.' : 'no feature view yet.'),
      table(`Training sets (${allSets.filter(match).length} of ${allSets.length})`, [
        { label: 'Id', value: (t) => h('code', null, t.id) },
        { label: 'Name', value: (t) => t.name ?? '—' },
        { label: 'Examples', value: (t) => String(t.examples ?? t.rows ?? '—'), num: true },
        { label: 'Created', value: (t) => when(t.created_at) },
      ], allSets.filter(match), q ? 'none matches the filter.' : 'no training set yet.'));
  };
  search.addEventListener('input', show);
  put(root, h('h1', null, 'Feature views'), h('div', { class: 'card', role: 'search' }, field('Filter feature views and training sets', search)), list);
  show();
}
