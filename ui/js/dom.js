// Building blocks of every view: an element builder that never parses HTML
// (text is always text), status badges, times and durations, tables, paging
// and the message boxes.

/** `h('a', {href: '#/runs'}, 'Runs')`: an element; children may be strings, nodes, arrays or null. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'for') {
      el.htmlFor = value;
    } else if (key === 'value' && (tag === 'input' || tag === 'textarea' || tag === 'select')) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected') {
      el[key] = Boolean(value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/** `svg('rect', {x: 0, width: 4})`: an SVG element, built as `h` builds HTML. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the content of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** The label a run's status shows: STOPPED becomes SUCCESS or FAILED by its exit code. */
export function statusLabel(run) {
  if (run.status === 'STOPPED') return run.exit_code === 0 ? 'SUCCESS' : 'FAILED';
  return run.status;
}

export function statusBadge(run) {
  const label = statusLabel(run);
  let title = run.status;
  if (run.status === 'STOPPED') {
    title = run.exit_code === undefined || run.exit_code === null
      ? 'STOPPED without an exit code'
      : `STOPPED with exit code ${run.exit_code}`;
  }
  return h('span', { class: `badge ${label}`, title, 'data-status': label }, label);
}

/** A "SLOW" badge for a run flagged as running longer than its job usually takes; null otherwise. */
export function runningLongBadge(run) {
  if (!run.running_long) return null;
  return h('span', { class: 'badge SLOW', title: run.running_long, 'data-status': 'SLOW' }, 'SLOW');
}

export const ACTIVE_STATUSES = ['QUEUED', 'PENDING', 'RUNNING', 'NEEDS_RETRY'];
export const ALL_STATUSES = [...ACTIVE_STATUSES, 'STOPPED'];

/** A time in the reader's zone, e.g. "2026-11-23 14:02:11". */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeEl(iso) {
  if (!iso) return '—';
  return h('time', { datetime: iso, title: iso }, fmtTime(iso));
}

/** "1h 02m 05s" between two times (the second defaults to now). */
export function duration(fromIso, toIso) {
  if (!fromIso) return '—';
  const from = new Date(fromIso).getTime();
  const to = toIso ? new Date(toIso).getTime() : Date.now();
  let s = Math.max(0, Math.round((to - from) / 1000));
  const hours = Math.floor(s / 3600);
  s -= hours * 3600;
  const minutes = Math.floor(s / 60);
  s -= minutes * 60;
  if (hours) return `${hours}h ${String(minutes).padStart(2, '0')}m ${String(s).padStart(2, '0')}s`;
  if (minutes) return `${minutes}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

/** A table; `columns` are `[header, row => cell]`; `empty` shows when there are no rows. */
export function table(columns, rows, { empty = 'Nothing here yet.', label, id } = {}) {
  if (!rows.length) return h('p', { class: 'empty', id }, empty);
  return h('div', { class: 'table-wrap', id },
    h('table', { 'aria-label': label },
      h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', { scope: 'col' }, title)))),
      h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([, cell]) => {
        const value = cell(row);
        return value instanceof Node && value.tagName === 'TD' ? value : h('td', {}, value ?? '—');
      }))))));
}

/** A table of environment variables, or a dash when there are none. */
export function envTable(env, label = 'Environment') {
  if (!env || !env.length) return '—';
  return table([
    ['Name', (v) => h('span', { class: 'mono' }, v.name)],
    ['Value', (v) => h('span', { class: 'mono' }, v.value)],
  ], env, { label });
}

/** Previous/next paging for a list envelope; `go(offset)` moves. Nothing for an empty list. */
export function pager(total, offset, limit, go) {
  if (total === 0 && offset === 0) return null;
  const first = total === 0 ? 0 : offset + 1;
  const last = Math.min(offset + limit, total);
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, '← Previous'),
    h('span', { class: 'muted', 'aria-live': 'polite' }, `${first}–${last} of ${total}`),
    h('button', { type: 'button', disabled: last >= total, onclick: () => go(offset + limit) }, 'Next →'));
}

/**
 * Previous/next paging by cursor: the page shows `count` rows from row
 * `at`; `next` (when rows follow) and `previous` (when not on the first
 * page) move. A total that is only a bound reads "at least".
 */
export function cursorPager({ total, lowerBound, at, count, next, previous }) {
  if (total === 0 && at === 0) return null;
  const first = count === 0 ? at : at + 1;
  const of = lowerBound ? `at least ${total}` : `${total}`;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', id: 'page-previous', disabled: !previous, onclick: previous || undefined }, '← Previous'),
    h('span', { class: 'muted', 'aria-live': 'polite', id: 'page-range' }, `${first}–${at + count} of ${of}`),
    h('button', { type: 'button', id: 'page-next', disabled: !next, onclick: next || undefined }, 'Next →'));
}

/** A box listing what went wrong. */
export function problemBox(error, intro) {
  const problems = error.problems || [error.message || String(error)];
  return h('div', { class: 'problem', role: 'alert' },
    intro ? h('strong', {}, intro) : null,
    problems.length === 1 && !intro
      ? problems[0]
      : h('ul', {}, problems.map((p) => h('li', {}, p))));
}

/** A definition list of `[term, value, wide?]`. */
export function attrs(pairs, id) {
  return h('dl', { class: 'attrs', id }, pairs.filter(Boolean).map(([term, value, wide]) =>
    h('div', { class: wide ? 'wide' : null, 'data-attr': term },
      h('dt', {}, term), h('dd', {}, value === undefined || value === null || value === '' ? '—' : value))));
}

/** A confirmation dialog; resolves true when confirmed. */
export function confirmDialog({ title, body, confirm, cancel = 'Cancel', danger = true }) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { 'aria-labelledby': 'dialog-title', id: 'confirm-dialog' },
      h('h2', { id: 'dialog-title' }, title),
      h('p', {}, body),
      h('form', { method: 'dialog', class: 'form-actions' },
        h('button', { value: 'cancel', id: 'dialog-cancel', autofocus: true }, cancel),
        h('button', { value: 'confirm', class: danger ? 'danger' : 'primary', id: 'dialog-confirm' }, confirm)));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Pieces of a `#/path?query` route. */
export function currentRoute() {
  const raw = location.hash.replace(/^#/, '') || '/tasks';
  const [path, search = ''] = raw.split('?');
  return { path, params: new URLSearchParams(search) };
}

/** Moves to `path` with `params` (an object or URLSearchParams), dropping empty values. */
export function navigate(path, params) {
  const q = new URLSearchParams();
  if (params) {
    const entries = params instanceof URLSearchParams ? params.entries() : Object.entries(params);
    for (const [k, v] of entries) {
      if (v !== undefined && v !== null && v !== '') q.append(k, v);
    }
  }
  const s = q.toString();
  location.hash = s ? `${path}?${s}` : path;
}
