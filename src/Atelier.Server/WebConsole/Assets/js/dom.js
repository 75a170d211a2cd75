// Building DOM nodes without innerHTML: every text from the server goes in as text, never as markup.
const SVG = 'http://www.w3.org/2000/svg';

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** An HTML element: h('button', { type: 'button', onclick }, 'Text'). */
export const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);

/** An SVG element. */
export const s = (tag, attrs, ...children) => build(document.createElementNS(SVG, tag), attrs, children);

/** Replaces the children of an element. */
export function put(element, ...children) {
  element.replaceChildren();
  return build(element, null, children);
}

let ids = 0;
/** A fresh id for label/input pairs. */
export const uid = (prefix) => `${prefix}-${++ids}`;

/** A labelled field: returns [label, input] with the label bound to the input. */
export function field(text, input, hint) {
  input.id ||= uid('f');
  const parts = [h('label', { for: input.id }, text), input];
  if (hint) {
    const hintId = uid('hint');
    input.setAttribute('aria-describedby', hintId);
    parts.push(h('p', { id: hintId, class: 'hint' }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

/** A table from column definitions: [{ label, value: row => text|Node, num }]. */
export function table(caption, columns, rows, empty = 'Nothing yet.') {
  if (!rows || rows.length === 0) return h('p', { class: 'hint' }, `${caption}: ${empty}`);
  return h('table', null,
    h('caption', null, caption),
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', null, rows.map((row) => h('tr', null, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.value(row)))))));
}

/** A definition list of an object's fields; nested objects become nested lists. */
export function kv(object) {
  const dl = h('dl', { class: 'kv' });
  for (const [key, value] of Object.entries(object ?? {})) {
    if (value === null || value === undefined) continue;
    dl.append(h('dt', null, key.replaceAll('_', ' ')));
    dl.append(h('dd', null, value !== null && typeof value === 'object' && !Array.isArray(value) ? kv(value)
      : Array.isArray(value) ? (value.length && typeof value[0] === 'object' ? h('code', null, JSON.stringify(value)) : value.join(', ') || '—')
      : String(value)));
  }
  return dl;
}

export const badge = (text) => h('span', { class: `badge ${text}` }, text);

export function when(unixSeconds) {
  if (!unixSeconds) return '—';
  return new Date(unixSeconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export const num = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en'));
