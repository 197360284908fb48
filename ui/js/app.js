// The page's entry point: maps the URL fragment to a view, renders it into
// <main>, and gives each view a scope whose timers stop when the user moves
// on. A view that fails shows what went wrong, never a blank page.

import { h, replace, currentRoute, problemBox } from './dom.js';
import { token, setToken } from './api.js';
import { signInConfig, beginSignIn, completeSignIn } from './signin.js';
import { tasksView, taskView, taskFormView, launchView } from './tasks.js';
import { runsView } from './runs.js';
import { runView } from './run.js';
import { templatesView, templateView } from './templates.js';
import { clustersView } from './clusters.js';
import { insightsView } from './insights.js';
import { schedulesView, scheduleFormView } from './schedules.js';

const routes = [
  [/^\/tasks$/, 'tasks', tasksView],
  [/^\/tasks\/new$/, 'tasks', (scope) => taskFormView(scope, { mode: 'create' })],
  [/^\/tasks\/([^/]+)\/edit$/, 'tasks', (scope, id) => taskFormView(scope, { mode: 'edit', id })],
  [/^\/tasks\/([^/]+)\/copy$/, 'tasks', (scope, id) => taskFormView(scope, { mode: 'copy', id })],
  [/^\/tasks\/([^/]+)\/launch$/, 'tasks', launchView],
  [/^\/tasks\/([^/]+)$/, 'tasks', taskView],
  [/^\/runs$/, 'runs', runsView],
  [/^\/runs\/([^/]+)$/, 'runs', runView],
  [/^\/templates$/, 'templates', templatesView],
  [/^\/templates\/([^/]+)$/, 'templates', templateView],
  [/^\/clusters$/, 'clusters', clustersView],
  [/^\/insights$/, 'insights', insightsView],
  [/^\/schedules$/, 'schedules', schedulesView],
  [/^\/schedules\/new$/, 'schedules', scheduleFormView],
];

/** What a view may ask of the page while it is shown. */
class Scope {
  constructor(params) {
    this.params = params;
    this.alive = true;
    this.timers = new Set();
  }

  /** Calls `fn` after `ms` unless the view has been left. */
  later(ms, fn) {
    if (!this.alive) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.alive) fn();
    }, ms);
    this.timers.add(t);
  }

  close() {
    this.alive = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

const main = () => document.getElementById('main');
let scope = null;
let lastPath = null;

async function render() {
  const { path, params } = currentRoute();
  if (path === '/' || path === '') {
    location.replace('#/tasks');
    return;
  }
  const focusedId = document.activeElement && document.activeElement.id;
  const samePage = path === lastPath;
  lastPath = path;
  if (scope) scope.close();
  scope = new Scope(params);
  const mine = scope;
  const match = routes.find(([re]) => re.test(path));
  for (const link of document.querySelectorAll('header nav a')) {
    if (match && link.dataset.section === match[1]) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const host = main();
  if (!match) {
    replace(host, h('h1', {}, 'Not found'), h('p', {}, `There is no page at #${path}. `, h('a', { href: '#/tasks' }, 'Go to the tasks.')));
    return;
  }
  const [re, , view] = match;
  const args = re.exec(path).slice(1).map(decodeURIComponent);
  try {
    const content = await view(mine, ...args);
    if (!mine.alive) return;
    replace(host, content);
    const heading = host.querySelector('h1');
    document.title = heading ? `${heading.textContent.trim()} · Flotilla` : 'Flotilla';
    const again = samePage && focusedId && document.getElementById(focusedId);
    if (again) again.focus();
    else if (!samePage) host.focus({ preventScroll: true });
    if (!samePage) window.scrollTo(0, 0);
  } catch (e) {
    if (!mine.alive) return;
    if (e.status === 401) {
      const content = await signIn(e);
      if (!mine.alive) return;
      replace(host, content);
      const first = document.getElementById('token') || document.getElementById('sign-in-oauth');
      if (first) first.focus();
      return;
    }
    replace(host, h('h1', {}, e.status === 403 ? 'Not allowed' : 'Something went wrong'),
      problemBox(e),
      h('p', {}, h('button', { type: 'button', onclick: render }, 'Try again'), ' or ', h('a', { href: '#/tasks' }, 'go to the tasks'), '.'));
    host.focus({ preventScroll: true });
  }
}

/** Why the last sign-in did not finish, shown on the sign-in page. */
let signInProblem = null;

/** What a call that needs a credential shows: how this server signs in. */
async function signIn(error) {
  const config = await signInConfig();
  const problem = signInProblem;
  signInProblem = null;
  const said = h('p', { class: 'muted' }, error.message);
  if (config.sign_in === 'iam') {
    return h('div', {},
      h('h1', {}, 'Sign in'),
      h('p', {}, 'This API takes only requests signed with AWS credentials (SigV4), which a browser cannot make. Deploy the stack with ApiAuth=JWT (or CreateUserPool=true) to use this page; the CLI and SDKs work as they are.'),
      said);
  }
  if (config.sign_in === 'oauth' && config.oauth) {
    if (token()) setToken('');
    let issuer = config.oauth.issuer;
    try {
      issuer = new URL(config.oauth.issuer).host;
    } catch {
      // keep the issuer as given
    }
    const status = h('p', { id: 'sign-in-status', role: 'status' });
    const go = async () => {
      status.textContent = 'Going to the sign-in page…';
      try {
        await beginSignIn(config.oauth);
      } catch (e) {
        status.textContent = e.message;
      }
    };
    return h('div', {},
      h('h1', {}, 'Sign in'),
      problem ? h('p', { class: 'problem', id: 'sign-in-problem' }, problem.message) : null,
      h('p', {}, `This service asks who you are: sign in at ${issuer}, and you come back here.`),
      h('div', { class: 'form-actions' }, h('button', { type: 'button', class: 'primary', id: 'sign-in-oauth', onclick: go }, `Sign in at ${issuer}`)),
      status);
  }
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const submit = (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    render();
  };
  return h('div', {},
    h('h1', {}, 'Sign in'),
    h('p', {}, token()
      ? 'This server did not take the token this browser sent. Paste a token from its token file:'
      : 'This server asks who you are. Paste your token from its token file (whoever runs the server can give you one):'),
    said,
    h('form', { id: 'sign-in', onsubmit: submit },
      h('label', { for: 'token' }, 'Token'),
      input,
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', id: 'sign-in-submit' }, 'Sign in'))));
}

window.addEventListener('hashchange', render);
// Module scripts run once the document is parsed. A page the sign-in service
// sent back here finishes that sign-in first.
completeSignIn()
  .catch((e) => {
    signInProblem = e;
  })
  .finally(render);
