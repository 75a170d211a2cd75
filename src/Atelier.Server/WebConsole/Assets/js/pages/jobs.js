// Jobs: the list with Mistral's filters, creating a job, and a job's page: its status timeline,
// events, loss and accuracy curves updating as it trains, checkpoints (restore), cancel and start.
import { api, authorization } from '../api.js';
import { h, put, field, table, kv, badge, when, num } from '../dom.js';
import { lineChart } from '../chart.js';

const STATUSES = ['QUEUED', 'VALIDATING', 'VALIDATED', 'RUNNING', 'SUCCESS', 'FAILED', 'FAILED_VALIDATION', 'CANCELLATION_REQUESTED', 'CANCELLED'];
const TERMINAL = ['SUCCESS', 'FAILED', 'FAILED_VALIDATION', 'CANCELLED'];

const first = (row, ...names) => names.map((n) => row?.[n]).find((v) => typeof v === 'number' && Number.isFinite(v));

/** One metrics row, whatever the server names its fields. */
function metricRow(r) {
  return {
    step: first(r, 'step', 'step_number'),
    trainLoss: first(r, 'train_loss', 'loss'),
    validLoss: first(r, 'valid_loss', 'validation_loss', 'eval_loss'),
    trainAccuracy: first(r, 'train_accuracy', 'train_mean_token_accuracy'),
    validAccuracy: first(r, 'valid_mean_token_accuracy', 'valid_accuracy', 'validation_accuracy'),
  };
}

/** The rows in a piece of a metrics answer: an array, { data: [...] }, or one row. */
function rowsIn(value) {
  const list = Array.isArray(value) ? value : Array.isArray(value?.data) ? value.data : [value];
  return list.map(metricRow).filter((r) => r.step !== undefined);
}

/**
 * Per-step metrics from GET /api/v1/jobs/{id}/metrics, where the server has it. A JSON answer is
 * read whole (and read again at the next poll); a streamed one (JSON lines or server-sent events)
 * is read as it comes for as long as the page is open, each row merged by step. Resolves to false
 * when the server has no such endpoint, and the page then draws each checkpoint's metrics.
 */
async function followMetrics(jobId, state, signal) {
  const response = await fetch(`/api/v1/jobs/${encodeURIComponent(jobId)}/metrics`, {
    headers: { ...authorization(), Accept: 'application/x-ndjson, text/event-stream, application/json' },
    signal,
    cache: 'no-store',
  });
  if (!response.ok) {
    await response.body?.cancel();
    return false;
  }
  const merge = (rows) => {
    for (const row of rows) state.metrics.set(row.step, { ...state.metrics.get(row.step), ...Object.fromEntries(Object.entries(row).filter(([, v]) => v !== undefined)) });
  };
  const type = response.headers.get('content-type') ?? '';
  if (type.startsWith('application/json')) {
    merge(rowsIn(await response.json()));
    state.metricsMode = 'poll';
    return true;
  }
  state.metricsMode = 'stream';
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, end).replace(/^data:\s*/, '').trim();
          buffer = buffer.slice(end + 1);
          if (line.startsWith('{') || line.startsWith('[')) merge(rowsIn(JSON.parse(line)));
        }
      }
    } catch {
      // The page was left (aborted) or the stream broke: the rows read so far stay drawn.
    }
  })();
  return true;
}

/** The rows to draw: the metrics endpoint's where it answered, else each checkpoint's. */
async function metricsOf(job, state, signal) {
  if (state.metricsEndpoint === undefined || state.metricsMode === 'poll') {
    try {
      state.metricsEndpoint = await followMetrics(job.id, state, signal);
    } catch {
      state.metricsEndpoint = false;
    }
  }
  if (state.metricsEndpoint && state.metrics.size > 0) {
    return [...state.metrics.values()].sort((a, b) => a.step - b.step);
  }
  return (job.checkpoints ?? []).map((c) => ({
    step: c.step_number,
    trainLoss: first(c.metrics, 'train_loss'),
    validLoss: first(c.metrics, 'valid_loss'),
    validAccuracy: first(c.metrics, 'valid_mean_token_accuracy'),
  })).sort((a, b) => a.step - b.step);
}

const points = (rows, key) => rows.filter((r) => r[key] !== undefined).map((r) => ({ x: r.step, y: r[key] }));

function timeline(job) {
  const changes = (job.events ?? []).filter((e) => e.name === 'status-updated' && e.data?.status);
  if (!changes.length || changes.at(-1).data.status !== job.status) changes.push({ data: { status: job.status }, created_at: job.modified_at });
  return h('ol', { class: 'timeline', id: 'job-timeline', 'aria-label': 'Status timeline' },
    changes.map((e) => h('li', null, badge(e.data.status), ' ', h('time', null, when(e.created_at)))));
}

async function detail(root, ctx, id) {
  const state = { metricsEndpoint: undefined, metricsMode: null, metrics: new Map(), signatures: {} };
  const status = h('div', { id: 'job-status', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  const charts = h('div', { id: 'job-charts' });
  const checkpoints = h('section', { 'aria-labelledby': 'ckpt-title' });
  const events = h('section', { 'aria-labelledby': 'events-title' });
  const message = h('div', { 'aria-live': 'assertive' });
  put(root, h('p', null, h('a', { href: '#/jobs' }, '← All jobs')), h('h1', null, `Job ${id}`), status, actions, message,
    h('h2', null, 'Training curves'), h('p', { class: 'hint', id: 'metrics-source' }), charts, checkpoints, events);

  const act = async (label, path, body) => {
    try {
      const answer = await api(path, { method: 'POST', json: body ?? {} });
      put(message, h('p', { class: 'ok', role: 'status' }, `${label}: done.`));
      ctx.announce(`${label}: done`);
      return answer;
    } catch (e) {
      put(message, h('p', { class: 'error', role: 'alert' }, `${label} failed: ${e.message}`));
      return null;
    }
  };

  // Replaces a section only when what it shows changed, so a keyboard user's focus on one of its
  // buttons is not lost to every poll.
  const update = (name, element, signature, build) => {
    if (state.signatures[name] === signature) return;
    state.signatures[name] = signature;
    put(element, ...build());
  };

  const refresh = async () => {
    const job = await api(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}`, { signal: ctx.signal });
    const rows = await metricsOf(job, state, ctx.signal);
    update('status', status, `${job.status}|${job.events?.length}|${job.fine_tuned_model}|${job.trained_tokens}`, () => [
      h('p', null, 'Status: ', badge(job.status), job.error ? h('span', { class: 'error' }, ` ${job.error}`) : null),
      timeline(job),
      kv({
        base_model: job.model, suffix: job.suffix, fine_tuned_model: job.fine_tuned_model, trained_tokens: job.trained_tokens,
        training_files: job.training_files, validation_files: job.validation_files, created: when(job.created_at),
        hyperparameters: job.hyperparameters,
      }),
      job.fine_tuned_model ? h('p', null, h('a', { href: `#/models/${encodeURIComponent(job.fine_tuned_model)}` }, `Open model ${job.fine_tuned_model} and its lineage`)) : null,
    ]);
    update('actions', actions, job.status, () => [
      h('button', { type: 'button', id: 'job-start', disabled: job.status !== 'VALIDATED', onclick: () => act('Start', `/v1/fine_tuning/jobs/${id}/start`) }, 'Start'),
      h('button', { type: 'button', id: 'job-cancel', class: 'danger', disabled: TERMINAL.includes(job.status), onclick: () => act('Cancel', `/v1/fine_tuning/jobs/${id}/cancel`) }, 'Cancel'),
    ]);
    document.getElementById('metrics-source').textContent = state.metricsEndpoint && state.metrics.size > 0
      ? 'Per-step metrics from the job\'s metrics endpoint.'
      : 'Metrics as recorded with each checkpoint (this server has no per-step metrics endpoint).';
    update('charts', charts, JSON.stringify(rows), () => [
      lineChart({ id: 'loss-chart', title: 'Loss', yLabel: 'loss', series: [
        { name: 'train loss', cls: 'train', points: points(rows, 'trainLoss') },
        { name: 'validation loss', cls: 'valid', points: points(rows, 'validLoss') }] }),
      lineChart({ id: 'accuracy-chart', title: 'Mean token accuracy', yLabel: 'accuracy', series: [
        { name: 'train accuracy', cls: 'train', points: points(rows, 'trainAccuracy') },
        { name: 'validation accuracy', cls: 'acc', points: points(rows, 'validAccuracy') }] }),
    ]);
    const ckpts = job.checkpoints ?? [];
    update('checkpoints', checkpoints, JSON.stringify(ckpts), () => [
      h('h2', { id: 'ckpt-title' }, 'Checkpoints'),
      table('Checkpoints, newest first', [
        { label: 'Step', value: (c) => String(c.step_number), num: true },
        { label: 'Train loss', value: (c) => c.metrics?.train_loss?.toFixed(4) ?? '—', num: true },
        { label: 'Validation loss', value: (c) => c.metrics?.valid_loss?.toFixed(4) ?? '—', num: true },
        { label: 'Accuracy', value: (c) => c.metrics?.valid_mean_token_accuracy?.toFixed(4) ?? '—', num: true },
        { label: 'Saved', value: (c) => when(c.created_at) },
        { label: 'Restore', value: (c) => (c.pruned ? 'pruned' : h('button', { type: 'button', class: 'secondary', 'aria-label': `Restore from step ${c.step_number}`,
          onclick: async () => {
            const created = await act(`Restore from step ${c.step_number}`, `/api/v1/checkpoints/${encodeURIComponent(id)}/${c.step_number}/restore`, { training_steps: Math.max(job.hyperparameters?.training_steps ?? 0, c.step_number + 1) });
            if (created?.id) location.hash = `#/jobs/${created.id}`;
          } }, 'Restore')) },
      ], ckpts, 'none yet.'),
    ]);
    update('events', events, String(job.events?.length), () => [
      h('h2', { id: 'events-title' }, 'Events'),
      table('Events, oldest first', [
        { label: 'When', value: (e) => when(e.created_at) },
        { label: 'Event', value: (e) => e.name },
        { label: 'Data', value: (e) => (e.data ? h('code', null, JSON.stringify(e.data)) : '—') },
      ], job.events ?? [], 'none yet.'),
    ]);
    if (TERMINAL.includes(job.status)) {
      ctx.announce(`Job ${job.status}`);
      return false;
    }
    return true;
  };
  if (await refresh()) ctx.every(500, refresh);
}

async function createForm(ctx) {
  const [models, files, datasets] = await Promise.all([
    api('/v1/models', { signal: ctx.signal }),
    api('/v1/files?page_size=200&purpose=fine-tune', { signal: ctx.signal }),
    api('/api/v1/datasets', { signal: ctx.signal }),
  ]);
  const base = models.data.filter((m) => !m.job);
  const fineTune = files.data.filter((f) => f.purpose === 'fine-tune');
  const model = h('select', { id: 'job-model', required: true }, base.map((m) => h('option', { value: m.id }, m.id)));
  const dataset = h('select', { id: 'job-dataset' }, h('option', { value: '' }, 'none: train on the files below'),
    datasets.data.filter((d) => d.status === 'succeeded').map((d) => h('option', { value: d.id }, `${d.name} (${d.id})`)));
  const steps = h('input', { type: 'number', id: 'job-steps', min: '1', value: '10' });
  const rate = h('input', { type: 'number', id: 'job-rate', step: 'any', min: '0', value: '0.0001' });
  const seqLen = h('input', { type: 'number', id: 'job-seq-len', min: '16', placeholder: 'default' });
  const suffix = h('input', { type: 'text', id: 'job-suffix', maxlength: '18' });
  const autoStart = h('input', { type: 'checkbox', id: 'job-auto-start', checked: true });
  const error = h('div', { 'aria-live': 'polite' });
  const group = (legend, name) => h('fieldset', null, h('legend', null, legend),
    fineTune.length ? fineTune.map((f) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', name, value: f.id }), `${f.filename} (${f.id.slice(0, 8)})`))
      : h('p', { class: 'hint' }, 'No fine-tune files yet.'));
  const form = h('form', { class: 'card', id: 'job-form', 'aria-labelledby': 'create-title' },
    h('h2', { id: 'create-title' }, 'Create a fine-tuning job'),
    h('div', { class: 'row' }, field('Base model', model), field('Dataset version', dataset), field('Suffix', suffix, 'Part of the fine-tuned model\'s name.')),
    group('Training files', 'train'), group('Validation files', 'valid'),
    h('fieldset', null, h('legend', null, 'Hyperparameters'),
      h('div', { class: 'row' }, field('Training steps', steps), field('Learning rate', rate), field('Sequence length (tokens)', seqLen))),
    h('label', { class: 'inline', for: autoStart.id }, autoStart, 'Start as soon as validated'),
    h('div', null, h('button', { type: 'submit' }, 'Create job')), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const pick = (name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
    const hyperparameters = { training_steps: Number(steps.value), learning_rate: Number(rate.value) };
    if (seqLen.value) hyperparameters.seq_len = Number(seqLen.value);
    const request = { model: model.value, hyperparameters, auto_start: autoStart.checked, validation_files: pick('valid') };
    if (dataset.value) request.dataset_id = dataset.value;
    else request.training_files = pick('train').map((id) => ({ file_id: id, weight: 1 }));
    if (suffix.value.trim()) request.suffix = suffix.value.trim();
    try {
      const job = await api('/v1/fine_tuning/jobs', { method: 'POST', json: request });
      ctx.announce(`Job ${job.id} created`);
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      put(error, h('p', { class: 'error', role: 'alert' }, `The job was refused: ${e.message}`),
        e.problems?.length ? h('ul', null, e.problems.map((p) => h('li', null, `${p.field ?? ''} ${p.message}`))) : null);
    }
  });
  return form;
}

export async function render(root, ctx, [id]) {
  if (id) {
    await detail(root, ctx, id);
    return;
  }
  const statusFilter = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'any'), STATUSES.map((st) => h('option', { value: st }, st)));
  const modelFilter = h('input', { type: 'text', id: 'filter-model' });
  const suffixFilter = h('input', { type: 'text', id: 'filter-suffix' });
  const list = h('div', { id: 'job-list', 'aria-live': 'polite' });
  const filters = h('form', { class: 'card', role: 'search', 'aria-label': 'Filter jobs' },
    h('div', { class: 'row' }, field('Status', statusFilter), field('Base model', modelFilter), field('Suffix', suffixFilter)),
    h('button', { type: 'submit' }, 'Filter'));
  const refresh = async () => {
    const q = new URLSearchParams({ page_size: '200' });
    if (statusFilter.value) q.set('status', statusFilter.value);
    if (modelFilter.value.trim()) q.set('model', modelFilter.value.trim());
    if (suffixFilter.value.trim()) q.set('suffix', suffixFilter.value.trim());
    const jobs = await api(`/v1/fine_tuning/jobs?${q}`, { signal: ctx.signal });
    put(list, table(`Jobs (${num(jobs.total)})`, [
      { label: 'Job', value: (j) => h('a', { href: `#/jobs/${j.id}` }, j.id) },
      { label: 'Status', value: (j) => badge(j.status) },
      { label: 'Base model', value: (j) => j.model },
      { label: 'Suffix', value: (j) => j.suffix ?? '—' },
      { label: 'Fine-tuned model', value: (j) => j.fine_tuned_model ?? '—' },
      { label: 'Created', value: (j) => when(j.created_at) },
    ], jobs.data, 'no job matches.'));
  };
  filters.addEventListener('submit', (event) => { event.preventDefault(); refresh(); });
  put(root, h('h1', null, 'Fine-tuning jobs'), filters, list, await createForm(ctx));
  await refresh();
}
