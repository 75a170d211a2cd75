// Files: upload (multipart, as the SDK does) with the server's line-level validation errors, the
// workspace's files, and a preview of a file's first rows.
import { api, ApiError } from '../api.js';
import { h, put, field, table, when, bytes, num } from '../dom.js';

const PREVIEW_ROWS = 20;

function previewTable(text) {
  const lines = String(text).split('\n').filter((l) => l.trim()).slice(0, PREVIEW_ROWS);
  const rows = lines.map((line, i) => {
    try {
      const row = JSON.parse(line);
      const messages = Array.isArray(row.messages) ? row.messages : [];
      return { n: i + 1, roles: messages.map((m) => m.role).join(' → ') || '—', text: messages.map((m) => `${m.role}: ${typeof m.content === 'string' ? m.content : JSON.stringify(m.content)}`).join('\n') || line };
    } catch {
      return { n: i + 1, roles: '—', text: line };
    }
  });
  return table(`First ${rows.length} rows`, [
    { label: 'Line', value: (r) => String(r.n), num: true },
    { label: 'Roles', value: (r) => r.roles },
    { label: 'Content', value: (r) => h('span', { class: 'mono' }, r.text.length > 400 ? `${r.text.slice(0, 400)}…` : r.text) },
  ], rows, 'the file is empty.');
}

export async function render(root, ctx) {
  const fileInput = h('input', { type: 'file', accept: '.jsonl,.json,.parquet,.txt', required: true });
  const purpose = h('select', null, ['fine-tune', 'batch', 'ocr', 'audio'].map((p) => h('option', { value: p }, p)));
  const result = h('div', { id: 'upload-result', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Upload');
  const form = h('form', { class: 'card', id: 'upload-form', 'aria-labelledby': 'upload-title' },
    h('h2', { id: 'upload-title' }, 'Upload a file'),
    h('div', { class: 'row' }, field('File (JSON lines of chat examples)', fileInput), field('Purpose', purpose)),
    submit, result);
  const list = h('div', { id: 'file-list' });
  const preview = h('section', { id: 'file-preview', 'aria-live': 'polite', 'aria-label': 'Preview' });
  put(root, h('h1', null, 'Files'), form, h('h2', null, 'Files of this workspace'), list, preview);

  const showPreview = async (file) => {
    put(preview, h('h2', null, `Preview of ${file.filename}`), h('p', { class: 'hint' }, 'Loading…'));
    try {
      const text = await api(`/v1/files/${encodeURIComponent(file.id)}/content`, { accept: '*/*', signal: ctx.signal });
      put(preview, h('h2', { tabindex: '-1' }, `Preview of ${file.filename}`), previewTable(text));
      preview.querySelector('h2').focus();
    } catch (e) {
      put(preview, h('p', { class: 'error' }, `Could not read the file: ${e.message}`));
    }
  };

  const refresh = async () => {
    const files = await api('/v1/files?page_size=200', { signal: ctx.signal });
    put(list, table('Files', [
      { label: 'Name', value: (f) => f.filename },
      { label: 'Id', value: (f) => h('code', null, f.id) },
      { label: 'Purpose', value: (f) => f.purpose },
      { label: 'Lines', value: (f) => num(f.num_lines), num: true },
      { label: 'Size', value: (f) => bytes(f.bytes), num: true },
      { label: 'Uploaded', value: (f) => when(f.created_at) },
      { label: 'Preview', value: (f) => h('button', { type: 'button', class: 'secondary', 'aria-label': `Preview ${f.filename}`, onclick: () => showPreview(f) }, 'Preview') },
    ], files.data, 'no files uploaded yet.'));
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file) {
      put(result, h('p', { class: 'error', role: 'alert' }, 'Choose a file to upload.'));
      fileInput.focus();
      return;
    }
    const body = new FormData();
    body.append('purpose', purpose.value);
    body.append('file', file, file.name);
    submit.disabled = true;
    put(result, h('p', { class: 'hint' }, `Uploading ${file.name}…`));
    try {
      const created = await api('/v1/files', { method: 'POST', form: body });
      put(result, h('p', { class: 'ok', role: 'status' }, `Uploaded ${created.filename}: ${num(created.num_lines)} lines, id ${created.id}.`));
      ctx.announce(`Uploaded ${created.filename}`);
      form.reset();
      await refresh();
    } catch (e) {
      const problems = e instanceof ApiError ? e.problems : [];
      put(result,
        h('p', { class: 'error', role: 'alert' }, `The upload was refused: ${e.message}`),
        problems.length ? table(`Problems found (${e.body?.total_problems ?? problems.length})`, [
          { label: 'Line', value: (p) => (p.line ?? '—').toString(), num: true },
          { label: 'Field', value: (p) => (p.field ? h('code', null, p.field) : '—') },
          { label: 'Problem', value: (p) => p.message },
        ], problems) : null);
    } finally {
      submit.disabled = false;
    }
  });

  await refresh();
}
