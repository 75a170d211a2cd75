// Models: the registry's models; a model's versions, aliases and their history, evaluations (the
// registry API, where the server has it) and its lineage graph from files to where its bytes live.
import { api, optional } from '../api.js';
import { h, put, table, kv, when, bytes } from '../dom.js';
import { lineageGraph } from '../graph.js';

const notAvailable = (what) => h('p', { class: 'note' }, `${what}: not available on this server yet.`);

/** A table of whatever rows an endpoint returned, its columns from the rows' fields. */
function rowsTable(caption, rows) {
  const list = Array.isArray(rows) ? rows : rows?.data ?? [];
  const keys = [...new Set(list.flatMap((r) => Object.keys(r ?? {})))].slice(0, 8);
  return table(caption, keys.map((k) => ({
    label: k.replaceAll('_', ' '),
    value: (r) => { const v = r[k]; return v === null || v === undefined ? '—' : typeof v === 'object' ? h('code', null, JSON.stringify(v)) : /(_at|created)$/.test(k) && typeof v === 'number' ? when(v) : String(v); },
  })), list, 'none.');
}

/** The lineage API's answer as nodes and edges, whatever it names their ends. */
function normalise(answer) {
  const nodes = (answer?.nodes ?? []).map((n) => ({
    id: n.key ?? n.ref ?? `${n.kind}:${n.id}`,
    kind: String(n.kind ?? 'artifact').toLowerCase(),
    label: n.name ?? n.label ?? n.id,
    policy: n.residency_policy ?? null,
    locations: n.locations ?? [],
    tainted: n.tainted === true,
  }));
  const known = new Set(nodes.map((n) => n.id));
  const end = (e, side) => {
    const direct = e[side] ?? e[side === 'from' ? 'source' : 'target'];
    if (typeof direct === 'string' && known.has(direct)) return direct;
    if (direct && typeof direct === 'object') return `${direct.kind}:${direct.id}`;
    const kind = e[`${side}_kind`];
    return kind ? `${kind}:${e[`${side}_id`]}` : direct;
  };
  const edges = (answer?.edges ?? []).map((e) => ({ from: end(e, 'from'), to: end(e, 'to') }));
  return { nodes, edges };
}

/** Lineage as today's model record tells it: files and dataset → job → checkpoint → model → placed bytes. */
function lineageFromModel(m) {
  const nodes = [];
  const edges = [];
  const add = (kind, id, label = id) => { if (!nodes.some((n) => n.id === `${kind}:${id}`)) nodes.push({ id: `${kind}:${id}`, kind, label }); return `${kind}:${id}`; };
  const model = add('model', m.id);
  const l = m.lineage ?? {};
  let upstream = null;
  if (m.job) {
    upstream = add('job', m.job);
    for (const f of [...(l.training_file_ids ?? []), ...(l.validation_file_ids ?? [])]) {
      const file = add('file', f);
      if (l.dataset_id) edges.push({ from: file, to: add('dataset', l.dataset_id) });
      else edges.push({ from: file, to: upstream });
    }
    if (l.dataset_id) edges.push({ from: add('dataset', l.dataset_id), to: upstream });
    if (m.root) edges.push({ from: add('base_model', m.root), to: upstream });
    if (l.checkpoint_id) {
      const ckpt = add('checkpoint', l.checkpoint_id);
      edges.push({ from: upstream, to: ckpt });
      upstream = ckpt;
    }
  } else if (l.source_directory) {
    upstream = add('file', l.source_directory, l.source_directory.split('/').filter(Boolean).at(-1));
  }
  if (upstream) edges.push({ from: upstream, to: model });
  for (const a of m.artifacts ?? []) {
    const loc = add('location', `${a.location_id}`, `${a.name} @ ${a.location_id}`);
    edges.push({ from: model, to: loc });
  }
  return { nodes, edges };
}

async function detail(root, ctx, id) {
  const enc = encodeURIComponent(id);
  const m = await api(`/api/v1/models/${enc}`, { signal: ctx.signal });
  // The registry is addressed by the name the model is a version of (the card says which).
  let versions = null;
  let aliases = null;
  let evaluations = null;
  if (m.registered_name) {
    const name = encodeURIComponent(m.registered_name);
    const [vs, record, evals] = await Promise.all([
      optional(`/api/v1/registry/models/${name}/versions`, { signal: ctx.signal }).catch(() => null),
      optional(`/api/v1/registry/models/${name}`, { signal: ctx.signal }).catch(() => null),
      optional(`/api/v1/registry/models/${name}/versions/${m.version}/evaluations`, { signal: ctx.signal }).catch(() => null),
    ]);
    versions = vs?.data ?? null;
    evaluations = evals?.data ?? evals ?? null;
    if (record) {
      const histories = await Promise.all((record.aliases ?? []).map((a) =>
        optional(`/api/v1/registry/models/${name}/aliases/${encodeURIComponent(a.alias)}/history`, { signal: ctx.signal }).catch(() => null)));
      aliases = (record.aliases ?? []).map((a, i) => ({
        alias: a.alias,
        version: a.version,
        updated_at: a.updated_at,
        moves: (histories[i]?.data ?? []).map((mv) => `${mv.from_version ?? '∅'}→${mv.to_version ?? '∅'}${mv.reason ? ` (${mv.reason})` : ''}`).join(', '),
      }));
    }
  }
  let lineage = null;
  let lineageNote = null;
  try {
    const [up, down] = await Promise.all([
      optional(`/api/v1/lineage/model/${enc}?direction=upstream&depth=10`, { signal: ctx.signal }),
      optional(`/api/v1/lineage/model/${enc}?direction=downstream&depth=10`, { signal: ctx.signal }),
    ]);
    if (up || down) {
      const a = normalise(up);
      const b = normalise(down);
      const ids = new Set();
      lineage = { nodes: [...a.nodes, ...b.nodes].filter((n) => !ids.has(n.id) && ids.add(n.id)), edges: [...a.edges, ...b.edges] };
    }
  } catch (e) {
    lineageNote = `The lineage API answered: ${e.message}`;
  }
  if (!lineage) {
    lineage = lineageFromModel(m);
    lineageNote ??= 'The lineage API is not available on this server yet: this graph is drawn from the model\'s own record (its files, dataset, job, checkpoint and where its bytes are placed).';
  }

  put(root, h('p', null, h('a', { href: '#/models' }, '← All models')), h('h1', null, `Model ${m.id}`),
    kv({ name: m.name, registered_as: m.registered_name ? `${m.registered_name} version ${m.version}` : null, tainted: m.tainted ? `yes, by erasure ${m.erasure_id}` : null, type: m.type, base_model: m.root, job: m.job, policy: m.policy, created: when(m.created), created_by: m.created_by, aliases: m.aliases, archived: m.archived }),
    m.job ? h('p', null, h('a', { href: `#/jobs/${m.job}` }, 'Open the job that trained it')) : null,
    h('p', null, h('a', { href: `#/playground/${enc}` }, 'Chat with this model in the playground')),
    h('section', { id: 'lineage', 'aria-labelledby': 'lineage-title' },
      h('h2', { id: 'lineage-title' }, 'Lineage'),
      lineageNote ? h('p', { class: 'hint', id: 'lineage-note' }, lineageNote) : null,
      lineageGraph({ ...lineage, title: `Lineage of ${m.id}` })),
    h('h2', null, 'Where its bytes live'),
    table('Artifacts', [
      { label: 'Name', value: (a) => a.name },
      { label: 'Location', value: (a) => a.location_id },
      { label: 'Size', value: (a) => bytes(a.bytes), num: true },
      { label: 'SHA-256', value: (a) => h('code', null, a.sha256.slice(0, 16)) },
    ], m.artifacts ?? []),
    h('section', { id: 'registry', 'aria-labelledby': 'registry-title' },
      h('h2', { id: 'registry-title' }, 'Registry'),
      h('h3', null, 'Versions'), versions === null ? notAvailable('The registry\'s versions') : rowsTable('Versions', versions),
      h('h3', null, 'Aliases and their history'), aliases === null ? notAvailable('The registry\'s aliases') : rowsTable('Aliases', aliases),
      h('h3', null, 'Evaluations'), evaluations === null ? notAvailable('Evaluations') : rowsTable('Evaluations', evaluations)));
}

export async function render(root, ctx, [id]) {
  if (id) {
    await detail(root, ctx, id);
    return;
  }
  const models = await api('/v1/models', { signal: ctx.signal });
  put(root, h('h1', null, 'Models'),
    table('Models', [
      { label: 'Model', value: (m) => h('a', { href: `#/models/${encodeURIComponent(m.id)}` }, m.id) },
      { label: 'Kind', value: (m) => (m.job ? 'fine-tuned' : 'base') },
      { label: 'Base', value: (m) => m.root ?? '—' },
      { label: 'Aliases', value: (m) => (m.aliases ?? []).join(', ') || '—' },
      { label: 'Context', value: (m) => String(m.max_context_length), num: true },
      { label: 'Created', value: (m) => when(m.created) },
    ], models.data, 'no model yet: import a base model with atelier models import.'));
}
