// Sovereignty: where bytes may live and where they do. Locations with their jurisdictions, the
// residency policies, placements and refusals from the audit log, and the audit chain's check.
import { api, ApiError } from '../api.js';
import { h, put, field, table, badge, when } from '../dom.js';

const AUDIT_TAIL = 1000;

export async function render(root, ctx) {
  const [locations, policies, audit] = await Promise.all([
    api('/api/v1/locations', { signal: ctx.signal }),
    api('/api/v1/policies', { signal: ctx.signal }),
    api(`/api/v1/audit?tail=${AUDIT_TAIL}`, { signal: ctx.signal }),
  ]);
  let verification;
  try {
    const v = await api('/api/v1/audit/verify', { signal: ctx.signal });
    verification = h('p', { id: 'chain-status' }, badge(v.valid ? 'valid' : 'invalid'),
      v.valid ? ` The hash chain of all ${v.events} audit events verifies; head ${v.head_hash.slice(0, 16)}…`
        : ` The chain breaks at event ${v.first_bad_seq}: ${v.reason}`);
  } catch (e) {
    verification = h('p', { id: 'chain-status', class: 'note' }, e instanceof ApiError && e.status === 403
      ? 'Verifying the audit chain needs the platform operator\'s key.' : `Could not verify the chain: ${e.message}`);
  }

  const events = (audit.data ?? []).slice().reverse();
  const placements = events.filter((e) => e.type === 'placement');
  const refusals = events.filter((e) => e.type === 'placement_refused' || e.type === 'access_refused');
  const filter = h('input', { type: 'search', id: 'audit-filter' });
  const lists = h('div', { 'aria-live': 'polite' });
  const eventColumns = [
    { label: 'When', value: (e) => when(Math.floor(new Date(e.at ?? e.time ?? e.timestamp).getTime() / 1000)) },
    { label: 'Event', value: (e) => e.type },
    { label: 'Artifact', value: (e) => [e.artifact_kind, e.artifact_id].filter(Boolean).join(' ') || '—' },
    { label: 'Location', value: (e) => e.location ?? '—' },
    { label: 'Policy', value: (e) => e.policy ?? '—' },
    { label: 'Actor', value: (e) => e.actor ?? '—' },
    { label: 'Detail', value: (e) => e.detail ?? '—' },
  ];
  const show = () => {
    const q = filter.value.trim().toLowerCase();
    const match = (e) => !q || JSON.stringify(e).toLowerCase().includes(q);
    put(lists,
      h('h2', { id: 'refusals-title' }, 'Refusals'),
      h('div', { id: 'refusals' }, table(`Refused placements and accesses (${refusals.filter(match).length})`, eventColumns, refusals.filter(match), 'none.')),
      h('h2', null, 'Placements'),
      h('div', { id: 'placements' }, table(`Bytes placed (${placements.filter(match).length})`, eventColumns, placements.filter(match).slice(0, 200), 'none.')));
  };
  filter.addEventListener('input', show);

  put(root, h('h1', null, 'Sovereignty'),
    h('h2', null, 'Audit chain'), verification,
    h('h2', null, 'Locations and their jurisdictions'),
    table('Locations', [
      { label: 'Location', value: (l) => l.id },
      { label: 'Country', value: (l) => l.country },
      { label: 'Jurisdictions', value: (l) => [l.country, ...(l.blocs ?? l.jurisdictions ?? [])].filter(Boolean).join(', ') },
      { label: 'Site', value: (l) => [l.site, l.rack].filter(Boolean).join(' / ') || '—' },
      { label: 'On premises', value: (l) => (l.on_prem ? 'yes' : 'no') },
      { label: 'Operator', value: (l) => l.operator ?? '—' },
      { label: 'Kind', value: (l) => l.kind ?? '—' },
    ], locations.data),
    h('h2', null, 'Residency policies'),
    h('p', null, `Workspace ${policies.workspace?.name ?? policies.workspace?.id}: default policy `, h('code', null, policies.workspace?.default_policy ?? '—'),
      ', may use ', (policies.workspace?.allowed_policies ?? []).join(', ') || '—', '.'),
    table('Policies', [
      { label: 'Policy', value: (p) => p.name },
      { label: 'Jurisdictions', value: (p) => (p.allowed_jurisdictions ?? []).join(', ') || '—' },
      { label: 'Operators', value: (p) => (p.allowed_operators ?? []).join(', ') || 'any' },
      { label: 'Replicas', value: (p) => String(p.min_replicas ?? '—'), num: true },
      { label: 'On premises', value: (p) => (p.require_on_prem ? 'required' : 'not required') },
      { label: 'Defined by', value: (p) => p.source ?? '—' },
      { label: 'Usable by this workspace', value: (p) => (p.usable_here ? 'yes' : 'no') },
    ], policies.data ?? []),
    h('div', { class: 'card', role: 'search' }, field('Filter placements and refusals', filter, `From the last ${AUDIT_TAIL} audit events you may see.`)),
    lists);
  show();
}
