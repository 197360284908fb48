// The runs list: filters (status, the active ones by default; cluster,
// owner, alias, queued time range), sort, paging and a refresh every few
// seconds while the page is shown; and the runs table other views reuse.

import { get, query, clusterNames } from './api.js';
import { h, table, cursorPager, statusBadge, runningLongBadge, timeEl, duration, navigate, replace, problemBox, ACTIVE_STATUSES, ALL_STATUSES } from './dom.js';
import { field } from './forms.js';

const PAGE = 50;
const REFRESH_MS = 5000;
const enc = encodeURIComponent;

/** A short form of a run id for tables; the whole id is the link's title. */
function shortId(id) {
  return id.length > 14 ? `${id.slice(0, 13)}…` : id;
}

export function runsTable(rows, { id, empty = 'No runs.' } = {}) {
  return table([
    ['Run', (r) => h('a', { href: `#/runs/${enc(r.run_id)}`, class: 'mono run-link', title: r.run_id, 'data-run-id': r.run_id }, shortId(r.run_id))],
    ['Task', (r) => r.alias],
    ['Status', (r) => [statusBadge(r), runningLongBadge(r)]],
    ['Cluster', (r) => r.cluster],
    ['Owner', (r) => r.user],
    ['Queued', (r) => timeEl(r.queued_at)],
    ['Duration', (r) => (r.started_at ? duration(r.started_at, r.finished_at) : '—')],
    ['Waiting', (r) => (r.waiting_reason ? h('span', { class: 'waiting', title: r.waiting_reason }, r.waiting_reason) : '—')],
    ['Exit', (r) => h('td', { class: 'num' }, r.exit_code ?? '—')],
  ], rows, { id, empty, label: 'Runs' });
}

/** The statuses a runs page shows: the `status` parameter, else the active ones. */
function statusesOf(params) {
  const raw = params.get('status');
  if (raw === null) return ACTIVE_STATUSES;
  if (raw === 'any' || raw === '') return [];
  return raw.split(',').filter((s) => ALL_STATUSES.includes(s));
}

/** A local date and time from a datetime-local input, as the API's RFC 3339. */
function toIso(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? local : d.toISOString();
}

// The tokens of the pages visited, per list (its filters and sort), so
// "Previous" goes back along the pages "Next" came by.
const trails = new Map();

export async function runsView(scope) {
  const p = scope.params;
  const statuses = statusesOf(p);
  const token = p.get('page') || '';
  const at = token ? Number(p.get('at')) || 0 : 0;
  const filters = {
    cluster: p.get('cluster') || '',
    owner_id: p.get('owner_id') || '',
    alias: p.get('alias') || '',
    since: p.get('since') || '',
    until: p.get('until') || '',
  };
  const sortBy = p.get('sort_by') || 'queued_at';
  const order = p.get('order') || 'desc';
  const url = `api/v6/history${query({
    status: statuses,
    cluster: filters.cluster,
    owner_id: filters.owner_id,
    alias: filters.alias,
    queued_at_since: toIso(filters.since),
    queued_at_until: toIso(filters.until),
    sort_by: sortBy,
    order,
    limit: PAGE,
    next_token: token,
  })}`;
  const listKey = JSON.stringify([statuses, filters, sortBy, order]);
  const trail = trails.get(listKey) || [''];
  trails.set(listKey, trail);
  const pageIndex = Math.round(at / PAGE);
  trail[pageIndex] = token;
  const [data, clusters] = await Promise.all([get(url), clusterNames().catch(() => [])]);

  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs', id: 'runs-filters' },
    h('fieldset', { class: 'statuses' },
      h('legend', {}, 'Status'),
      ALL_STATUSES.map((s) => h('label', {},
        h('input', { type: 'checkbox', name: 'status', value: s, checked: statuses.includes(s), id: `status-${s}` }),
        s === 'STOPPED' ? 'STOPPED (success or failed)' : s))),
    field({ name: 'cluster', label: 'Cluster', kind: 'select', value: filters.cluster, options: [['', 'any cluster'], ...clusters] }),
    field({ name: 'owner_id', label: 'Owner', value: filters.owner_id }),
    field({ name: 'alias', label: 'Task alias', value: filters.alias, placeholder: 'part of the alias' }),
    field({ name: 'since', label: 'Queued from', kind: 'datetime-local', value: filters.since }),
    field({ name: 'until', label: 'Queued before', kind: 'datetime-local', value: filters.until }),
    field({ name: 'sort_by', label: 'Sort by', kind: 'select', value: sortBy, options: [['queued_at', 'Queued'], ['started_at', 'Started'], ['finished_at', 'Finished'], ['status', 'Status'], ['alias', 'Task'], ['cluster_name', 'Cluster']] }),
    field({ name: 'order', label: 'Order', kind: 'select', value: order, options: [['desc', 'Newest first'], ['asc', 'Oldest first']] }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'apply-filters' }, 'Apply'),
      h('a', { href: '#/runs?status=any', class: 'button', id: 'all-runs' }, 'All runs')));
  const go = (extra = {}) => {
    const values = new FormData(form);
    const picked = values.getAll('status');
    values.delete('status');
    const status = picked.length === 0 || picked.length === ALL_STATUSES.length ? 'any' : picked.join(',');
    navigate('/runs', { status, ...Object.fromEntries(values), ...extra });
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go();
  });
  for (const select of form.querySelectorAll('select')) select.addEventListener('change', () => go());

  const results = h('div', { id: 'runs-results' });
  const updated = h('span', { class: 'muted', id: 'runs-updated', 'aria-live': 'off' });
  const show = (page) => {
    replace(results,
      runsTable(page.history || [], {
        id: 'runs-table',
        empty: statuses.length === ACTIVE_STATUSES.length && statuses.every((s) => ACTIVE_STATUSES.includes(s))
          ? 'No active runs. Tick STOPPED or choose “All runs” to see finished ones.'
          : 'No run matches these filters.',
      }),
      cursorPager({
        total: page.total || 0,
        lowerBound: Boolean(page.total_is_lower_bound),
        at,
        count: (page.history || []).length,
        next: page.next_token
          ? () => {
            trail.length = pageIndex + 1;
            go({ page: page.next_token, at: at + PAGE });
          }
          : null,
        previous: at > 0
          ? () => {
            const back = pageIndex - 1;
            const previousToken = back >= 0 && trail[back] !== undefined ? trail[back] : '';
            go(previousToken ? { page: previousToken, at: back * PAGE } : {});
          }
          : null,
      }));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  };
  show(data);
  const refresh = async () => {
    // Not while the page is hidden, nor under the user's focus (a pager button).
    if (document.visibilityState === 'visible' && !results.contains(document.activeElement)) {
      try {
        show(await get(url));
      } catch (e) {
        replace(results, problemBox(e, 'The runs could not be refreshed:'));
      }
    }
    scope.later(REFRESH_MS, refresh);
  };
  scope.later(REFRESH_MS, refresh);

  return h('section', {},
    h('div', { class: 'bar' }, h('h1', { class: 'grow' }, 'Runs'), updated),
    form,
    results);
}
