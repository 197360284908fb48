// Template views: the list (the newest version of each, or every version)
// and one template with a launch form generated from its JSON Schema, a
// preview of the rendered command (a dry run) and its runs.

import { api, get, query, clusterNames } from './api.js';
import { h, table, attrs, navigate, replace, pager } from './dom.js';
import { field, text, envEditor, showProblems, clearProblems, busy } from './forms.js';
import { runsTable } from './runs.js';
import { rememberedOwner, rememberOwner } from './tasks.js';

const enc = encodeURIComponent;

export async function templatesView(scope) {
  const all = scope.params.get('all') === '1';
  const data = await get(`api/v7/template${query({ latest_only: all ? 'false' : 'true', limit: 1000 })}`);
  const toggle = h('input', { type: 'checkbox', id: 'all-versions', checked: all, onchange: (e) => navigate('/templates', { all: e.target.checked ? '1' : '' }) });
  return h('section', {},
    h('h1', {}, 'Templates'),
    h('p', { class: 'muted' }, 'A template is a job whose command is filled in from a payload its JSON Schema checks. Create them with POST /api/v7/template.'),
    h('p', {}, h('label', {}, toggle, ' Show every version')),
    table([
      ['Name', (t) => h('a', { href: `#/templates/${enc(t.template_id)}` }, t.template_name)],
      ['Version', (t) => h('td', { class: 'num' }, t.version)],
      ['Image', (t) => h('span', { class: 'mono' }, t.image)],
      ['Memory (MB)', (t) => h('td', { class: 'num' }, t.memory)],
      ['CPU', (t) => h('td', { class: 'num' }, t.cpu)],
      ['Parameters', (t) => Object.keys((t.schema && t.schema.properties) || {}).join(', ') || '—'],
    ], data.templates || [], { id: 'templates-table', label: 'Templates', empty: 'No templates yet.' }));
}

function typeOf(prop) {
  const t = Array.isArray(prop.type) ? prop.type.find((x) => x !== 'null') : prop.type;
  if (prop.enum) return 'enum';
  return t || (prop.properties ? 'object' : 'json');
}

/**
 * Controls for the properties of a JSON Schema, prefilled with `defaults`.
 * `read()` gives `{payload, problems}`: problems for text that is not JSON.
 */
export function schemaForm(schema, defaults) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const names = Object.keys(props);
  const controls = [];
  if (!names.length) {
    const f = field({ name: 'payload', label: 'Payload (JSON)', kind: 'textarea', code: true, field: 'template_payload', value: JSON.stringify(defaults || {}, null, 2) });
    controls.push(['*', 'json', f]);
  }
  for (const name of names) {
    const prop = props[name] || {};
    const kind = typeOf(prop);
    const value = defaults && defaults[name] !== undefined ? defaults[name] : prop.default;
    const hints = [prop.description];
    if (prop.minimum !== undefined) hints.push(`at least ${prop.minimum}`);
    if (prop.maximum !== undefined) hints.push(`at most ${prop.maximum}`);
    const common = {
      name: `p-${name}`,
      label: prop.title || name,
      required: required.has(name),
      hint: hints.filter((x) => x !== undefined && x !== '').join('; ') || null,
      field: `template_payload/${name}`,
    };
    let f;
    if (kind === 'enum') {
      const options = prop.enum.map((v) => [JSON.stringify(v), String(v)]);
      f = field({ ...common, kind: 'select', options: required.has(name) ? options : [['', '—'], ...options], value: value === undefined ? '' : JSON.stringify(value) });
    } else if (kind === 'boolean') {
      f = field({ ...common, kind: 'checkbox', value: Boolean(value) });
    } else if (kind === 'integer' || kind === 'number') {
      f = field({ ...common, kind: 'number', value, min: prop.minimum, step: kind === 'integer' ? 1 : 'any' });
    } else if (kind === 'string') {
      f = field({ ...common, value });
    } else {
      f = field({ ...common, kind: 'textarea', code: true, value: value === undefined ? '' : JSON.stringify(value, null, 2), hint: [common.hint, 'JSON'].filter(Boolean).join('; ') });
    }
    controls.push([name, kind, f]);
  }
  const read = () => {
    const payload = {};
    const problems = [];
    for (const [name, kind, f] of controls) {
      const el = f.control;
      if (kind === 'boolean') {
        payload[name] = el.checked;
        continue;
      }
      const raw = el.value.trim();
      if (raw === '') continue;
      if (kind === 'enum') {
        payload[name] = JSON.parse(raw);
      } else if (kind === 'integer' || kind === 'number') {
        const n = Number(raw);
        payload[name] = Number.isFinite(n) ? n : raw;
      } else if (kind === 'string') {
        payload[name] = el.value;
      } else {
        try {
          const parsed = JSON.parse(raw);
          if (name === '*') Object.assign(payload, parsed);
          else payload[name] = parsed;
        } catch (e) {
          problems.push(`${name === '*' ? 'template_payload' : `template_payload/${name}`}: not valid JSON (${e.message})`);
        }
      }
    }
    return { payload, problems };
  };
  return { el: h('fieldset', { class: 'payload' }, h('legend', {}, 'Parameters'), controls.map(([, , f]) => f)), read };
}

export async function templateView(scope, id) {
  const offset = Number(scope.params.get('offset')) || 0;
  const [tpl, clusters, runs] = await Promise.all([
    get(`api/v7/template/${enc(id)}`),
    clusterNames(),
    get(`api/v7/template/${enc(id)}/history${query({ limit: 20, offset, sort_by: 'queued_at', order: 'desc' })}`),
  ]);
  const payload = schemaForm(tpl.schema, tpl.defaults);
  const env = envEditor([], { label: 'Environment variables for this run' });
  const summary = h('div', { id: 'form-problems', 'aria-live': 'assertive' });
  const preview = h('div', { id: 'template-preview' });
  const form = h('form', { class: 'edit', id: 'template-launch', novalidate: true },
    summary,
    h('div', { class: 'grid2' },
      field({ name: 'owner', label: 'Owner', required: true, value: rememberedOwner(), field: 'owner_id', autocomplete: 'username', hint: 'Remembered in this browser.' }),
      field({ name: 'cluster', label: 'Cluster', kind: 'select', field: 'cluster', value: clusters.includes('default') ? 'default' : clusters[0], options: clusters })),
    payload.el,
    env.el,
    preview,
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary', id: 'launch-template', value: 'launch' }, 'Launch run'),
      h('button', { type: 'submit', id: 'preview-template', value: 'preview' }, 'Preview the command')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const dryRun = e.submitter && e.submitter.value === 'preview';
    clearProblems(form, summary);
    replace(preview);
    const { payload: values, problems } = payload.read();
    if (problems.length) {
      showProblems(form, summary, { problems }, 'Fix these first:');
      return;
    }
    const owner = text(form, 'owner') || '';
    const body = { owner_id: owner, cluster_name: text(form, 'cluster'), template_payload: values, env: env.read(), dry_run: dryRun };
    await busy(form, async () => {
      try {
        const run = await api('PUT', `api/v7/template/${enc(id)}/execute`, body);
        rememberOwner(owner);
        if (dryRun) {
          replace(preview, h('div', { class: 'notice', role: 'status' }, h('strong', {}, 'The command would be:'), h('pre', { class: 'block', id: 'preview-command' }, run.command || '')));
        } else {
          navigate(`/runs/${enc(run.run_id)}`);
        }
      } catch (err) {
        showProblems(form, summary, err, 'The run was not launched:');
      }
    });
  });
  return h('section', {},
    h('h1', {}, tpl.template_name, h('span', { class: 'badge' }, `v${tpl.version}`)),
    h('p', { class: 'sub mono' }, tpl.template_id),
    h('div', { class: 'bar' },
      h('a', { href: `#/schedules/new?template=${enc(tpl.template_name)}&version=${tpl.version}&id=${enc(tpl.template_id)}`, class: 'button', id: 'schedule-template' }, 'Schedule')),
    attrs([
      ['Image', h('span', { class: 'mono' }, tpl.image)],
      ['Memory (MB)', tpl.memory],
      ['CPU units', tpl.cpu],
      ['Tags', (tpl.tags || []).join(', ')],
      ['Command template', h('pre', { class: 'block' }, tpl.command_template), true],
      ['Schema', h('details', {}, h('summary', {}, 'JSON Schema of the payload'), h('pre', { class: 'block' }, JSON.stringify(tpl.schema, null, 2))), true],
    ]),
    h('h2', {}, 'Launch'),
    form,
    h('h2', {}, 'Runs'),
    runsTable(runs.history || [], { id: 'template-runs', empty: 'No runs of this version yet.' }),
    pager(runs.total || 0, offset, 20, (o) => navigate(`/templates/${enc(id)}`, { offset: o })));
}
