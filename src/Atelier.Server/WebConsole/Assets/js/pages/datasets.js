// Datasets: build a version from uploaded files, follow its progress, read its report (kept and
// dropped by reason, token counts) and the dropped examples themselves.
import { api, ApiError } from '../api.js';
import { h, put, field, table, kv, badge, when, num } from '../dom.js';

const DONE = (status) => !['queued', 'running'].includes(status);

function checkboxes(legend, name, files) {
  return h('fieldset', null, h('legend', null, legend),
    files.length === 0 ? h('p', { class: 'hint' }, 'No fine-tune files yet: upload some on the Files page.') : null,
    files.map((f) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', name, value: f.id }), `${f.filename} (${f.id.slice(0, 8)})`)));
}

const checked = (form, name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);

/** The figures of a finished build: counters as rows, dropped examples by reason, tokens. */
function report(dataset) {
  const summary = dataset.summary ?? {};
  // The report's counters (the manifest repeats them beside the build's options, which are not figures of the data).
  const counters = summary.report?.counters ?? summary.counters ?? summary.manifest?.counters ?? {};
  const flat = [];
  const walk = (prefix, value) => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else if (typeof value === 'number') {
      flat.push({ name: prefix, value });
    }
  };
  walk('', counters);
  const dropped = flat.filter((r) => /dropped|duplicat|contaminat|empty|quality/i.test(r.name));
  const tokens = flat.filter((r) => /token/i.test(r.name));
  const kept = flat.filter((r) => /kept|examples_read|windows|rows/i.test(r.name));
  const rows = (caption, list) => table(caption, [
    { label: 'Figure', value: (r) => r.name.replaceAll('_', ' ') },
    { label: 'Value', value: (r) => num(r.value), num: true },
  ], list, 'none.');
  return h('section', { id: 'dataset-report', 'aria-labelledby': 'report-title' },
    h('h2', { id: 'report-title' }, 'Report'),
    rows('Kept', kept), rows('Dropped by reason', dropped), rows('Tokens', tokens),
    h('details', null, h('summary', null, 'Every figure of the report'), kv(summary)));
}

async function detail(root, ctx, id) {
  const head = h('div', { 'aria-live': 'polite' });
  const drops = h('section', { id: 'dataset-drops', 'aria-labelledby': 'drops-title' });
  put(root, h('p', null, h('a', { href: '#/datasets' }, '← All datasets')), h('h1', null, `Dataset ${id}`), head, drops);
  let announced = false;
  const refresh = async () => {
    const d = await api(`/api/v1/datasets/${encodeURIComponent(id)}`, { signal: ctx.signal });
    const progress = d.progress ?? {};
    put(head,
      h('p', null, 'Status: ', h('span', { id: 'dataset-status' }, badge(d.status)), d.error ? h('span', { class: 'error' }, ` ${d.error}`) : null),
      kv({ name: d.name, policy: d.policy, location: d.location, created: when(d.created_at), finished: when(d.finished_at) }),
      Object.keys(progress).length ? h('div', null, h('h2', null, 'Progress'), kv(progress)) : null,
      DONE(d.status) && d.summary ? report(d) : null);
    if (DONE(d.status)) {
      if (!announced) { ctx.announce(`Dataset ${d.name} ${d.status}`); announced = true; }
      await showDrops();
      return false;
    }
    return true;
  };
  const showDrops = async () => {
    try {
      const text = await api(`/api/v1/datasets/${encodeURIComponent(id)}/files/dropped.jsonl`, { accept: '*/*', signal: ctx.signal });
      const lines = String(text).split('\n').filter((l) => l.trim()).slice(0, 50).map((l) => { try { return JSON.parse(l); } catch { return { line: l }; } });
      put(drops, h('h2', { id: 'drops-title' }, 'Dropped examples'), table('First dropped examples', [
        { label: 'Reason', value: (r) => r.reason ?? r.stage ?? '—' },
        { label: 'Where', value: (r) => [r.source_file ?? r.file, r.source_line ?? r.line].filter((x) => x !== undefined).join(' line ') || '—' },
        { label: 'Example', value: (r) => h('span', { class: 'mono' }, JSON.stringify(r).slice(0, 300)) },
      ], lines, 'nothing was dropped.'));
    } catch (e) {
      put(drops, h('h2', { id: 'drops-title' }, 'Dropped examples'), h('p', { class: 'hint' }, e instanceof ApiError && e.status === 404 ? 'Nothing was dropped.' : e.message));
    }
  };
  if (await refresh()) ctx.every(1000, refresh);
}

export async function render(root, ctx, [id]) {
  if (id) {
    await detail(root, ctx, id);
    return;
  }
  const [files, models, datasets] = await Promise.all([
    api('/v1/files?page_size=200&purpose=fine-tune', { signal: ctx.signal }),
    api('/v1/models', { signal: ctx.signal }),
    api('/api/v1/datasets', { signal: ctx.signal }),
  ]);
  const fineTune = files.data.filter((f) => f.purpose === 'fine-tune');
  const name = h('input', { type: 'text', id: 'dataset-name' });
  const model = h('select', { id: 'dataset-model' }, h('option', { value: '' }, 'none (o200k_base tokeniser)'),
    models.data.filter((m) => !m.job).map((m) => h('option', { value: m.id }, m.id)));
  const seqLen = h('input', { type: 'number', id: 'dataset-seq-len', min: '16', step: '1', placeholder: 'default' });
  const error = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', id: 'dataset-form', 'aria-labelledby': 'build-title' },
    h('h2', { id: 'build-title' }, 'Build a dataset version'),
    h('div', { class: 'row' }, field('Name', name), field('Tokenise for model', model, 'A base model makes shards a job on it can train on as they are.'), field('Window length (tokens)', seqLen)),
    checkboxes('Training files', 'training', fineTune),
    checkboxes('Validation files (training examples overlapping them are dropped)', 'validation', fineTune),
    h('button', { type: 'submit' }, 'Build'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const request = { training_files: checked(form, 'training'), validation_files: checked(form, 'validation') };
    if (name.value.trim()) request.name = name.value.trim();
    if (model.value) request.model = model.value;
    if (seqLen.value) request.seq_len = Number(seqLen.value);
    try {
      const created = await api('/api/v1/datasets', { method: 'POST', json: request });
      ctx.announce(`Building dataset ${created.name}`);
      location.hash = `#/datasets/${created.id}`;
    } catch (e) {
      put(error, h('p', { class: 'error', role: 'alert' }, `The build was refused: ${e.message}`),
        e.problems?.length ? h('ul', null, e.problems.map((p) => h('li', null, `${p.field ?? ''} ${p.message}`))) : null);
    }
  });
  put(root, h('h1', null, 'Datasets'), form,
    table('Dataset versions', [
      { label: 'Name', value: (d) => h('a', { href: `#/datasets/${d.id}` }, d.name) },
      { label: 'Id', value: (d) => h('code', null, d.id) },
      { label: 'Status', value: (d) => badge(d.status) },
      { label: 'Policy', value: (d) => d.policy },
      { label: 'Created', value: (d) => when(d.created_at) },
    ], datasets.data, 'no dataset built yet.'));
}
