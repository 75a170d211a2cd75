// The playground: a conversation with any model or fine-tune, the answer streamed as it is generated.
import { api, streamChat } from '../api.js';
import { h, put, field } from '../dom.js';

export async function render(root, ctx, [preset]) {
  const models = await api('/v1/models', { signal: ctx.signal });
  const model = h('select', { id: 'chat-model' }, models.data.map((m) => h('option', { value: m.id, selected: m.id === preset }, `${m.id}${m.job ? ' (fine-tuned)' : ''}`)));
  const system = h('textarea', { id: 'chat-system', rows: '2' });
  const temperature = h('input', { type: 'number', id: 'chat-temperature', min: '0', max: '2', step: '0.1', value: '0' });
  const maxTokens = h('input', { type: 'number', id: 'chat-max-tokens', min: '1', max: '4096', value: '64' });
  const prompt = h('textarea', { id: 'chat-prompt', rows: '3', required: true });
  const conversation = h('div', { class: 'chat', id: 'chat-log', role: 'log', 'aria-label': 'Conversation' });
  const status = h('p', { class: 'hint', role: 'status' });
  const send = h('button', { type: 'submit' }, 'Send');
  const stop = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Stop');
  const clear = h('button', { type: 'button', class: 'secondary' }, 'New conversation');
  const history = [];
  let running = null;

  const form = h('form', { class: 'card', id: 'chat-form', 'aria-labelledby': 'chat-title' },
    h('h2', { id: 'chat-title' }, 'Chat'),
    h('div', { class: 'row' }, field('Model', model), field('Temperature', temperature), field('Maximum new tokens', maxTokens)),
    field('System prompt (optional)', system),
    field('Message', prompt, 'Ctrl+Enter sends.'),
    send, stop, clear, status);
  prompt.addEventListener('keydown', (e) => { if (e.key === 'Enter' && e.ctrlKey) form.requestSubmit(); });
  clear.addEventListener('click', () => { history.length = 0; put(conversation); prompt.focus(); });
  stop.addEventListener('click', () => running?.abort());
  ctx.signal.addEventListener('abort', () => running?.abort());

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || running) return;
    history.push({ role: 'user', content: text });
    conversation.append(h('div', { class: 'msg user' }, h('span', { class: 'who' }, 'You'), text));
    const answer = h('span', { class: 'answer' });
    const bubble = h('div', { class: 'msg assistant', 'aria-busy': 'true' }, h('span', { class: 'who' }, model.value), answer);
    conversation.append(bubble);
    prompt.value = '';
    send.disabled = true;
    stop.disabled = false;
    status.textContent = 'Generating…';
    running = new AbortController();
    const messages = system.value.trim() ? [{ role: 'system', content: system.value.trim() }, ...history] : [...history];
    try {
      const finish = await streamChat({ model: model.value, messages, temperature: Number(temperature.value), max_tokens: Number(maxTokens.value) },
        (delta) => { answer.textContent += delta; }, running.signal);
      history.push({ role: 'assistant', content: answer.textContent });
      status.textContent = `Done (${finish ?? 'end of stream'}).`;
      ctx.announce(`${model.value} answered: ${answer.textContent}`);
    } catch (e) {
      if (e.name === 'AbortError') {
        status.textContent = 'Stopped.';
      } else {
        history.pop();
        bubble.append(h('p', { class: 'error', role: 'alert' }, e.message));
        status.textContent = 'Failed.';
      }
    } finally {
      bubble.setAttribute('aria-busy', 'false');
      running = null;
      send.disabled = false;
      stop.disabled = true;
      prompt.focus();
    }
  });

  put(root, h('h1', null, 'Playground'),
    models.data.length === 0 ? h('p', { class: 'note' }, 'No model to chat with yet: import a base model or fine-tune one.') : null,
    form, h('h2', null, 'Conversation'), conversation);
}
