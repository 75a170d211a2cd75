// The console's shell: sign-in, the hash router (#/jobs/ID), and the life of a page (its timers
// and requests end when the user leaves it). Pages are modules under pages/.
import { api, session, whenUnauthorized, ApiError } from './api.js';
import { h, put } from './dom.js';

const pages = {
  overview: () => import('./pages/overview.js'),
  files: () => import('./pages/files.js'),
  datasets: () => import('./pages/datasets.js'),
  jobs: () => import('./pages/jobs.js'),
  models: () => import('./pages/models.js'),
  playground: () => import('./pages/playground.js'),
  collections: () => import('./pages/collections.js'),
  features: () => import('./pages/features.js'),
  sovereignty: () => import('./pages/sovereignty.js'),
};

const $ = (id) => document.getElementById(id);
const announcer = $('announcer');
let current = null;

/** Says something to screen readers through the polite live region. */
export function announce(text) {
  announcer.textContent = '';
  // A new text node on the next frame, so that the same message twice is read twice.
  requestAnimationFrame(() => { announcer.textContent = text; });
}

function showSignIn(message) {
  current?.end();
  $('nav').hidden = true;
  $('sign-out').hidden = true;
  $('page').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message ?? '';
  document.title = 'Sign in · Atelier console';
  $('api-key').focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $('api-key');
  const key = input.value.trim();
  if (!key) {
    $('sign-in-error').textContent = 'Type an API key.';
    return;
  }
  session.set(key);
  try {
    // Any authenticated read proves the key; the policies answer every role.
    await api('/api/v1/policies');
  } catch (e) {
    session.clear();
    $('sign-in-error').textContent = e instanceof ApiError && e.status === 401
      ? 'That key was not accepted: check it, or ask an admin for a new one.'
      : `Could not sign in: ${e.message}`;
    input.focus();
    return;
  }
  input.value = '';
  if (!location.hash.startsWith('#/')) location.hash = '#/overview';
  else route();
}

function signOut() {
  session.clear();
  showSignIn('Signed out.');
}

/** One visit of a page: its timers and requests, all stopped when it ends. */
class Visit {
  constructor() {
    this.controller = new AbortController();
    this.timers = [];
  }

  get signal() { return this.controller.signal; }

  get ended() { return this.controller.signal.aborted; }

  /** Runs fn every ms milliseconds until the visit ends or fn returns false. */
  every(ms, fn) {
    const tick = async () => {
      if (this.ended) return;
      let again = true;
      try { again = (await fn()) !== false; } catch (e) { if (!this.ended) console.warn(e.message); }
      if (again && !this.ended) this.timers.push(setTimeout(tick, ms));
    };
    this.timers.push(setTimeout(tick, ms));
  }

  end() {
    this.controller.abort();
    this.timers.forEach(clearTimeout);
  }
}

async function route() {
  if (!session.key) {
    showSignIn();
    return;
  }
  const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : 'overview';
  const [name, ...rest] = hash.split('/').map(decodeURIComponent);
  const load = pages[name] ?? pages.overview;
  current?.end();
  $('page').dataset.ready = 'false';
  const visit = new Visit();
  current = visit;

  $('sign-in').hidden = true;
  $('nav').hidden = false;
  $('sign-out').hidden = false;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.getAttribute('href') === `#/${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const root = $('page');
  root.hidden = false;
  put(root, h('p', { class: 'hint' }, 'Loading…'));
  try {
    const module = await load();
    if (visit.ended) return;
    put(root);
    await module.render(root, { announce, signal: visit.signal, every: (ms, fn) => visit.every(ms, fn), ended: () => visit.ended }, rest);
    if (visit.ended) return;
    const title = root.querySelector('h1')?.textContent ?? 'Atelier';
    document.title = `${title} · Atelier console`;
    // What a test (or an extension) waits on: which page is drawn, and that it is.
    root.dataset.route = hash;
    root.dataset.ready = 'true';
  } catch (e) {
    if (visit.ended) return;
    put(root, h('h1', null, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
    root.dataset.route = hash;
    root.dataset.ready = 'error';
  }
}

whenUnauthorized(() => showSignIn('Your key is no longer accepted: sign in again.'));
$('sign-in-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', signOut);
$('skip-link').addEventListener('click', (event) => {
  // The skip link moves focus without changing the hash, which the router owns.
  event.preventDefault();
  $('main').focus();
});
window.addEventListener('hashchange', () => {
  route().then(() => $('main').focus({ preventScroll: true }));
});
route();
