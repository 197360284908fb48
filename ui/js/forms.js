// Form parts shared by the task, launch and template forms: labelled fields
// with a hint and an error slot, the env rows editor, reading values back,
// and putting the API's problems beside the fields they name.

import { h, problemBox, replace } from './dom.js';

let counter = 0;
const nextId = (name) => `f-${String(name).replace(/[^A-Za-z0-9_-]/g, '-')}-${++counter}`;

/**
 * A labelled control. `kind` is text, number, textarea, select, checkbox or
 * datetime-local; `field` is the API field the problems name (defaults to `name`).
 */
export function field({ name, label, kind = 'text', value, required, hint, options, placeholder, field: apiField, min, step, code, list, autocomplete }) {
  const id = nextId(name);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const describedBy = [hintId, errorId].filter(Boolean).join(' ');
  const common = { id, name, 'data-field': apiField || name, 'aria-describedby': describedBy, required, placeholder };
  let control;
  if (kind === 'textarea') {
    control = h('textarea', { ...common, class: code ? 'code' : null, spellcheck: code ? 'false' : null, value: value ?? '' });
  } else if (kind === 'select') {
    control = h('select', common, (options || []).map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: String(v) === String(value ?? '') }, text);
    }));
    if (value !== undefined && value !== null) control.value = value;
  } else if (kind === 'checkbox') {
    control = h('input', { ...common, type: 'checkbox', checked: Boolean(value) });
  } else {
    control = h('input', {
      ...common,
      type: kind,
      value: value ?? '',
      min,
      step,
      list,
      autocomplete: autocomplete || 'off',
      inputmode: kind === 'number' ? 'numeric' : null,
    });
  }
  const labelEl = h('label', { for: id }, label, required ? h('span', { class: 'req' }, ' (required)') : null);
  const wrap = h('div', { class: kind === 'checkbox' ? 'field check' : 'field' },
    kind === 'checkbox' ? [control, labelEl] : [labelEl, control],
    hint ? h('span', { class: 'hint', id: hintId }, hint) : null,
    h('span', { class: 'field-error', id: errorId, hidden: true }));
  wrap.control = control;
  return wrap;
}

/** The trimmed text of a control, or undefined when empty. */
export function text(form, name) {
  const el = form.elements.namedItem(name);
  if (!el) return undefined;
  const v = el.value.trim();
  return v === '' ? undefined : v;
}

/** A number from a control, undefined when empty; text that is not a number goes as is, for the API to name. */
export function number(form, name) {
  const v = text(form, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : v;
}

/** The env rows editor: `{el, read()}`; `read` gives `[{name, value}]` without blank rows. */
export function envEditor(initial, { label = 'Environment variables', hint } = {}) {
  const rows = h('div', { class: 'env-rows' });
  const errorId = `${nextId('env')}-error`;
  let n = 0;
  const addRow = (name = '', value = '') => {
    n += 1;
    const row = h('div', { class: 'env-row' },
      h('input', { type: 'text', class: 'env-name mono', value: name, 'aria-label': `Variable ${n} name`, placeholder: 'NAME', autocomplete: 'off', spellcheck: 'false' }),
      h('input', { type: 'text', class: 'env-value mono', value, 'aria-label': `Variable ${n} value`, placeholder: 'value', autocomplete: 'off', spellcheck: 'false' }),
      h('button', { type: 'button', class: 'link', 'aria-label': `Remove variable ${n}`, onclick: () => { row.remove(); } }, 'Remove'));
    rows.append(row);
    return row;
  };
  for (const v of initial || []) addRow(v.name, v.value);
  const el = h('fieldset', { class: 'env', 'data-field': 'env', 'aria-describedby': errorId },
    h('legend', {}, label),
    hint ? h('p', { class: 'hint muted' }, hint) : null,
    rows,
    h('button', { type: 'button', class: 'add-env', onclick: () => addRow().querySelector('input').focus() }, '+ Add variable'),
    h('span', { class: 'field-error', id: errorId, hidden: true }));
  const read = () => [...rows.querySelectorAll('.env-row')]
    .map((row) => ({ name: row.querySelector('.env-name').value.trim(), value: row.querySelector('.env-value').value }))
    .filter((v) => v.name !== '' || v.value !== '');
  return { el, read, addRow };
}

/** The API field a problem is about: its first word, or the path of "invalid value for \"x\"". */
export function fieldOf(problem) {
  const quoted = /^invalid value for "([^"]+)"/.exec(problem);
  if (quoted) return quoted[1];
  const word = /^([A-Za-z_][\w]*(?:\/[\w./-]+)?)[\s:]/.exec(problem);
  return word ? word[1] : null;
}

function findField(form, key, problem) {
  const bracketed = [...problem.matchAll(/\[(\w+)\]/g)].map((m) => m[1]);
  const candidates = key ? [key, key.split(/[.[]/)[0], key.split('/').slice(0, 2).join('/'), ...bracketed] : bracketed;
  for (const c of candidates) {
    const el = form.querySelector(`[data-field="${CSS.escape(c)}"]`);
    if (el) return el;
  }
  return null;
}

/** Clears what `showProblems` put on the form. */
export function clearProblems(form, summary) {
  if (summary) replace(summary);
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) {
    el.textContent = '';
    el.hidden = true;
  }
}

/**
 * Shows a refused request: every problem in the summary box, and each beside
 * the field it names; focus moves to the first field in error.
 */
export function showProblems(form, summary, error, intro = 'The request was refused:') {
  clearProblems(form, summary);
  const problems = error.problems || [error.message];
  summary.append(problemBox({ problems }, problems.length > 1 ? intro : null));
  let first = null;
  for (const problem of problems) {
    const el = findField(form, fieldOf(problem), problem);
    if (!el) continue;
    el.setAttribute('aria-invalid', 'true');
    const slotId = (el.getAttribute('aria-describedby') || '').split(' ').find((i) => i.endsWith('-error'));
    const slot = slotId ? document.getElementById(slotId) : null;
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent} ${problem}` : problem;
      slot.hidden = false;
    }
    first = first || el;
  }
  const target = first && (first.matches('input, select, textarea') ? first : first.querySelector('input, select, textarea'));
  if (target) target.focus();
  else summary.scrollIntoView({ block: 'nearest' });
}

/** Disables a form's submit button while `work` runs. */
export async function busy(form, work) {
  const buttons = [...form.querySelectorAll('button[type="submit"], button:not([type])')];
  for (const b of buttons) b.disabled = true;
  try {
    return await work();
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}
