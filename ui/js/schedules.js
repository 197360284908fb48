// Schedules: every schedule with when it fires next, its newest run, pause,
// resume and delete; and the form that schedules a task or a template
// version (cron expression, time zone, what to do about missed fires, the
// owner, environment and, for a template, its parameters).

import { api, get } from './api.js';
import { h, table, timeEl, navigate, replace, problemBox, confirmDialog } from './dom.js';
import { field, text, envEditor, clearProblems, showProblems, busy } from './forms.js';
import { rememberedOwner, rememberOwner } from './tasks.js';

const enc = encodeURIComponent;

/** Time zones to pick from: the browser's list, else a few common ones. */
function timeZones() {
  try {
    if (typeof Intl.supportedValuesOf === 'function') return ['UTC', ...Intl.supportedValuesOf('timeZone')];
  } catch (e) {
    // Fall through to the short list.
  }
  return ['UTC', 'Europe/London', 'Europe/Paris', 'America/New_York', 'America/Los_Angeles', 'Asia/Tokyo'];
}

function localZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch (e) {
    return 'UTC';
  }
}

function target(s) {
  const t = s.target || {};
  return t.kind === 'template'
    ? h('span', {}, 'template ', h('span', { class: 'mono' }, `${t.template_name} v${t.template_version}`))
    : h('a', { href: `#/tasks/${enc(t.definition_id)}` }, t.alias);
}

/** How often the list is read again while shown: next fire times move on. */
const REFRESH_MS = 5000;

export async function schedulesView(scope) {
  const data = await get('api/v6/schedules');
  const problems = h('div', { id: 'schedule-problems' });
  const results = h('div', { id: 'schedules-results' });
  const act = async (s, verb) => {
    try {
      await api('POST', `api/v6/schedules/${enc(s.schedule_id)}/${verb}`);
      navigate('/schedules', { updated: Date.now() });
    } catch (err) {
      replace(problems, problemBox(err, `The schedule was not ${verb}d:`));
    }
  };
  const remove = async (s) => {
    const ok = await confirmDialog({
      title: `Delete schedule ${s.name}?`,
      body: 'It fires no more. Its runs stay.',
      confirm: 'Delete schedule',
    });
    if (!ok) return;
    try {
      await api('DELETE', `api/v6/schedules/${enc(s.schedule_id)}`);
      navigate('/schedules', { updated: Date.now() });
    } catch (err) {
      replace(problems, problemBox(err, 'The schedule was not deleted:'));
    }
  };
  const render = (schedules) => replace(results, table([
      ['Name', (s) => h('span', { 'data-schedule-id': s.schedule_id }, s.name)],
      ['Launches', target],
      ['When', (s) => h('span', {}, h('span', { class: 'mono' }, s.cron), ` (${s.time_zone})`)],
      ['Next', (s) => (s.next_fires && s.next_fires.length ? timeEl(s.next_fires[0]) : (s.enabled ? '—' : 'paused'))],
      ['Last run', (s) => (s.last_run_id ? h('a', { href: `#/runs/${enc(s.last_run_id)}`, class: 'mono' }, timeEl(s.last_fire_at)) : (s.last_error ? h('span', { class: 'problem-text', title: s.last_error }, s.last_error) : '—'))],
      ['Fires', (s) => h('td', { class: 'num' }, s.fires)],
      ['', (s) => h('span', { class: 'bar' },
        s.enabled
          ? h('button', { type: 'button', class: 'pause-schedule', onclick: () => act(s, 'pause') }, 'Pause')
          : h('button', { type: 'button', class: 'resume-schedule', onclick: () => act(s, 'resume') }, 'Resume'),
        h('button', { type: 'button', class: 'danger delete-schedule', onclick: () => remove(s) }, 'Delete'))],
    ], schedules, { id: 'schedules-table', label: 'Schedules', empty: 'No schedules yet.' }));
  render(data.schedules || []);
  const refresh = async () => {
    try {
      const fresh = await get('api/v6/schedules');
      // A button the user is on keeps its focus: redraw only when idle.
      if (!results.contains(document.activeElement)) render(fresh.schedules || []);
    } catch (err) {
      replace(problems, problemBox(err, 'The schedules could not be read again:'));
    }
    scope.later(REFRESH_MS, refresh);
  };
  scope.later(REFRESH_MS, refresh);
  return h('section', {},
    h('h1', {}, 'Schedules'),
    h('p', { class: 'muted' }, 'A schedule launches a task or a template version at the times of a cron expression in a time zone. Schedule one from its task or template page. The list is read again every 5 seconds.'),
    problems,
    results);
}

/** `#/schedules/new?alias=…` or `?template=<name>&version=<n>&id=<template id>`. */
export async function scheduleFormView(scope) {
  const alias = scope.params.get('alias');
  const templateName = scope.params.get('template');
  const version = scope.params.get('version');
  const templateId = scope.params.get('id');
  const tpl = templateId ? await get(`api/v7/template/${enc(templateId)}`).catch(() => null) : null;
  const env = envEditor([], { label: 'Environment variables of each run' });
  const summary = h('div', { id: 'form-problems', 'aria-live': 'assertive' });
  const zones = h('datalist', { id: 'time-zones' }, timeZones().map((z) => h('option', { value: z })));
  const form = h('form', { class: 'edit', id: 'schedule-form', novalidate: true },
    summary,
    zones,
    h('div', { class: 'grid2' },
      field({ name: 'name', label: 'Name', value: alias || templateName || '', hint: 'To know it by.' }),
      field({ name: 'owner', label: 'Owner', required: true, value: rememberedOwner(), field: 'launch', autocomplete: 'username', hint: 'Whose runs they are, and who may change the schedule.' })),
    h('div', { class: 'grid2' },
      field({ name: 'cron', label: 'Cron expression', required: true, value: '0 2 * * *', code: true, hint: 'minute hour day month weekday, with an optional seconds field first: "0 2 * * *" is 02:00 every day, "*/15 * * * *" every 15 minutes, @daily and @hourly work too.' }),
      field({ name: 'time_zone', label: 'Time zone', required: true, value: localZone(), list: 'time-zones', hint: 'The zone the cron expression is read in; daylight saving is followed.' })),
    field({ name: 'catch_up', label: 'After fires missed while the service was down', kind: 'select', value: 'latest', options: [['latest', 'launch one run, for the newest missed time'], ['none', 'launch nothing']] }),
    templateName
      ? field({ name: 'payload', label: 'Template parameters (JSON)', kind: 'textarea', code: true, field: 'launch', value: JSON.stringify((tpl && tpl.defaults) || {}, null, 2), hint: `Checked against template ${templateName}'s schema.` })
      : null,
    env.el,
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary', id: 'save-schedule' }, 'Schedule'),
      h('a', { href: templateName ? '#/templates' : `#/tasks`, class: 'button' }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblems(form, summary);
    const owner = text(form, 'owner') || '';
    const launch = { run_tags: { owner_id: owner }, env: env.read() };
    if (templateName) {
      try {
        launch.template_payload = JSON.parse(text(form, 'payload') || '{}');
      } catch (err) {
        showProblems(form, summary, { problems: [`launch: the template parameters are not valid JSON (${err.message})`] }, 'Fix these first:');
        return;
      }
    }
    const body = {
      name: text(form, 'name'),
      cron: text(form, 'cron'),
      time_zone: text(form, 'time_zone'),
      catch_up: text(form, 'catch_up'),
      launch,
      ...(templateName ? { template_name: templateName, template_version: version ? Number(version) : undefined } : { alias }),
    };
    await busy(form, async () => {
      try {
        await api('POST', 'api/v6/schedules', body);
        rememberOwner(owner);
        navigate('/schedules');
      } catch (err) {
        showProblems(form, summary, err, 'The schedule was not saved:');
      }
    });
  });
  return h('section', {},
    h('h1', {}, templateName ? `Schedule template ${templateName}` : `Schedule ${alias}`),
    form);
}
