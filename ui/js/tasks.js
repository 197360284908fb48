// Task views: the list of definitions with filters and sort, one
// definition with its settings and run history, the create/edit/copy form
// and the launch form.

import { api, get, query, clusterNames } from './api.js';
import { h, envTable, table, pager, attrs, problemBox, confirmDialog, navigate, replace } from './dom.js';
import { field, text, number, envEditor, showProblems, clearProblems, busy } from './forms.js';
import { runsTable } from './runs.js';

const PAGE = 50;
const OWNER_KEY = 'flotilla.owner';
const enc = encodeURIComponent;

function rememberedOwner() {
  try {
    return localStorage.getItem(OWNER_KEY) || '';
  } catch {
    return '';
  }
}

function rememberOwner(owner) {
  try {
    localStorage.setItem(OWNER_KEY, owner);
  } catch {
    // Storage may be disabled; the owner is then asked for each time.
  }
}

export async function tasksView(scope) {
  const p = scope.params;
  const offset = Number(p.get('offset')) || 0;
  const filters = { alias: p.get('alias') || '', group_name: p.get('group_name') || '', image: p.get('image') || '' };
  const sortBy = p.get('sort_by') || 'alias';
  const order = p.get('order') || 'asc';
  const [data, groups] = await Promise.all([
    get(`api/v6/task${query({ ...filters, sort_by: sortBy, order, limit: PAGE, offset })}`),
    get('api/v6/groups').catch(() => ({ groups: [] })),
  ]);
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tasks' },
    field({ name: 'alias', label: 'Alias', value: filters.alias, placeholder: 'part of the alias' }),
    field({ name: 'group_name', label: 'Group', value: filters.group_name, list: 'group-names' }),
    h('datalist', { id: 'group-names' }, (groups.groups || []).map((g) => h('option', { value: g }))),
    field({ name: 'image', label: 'Image', value: filters.image, placeholder: 'part of the image' }),
    field({ name: 'sort_by', label: 'Sort by', kind: 'select', value: sortBy, options: [['alias', 'Alias'], ['group_name', 'Group'], ['image', 'Image'], ['memory', 'Memory']] }),
    field({ name: 'order', label: 'Order', kind: 'select', value: order, options: [['asc', 'Ascending'], ['desc', 'Descending']] }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'apply-filters' }, 'Apply'),
      h('a', { href: '#/tasks', class: 'button' }, 'Clear')));
  const go = (extra = {}) => navigate('/tasks', { ...Object.fromEntries(new FormData(form)), ...extra });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go();
  });
  for (const select of form.querySelectorAll('select')) select.addEventListener('change', () => go());
  const rows = data.definitions || [];
  return h('section', {},
    h('div', { class: 'bar' },
      h('h1', { class: 'grow' }, 'Tasks'),
      h('a', { href: '#/tasks/new', class: 'button primary', id: 'new-task' }, '+ New task')),
    form,
    table([
      ['Alias', (d) => h('a', { href: `#/tasks/${enc(d.definition_id)}` }, d.alias)],
      ['Group', (d) => d.group_name || '—'],
      ['Image', (d) => h('span', { class: 'mono' }, d.image)],
      ['Command', (d) => h('td', { class: 'cmd mono', title: d.command || '' }, d.command || '—')],
      ['Memory (MB)', (d) => h('td', { class: 'num' }, d.memory ?? '—')],
      ['CPU', (d) => h('td', { class: 'num' }, d.cpu ?? '—')],
      ['', (d) => h('a', { href: `#/tasks/${enc(d.definition_id)}/launch`, 'aria-label': `Launch ${d.alias}` }, 'Launch')],
    ], rows, {
      label: 'Tasks',
      id: 'tasks-table',
      empty: Object.values(filters).some(Boolean)
        ? 'No task matches these filters.'
        : 'No tasks yet. Define one with “New task”.',
    }),
    pager(data.total || 0, offset, PAGE, (o) => go({ offset: o })));
}


export async function taskView(scope, id) {
  const offset = Number(scope.params.get('offset')) || 0;
  const [def, runs] = await Promise.all([
    get(`api/v6/task/${enc(id)}`),
    get(`api/v6/task/${enc(id)}/history${query({ limit: 20, offset, sort_by: 'queued_at', order: 'desc' })}`),
  ]);
  const problems = h('div', { id: 'task-problems' });
  const remove = async () => {
    const ok = await confirmDialog({
      title: `Delete ${def.alias}?`,
      body: 'The task definition is deleted. Its runs stay in the run history.',
      confirm: 'Delete task',
    });
    if (!ok) return;
    try {
      await api('DELETE', `api/v6/task/${enc(id)}`);
      navigate('/tasks');
    } catch (e) {
      replace(problems, problemBox(e));
    }
  };
  return h('section', {},
    h('h1', {}, def.alias),
    h('p', { class: 'sub mono' }, def.definition_id),
    h('div', { class: 'bar' },
      h('a', { href: `#/tasks/${enc(id)}/launch`, class: 'button primary', id: 'launch-task' }, 'Launch'),
      h('a', { href: `#/schedules/new?alias=${enc(def.alias)}`, class: 'button', id: 'schedule-task' }, 'Schedule'),
      h('a', { href: `#/tasks/${enc(id)}/edit`, class: 'button', id: 'edit-task' }, 'Edit'),
      h('a', { href: `#/tasks/${enc(id)}/copy`, class: 'button', id: 'copy-task' }, 'Copy'),
      h('button', { type: 'button', class: 'danger', id: 'delete-task', onclick: remove }, 'Delete')),
    problems,
    attrs([
      ['Group', def.group_name],
      ['Image', h('span', { class: 'mono' }, def.image)],
      ['Memory (MB)', def.memory],
      ['CPU units', def.cpu],
      ['GPUs', def.gpu],
      ['Ephemeral storage (MB)', def.ephemeral_storage],
      ['Target cluster', def.target_cluster || 'the default cluster'],
      ['Tags', (def.tags || []).join(', ')],
      ['Command', def.command ? h('pre', { class: 'block' }, def.command) : '—', true],
      ['Environment', envTable(def.env), true],
    ], 'task-attrs'),
    h('h2', {}, 'Runs'),
    runsTable(runs.history || [], { id: 'task-runs', empty: 'No runs yet. Launch one.' }),
    pager(runs.total || 0, offset, 20, (o) => navigate(`/tasks/${enc(id)}`, { offset: o })));
}

export async function taskFormView(scope, { mode, id }) {
  const def = mode === 'create' ? {} : await get(`api/v6/task/${enc(id)}`);
  const [groups, clusters] = await Promise.all([
    get('api/v6/groups').catch(() => ({ groups: [] })),
    clusterNames().catch(() => []),
  ]);
  const title = { create: 'New task', edit: `Edit ${def.alias}`, copy: `Copy of ${def.alias}` }[mode];
  const env = envEditor(def.env, { hint: 'Every run of this task gets these; a launch can add to or override them.' });
  const summary = h('div', { id: 'form-problems', 'aria-live': 'assertive' });
  const form = h('form', { class: 'edit', id: 'task-form', novalidate: true },
    summary,
    h('div', { class: 'grid2' },
      field({ name: 'alias', label: 'Alias', required: true, value: mode === 'copy' ? `${def.alias}-copy` : def.alias, hint: 'A unique name; it appears in URLs, so no spaces or “/”.' }),
      field({ name: 'group_name', label: 'Group', value: def.group_name, list: 'form-groups' }),
      field({ name: 'image', label: 'Image', required: true, value: def.image, placeholder: 'python:3.12', hint: 'The container image (recorded locally; run on ECS/EKS).' })),
    h('datalist', { id: 'form-groups' }, (groups.groups || []).map((g) => h('option', { value: g }))),
    field({ name: 'command', label: 'Command', kind: 'textarea', code: true, value: def.command, hint: 'Run with bash -c. Env vars are available, e.g. echo "hello $USERNAME".' }),
    h('div', { class: 'grid2' },
      field({ name: 'memory', label: 'Memory (MB)', kind: 'number', min: 1, value: def.memory }),
      field({ name: 'cpu', label: 'CPU units', kind: 'number', min: 1, value: def.cpu, hint: '1024 units make one vCPU.' }),
      field({ name: 'gpu', label: 'GPUs', kind: 'number', min: 0, value: def.gpu }),
      field({ name: 'target_cluster', label: 'Target cluster', kind: 'select', value: def.target_cluster || '', options: [['', 'the default cluster'], ...clusters] }),
      field({ name: 'tags', label: 'Tags', value: (def.tags || []).join(', '), hint: 'Comma-separated.' })),
    env.el,
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary', id: 'save-task' }, mode === 'edit' ? 'Save changes' : 'Create task'),
      h('a', { href: mode === 'create' ? '#/tasks' : `#/tasks/${enc(id)}`, class: 'button' }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblems(form, summary);
    const tags = (text(form, 'tags') || '').split(',').map((t) => t.trim()).filter(Boolean);
    const body = {
      alias: text(form, 'alias'),
      group_name: text(form, 'group_name'),
      image: text(form, 'image'),
      command: text(form, 'command'),
      memory: number(form, 'memory'),
      cpu: number(form, 'cpu'),
      gpu: number(form, 'gpu'),
      target_cluster: text(form, 'target_cluster'),
      tags,
      env: env.read(),
    };
    await busy(form, async () => {
      try {
        const saved = mode === 'edit'
          ? await api('PUT', `api/v6/task/${enc(id)}`, body)
          : await api('POST', 'api/v6/task', body);
        navigate(`/tasks/${enc(saved.definition_id)}`);
      } catch (err) {
        showProblems(form, summary, err, mode === 'edit' ? 'The task was not saved:' : 'The task was not created:');
      }
    });
  });
  return h('section', {}, h('h1', {}, title), form);
}

const RESERVED = /^FLOTILLA_/;

export async function launchView(scope, id) {
  const from = scope.params.get('from');
  const [def, clusters, previous] = await Promise.all([
    get(`api/v6/task/${enc(id)}`),
    clusterNames(),
    from ? get(`api/v6/history/${enc(from)}`).catch(() => null) : null,
  ]);
  const chosen = scope.params.get('cluster') || (previous && previous.cluster) || def.target_cluster || (clusters.includes('default') ? 'default' : clusters[0]);
  const env = envEditor(previous ? previous.env.filter((v) => !RESERVED.test(v.name)) : [], {
    label: 'Environment variables for this run',
    hint: (def.env || []).length
      ? `The task sets ${def.env.map((v) => v.name).join(', ')}; a row with the same name overrides it.`
      : 'Added to the run’s environment.',
  });
  const summary = h('div', { id: 'form-problems', 'aria-live': 'assertive' });
  const overridden = previous && (previous.command !== def.command || previous.cpu !== def.cpu || previous.memory !== def.memory);
  const form = h('form', { class: 'edit', id: 'launch-form', novalidate: true },
    summary,
    h('div', { class: 'grid2' },
      field({ name: 'owner', label: 'Owner', required: true, value: rememberedOwner(), field: 'run_tags', autocomplete: 'username', hint: 'Who launches the run; remembered in this browser.' }),
      field({ name: 'cluster', label: 'Cluster', kind: 'select', value: chosen, options: clusters })),
    env.el,
    h('details', { open: overridden || null },
      h('summary', {}, 'Override the task’s command and resources'),
      field({ name: 'command', label: 'Command', kind: 'textarea', code: true, value: overridden && previous.command !== def.command ? previous.command : '', placeholder: def.command || '', hint: 'Leave empty to run the task’s command.' }),
      h('div', { class: 'grid2' },
        field({ name: 'cpu', label: 'CPU units', kind: 'number', min: 1, placeholder: def.cpu ?? '' }),
        field({ name: 'memory', label: 'Memory (MB)', kind: 'number', min: 1, placeholder: def.memory ?? '' }),
        field({ name: 'active_deadline_seconds', label: 'Timeout (seconds)', kind: 'number', min: 1, placeholder: '172800', hint: 'The run is stopped after this long.' }))),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary', id: 'launch-run' }, 'Launch run'),
      h('a', { href: `#/tasks/${enc(id)}`, class: 'button' }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblems(form, summary);
    const owner = text(form, 'owner') || '';
    const body = {
      cluster: text(form, 'cluster'),
      env: env.read(),
      run_tags: { owner_id: owner },
      command: text(form, 'command'),
      cpu: number(form, 'cpu'),
      memory: number(form, 'memory'),
      active_deadline_seconds: number(form, 'active_deadline_seconds'),
    };
    await busy(form, async () => {
      try {
        const run = await api('PUT', `api/v6/task/${enc(id)}/execute`, body);
        rememberOwner(owner);
        navigate(`/runs/${enc(run.run_id)}`);
      } catch (err) {
        showProblems(form, summary, err, 'The run was not launched:');
      }
    });
  });
  return h('section', {},
    h('h1', {}, `Launch ${def.alias}`),
    h('p', { class: 'sub' }, h('span', { class: 'mono' }, def.image), def.command ? [' · ', h('span', { class: 'mono' }, def.command)] : null),
    form);
}

export { rememberedOwner, rememberOwner };
