// One run: its attributes, a log that follows the run's current attempt while
// it runs (paging with last_seen; earlier attempts' logs are linked), search in
// the log, stop with confirmation, the event timeline and the cloud console links. Polling stops once the run has
// stopped and its log is drained, and whenever the user leaves the view.

import { api, get, query } from './api.js';
import { h, attrs, statusBadge, runningLongBadge, timeEl, duration, replace, problemBox, confirmDialog, envTable } from './dom.js';

const POLL_MS = 1000;
/** Log pages read per poll at most, so a huge log cannot stall the page. */
const PAGES_PER_POLL = 20;
/** The most log text kept in the page; older text is dropped (the raw log has it all). */
const MAX_LOG_CHARS = 4 * 1024 * 1024;
/** Polls after STOPPED that still read the log, for log shipping that lags (CloudWatch). */
const DRAIN_POLLS = 3;
const enc = encodeURIComponent;

const EVENT_NAMES = {
  RunQueued: 'Queued',
  RunSubmitted: 'Launched',
  RunLaunchDeferred: 'Waiting to launch',
  RunPreparing: 'Preparing',
  RunStarted: 'Started',
  RunStopRequested: 'Stop requested',
  RunStopped: 'Stopped',
  RunNeedsRetry: 'Needs retry',
  RunRequeued: 'Queued again',
  RunReenqueued: 'Ticket sent again',
  RunUsageRecorded: 'Usage',
};

const fmtNumber = (n) => Number(n).toLocaleString('en-US');

/** What a run's attempts used against what it asked for: "asked 8,192 MB,
 * peaked at 610 MB · 12.3 CPU seconds in 40.1 s". */
function usageText(run) {
  const u = run.usage;
  const parts = [];
  if (u.peak_memory_mb !== undefined) {
    parts.push(run.memory ? `asked ${fmtNumber(run.memory)} MB, peaked at ${fmtNumber(u.peak_memory_mb)} MB` : `peaked at ${fmtNumber(u.peak_memory_mb)} MB`);
  }
  const cpu = u.basis === 'measured' ? `${u.cpu_seconds.toFixed(2)} CPU seconds` : `${u.cpu_seconds.toFixed(1)} CPU seconds reserved`;
  parts.push(`${cpu} in ${u.duration_s.toFixed(1)} s`);
  return h('span', { id: 'run-usage' }, parts.join(' · '));
}

/** The ECS console page of a task, from its ARN; null for other engines. */
function consoleLink(taskId) {
  const m = /^arn:aws[\w-]*:ecs:([\w-]+):\d+:task\/([^/]+)\/([\w-]+)$/.exec(taskId || '');
  if (!m) return null;
  const [, region, cluster, task] = m;
  return `https://${region}.console.aws.amazon.com/ecs/v2/clusters/${enc(cluster)}/tasks/${enc(task)}/configuration?region=${region}`;
}


export async function runView(scope, runId) {
  const runPath = `api/v6/history/${enc(runId)}`;
  let run = await get(runPath);

  const heading = h('h1', {});
  const actions = h('div', { class: 'bar' });
  const notices = h('div', { id: 'run-problems' });
  const attrsHost = h('div', {});
  const detailsHost = h('div', {});
  const linksHost = h('span', { class: 'bar', id: 'run-links' });
  const timelineHost = h('div', { id: 'run-timeline' });
  const durationEl = h('span', { id: 'run-duration' });
  // Why a run that has not started waits, where it stands in its cluster's
  // queue and when it may start; refreshed from every status poll.
  const waitingEl = h('p', { class: 'notice waiting', id: 'run-waiting', role: 'status', hidden: true });
  const showWaiting = (s) => {
    if (!s.waiting_reason) {
      waitingEl.hidden = true;
      waitingEl.textContent = '';
      return;
    }
    const place = s.queue_position ? ` · position ${s.queue_position} in cluster ${run.cluster}'s queue` : '';
    const since = s.waiting_since ? ` · since ${new Date(s.waiting_since).toLocaleTimeString()}` : '';
    const eta = s.estimated_start ? ` · expected to start around ${new Date(s.estimated_start).toLocaleTimeString()}` : '';
    waitingEl.textContent = `Waiting: ${s.waiting_reason}${place}${eta}${since}`;
    waitingEl.hidden = false;
  };

  // ---- the log ----------------------------------------------------------
  const logPre = h('pre', { class: 'log', id: 'run-log', tabindex: 0, 'aria-label': 'Run log', 'aria-busy': 'true' });
  const logState = h('span', { class: 'log-state muted', id: 'log-state', 'aria-live': 'polite' }, 'Reading the log…');
  const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const search = h('input', { type: 'search', id: 'log-search', placeholder: 'Search the log', autocomplete: 'off' });
  const matchInfo = h('span', { id: 'log-matches', class: 'muted', 'aria-live': 'polite' });
  let logText = '';
  let lastSeen;
  // The attempt whose log is shown: the run's current one. Each attempt has
  // its own log; when a new attempt starts, the panel follows it.
  let logAttempt = run.attempt_count;
  let droppedHead = false;
  let matchIndex = 0;

  const renderLog = () => {
    const term = search.value;
    if (!term) {
      logPre.textContent = (droppedHead ? '[earlier output omitted here: open the raw log for all of it]\n' : '') + logText;
      matchInfo.textContent = '';
    } else {
      const nodes = [];
      const haystack = logText.toLowerCase();
      const needle = term.toLowerCase();
      let at = 0;
      let count = 0;
      for (let i = haystack.indexOf(needle); i !== -1; i = haystack.indexOf(needle, i + needle.length)) {
        nodes.push(document.createTextNode(logText.slice(at, i)));
        nodes.push(h('mark', { 'data-match': count }, logText.slice(i, i + needle.length)));
        at = i + needle.length;
        count += 1;
      }
      nodes.push(document.createTextNode(logText.slice(at)));
      logPre.replaceChildren(...nodes);
      if (count === 0) {
        matchInfo.textContent = 'No match';
      } else {
        matchIndex = Math.min(matchIndex, count - 1);
        const current = logPre.querySelector(`mark[data-match="${matchIndex}"]`);
        current.classList.add('current');
        matchInfo.textContent = `${matchIndex + 1} of ${count} matches`;
        if (!follow.checked) current.scrollIntoView({ block: 'center' });
      }
    }
    if (follow.checked) logPre.scrollTop = logPre.scrollHeight;
  };
  const step = (delta) => {
    const count = logPre.querySelectorAll('mark').length;
    if (!count) return;
    follow.checked = false;
    matchIndex = (matchIndex + delta + count) % count;
    renderLog();
  };
  search.addEventListener('input', () => {
    matchIndex = 0;
    if (search.value) follow.checked = false;
    renderLog();
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      step(e.shiftKey ? -1 : 1);
    }
  });
  follow.addEventListener('change', renderLog);

  const pullLog = async () => {
    let grew = false;
    for (let i = 0; i < PAGES_PER_POLL; i += 1) {
      const page = await get(`api/v6/${enc(runId)}/logs${query({ last_seen: lastSeen, attempt: logAttempt })}`);
      const chunk = page.log || '';
      const next = page.last_seen ?? lastSeen;
      const moved = next !== lastSeen;
      lastSeen = next;
      if (chunk) {
        logText += chunk;
        grew = true;
      }
      if (!chunk || !moved) break;
    }
    if (logText.length > MAX_LOG_CHARS) {
      logText = logText.slice(logText.length - MAX_LOG_CHARS);
      droppedHead = true;
    }
    if (grew) renderLog();
    logPre.setAttribute('aria-busy', 'false');
  };

  // ---- the timeline -------------------------------------------------------
  const loadTimeline = async () => {
    const data = await get(`api/v6/${enc(runId)}/events`);
    const entries = data.pod_events || [];
    replace(timelineHost, entries.length
      ? h('ol', { class: 'timeline' }, entries.map((e) => h('li', { 'data-reason': e.reason, class: e.event_type === 'Warning' ? 'warning' : null },
        h('div', { class: 'when' }, timeEl(e.timestamp), e.attempt ? ` · attempt ${e.attempt}` : ''),
        h('div', { class: 'what' }, EVENT_NAMES[e.reason] || e.reason),
        h('div', {}, e.message))))
      : h('p', { class: 'muted' }, 'No events yet.'));
  };

  // ---- header, actions and attributes --------------------------------------
  const stop = async (button) => {
    const ok = await confirmDialog({
      title: `Stop run ${run.run_id}?`,
      body: run.status === 'QUEUED'
        ? 'It has not started; it will not run.'
        : 'Its process is asked to stop (SIGTERM), then killed after the grace period. This cannot be undone.',
      confirm: 'Stop run',
      cancel: 'Keep it running',
    });
    if (!ok) return;
    button.disabled = true;
    button.textContent = 'Stopping…';
    try {
      await api('DELETE', `api/v6/task/${enc(run.definition_id)}/history/${enc(run.run_id)}`);
      replace(notices, h('p', { class: 'notice', role: 'status' }, 'Stop requested. The run stops within the grace period.'));
    } catch (e) {
      button.disabled = false;
      button.textContent = 'Stop run';
      replace(notices, problemBox(e, 'The run was not stopped:'));
    }
  };

  const render = () => {
    replace(heading, run.alias, statusBadge(run), runningLongBadge(run));
    heading.querySelector('.badge').id = 'run-status';
    const isTemplate = run.executable_type === 'template';
    const again = isTemplate ? `#/templates/${enc(run.executable_id)}` : `#/tasks/${enc(run.definition_id)}/launch?from=${enc(run.run_id)}`;
    const stopButton = run.status === 'STOPPED'
      ? null
      : h('button', { type: 'button', class: 'danger', id: 'stop-run', onclick: (e) => stop(e.currentTarget) }, 'Stop run');
    replace(actions,
      stopButton,
      h('a', { href: again, class: 'button', id: 'launch-again' }, 'Launch again'),
      h('a', { href: isTemplate ? `#/templates/${enc(run.executable_id)}` : `#/tasks/${enc(run.definition_id)}`, class: 'button' }, isTemplate ? 'Template' : 'Task'));
    durationEl.textContent = run.started_at ? duration(run.started_at, run.finished_at) : '—';
    const links = [];
    // An EKS run's log is archived in S3; an ECS run's is in CloudWatch Logs.
    const inS3 = /^https:\/\/s3\.console\.aws\.amazon\.com\//.test(run.log_url || '');
    if (run.log_url) links.push(h('a', { href: run.log_url, target: '_blank', rel: 'noopener', id: 'log-url' }, inS3 ? 'Log in S3' : 'Log in CloudWatch'));
    const ecs = consoleLink(run.task_id);
    if (ecs) links.push(h('a', { href: ecs, target: '_blank', rel: 'noopener', id: 'console-url' }, 'Task in the ECS console'));
    links.push(h('a', { href: `api/v6/${enc(run.run_id)}/logs?raw_text=true`, target: '_blank', rel: 'noopener', id: 'raw-log' }, 'Raw log'));
    for (let n = 1; n < run.attempt_count; n += 1) {
      links.push(h('a', { href: `api/v6/${enc(run.run_id)}/logs?raw_text=true&attempt=${n}`, target: '_blank', rel: 'noopener', class: 'attempt-log' }, `Attempt ${n}'s log`));
    }
    replace(linksHost, links);
    showWaiting(run);
    replace(attrsHost, attrs([
      ['Exit code', run.exit_code === undefined ? '—' : String(run.exit_code)],
      run.exit_reason ? ['Exit reason', run.exit_reason, true] : null,
      run.running_long ? ['Running long', h('span', { id: 'run-long' }, run.running_long), true] : null,
      run.sizing_hint ? ['Right-sizing', h('span', { id: 'run-sizing' }, `Ask for less memory: ${run.sizing_hint}.`), true] : null,
      ['Cluster', run.cluster],
      ['Engine', run.engine],
      ['Owner', run.user],
      ['Attempt', run.attempt_count],
      ['Queued', timeEl(run.queued_at)],
      ['Started', timeEl(run.started_at)],
      ['Finished', timeEl(run.finished_at)],
      ['Duration', durationEl],
      ['CPU units', run.cpu],
      ['Memory (MB)', run.memory],
      run.usage ? ['Used', usageText(run), true] : null,
      run.cost_usd !== undefined ? ['Cost (estimate)', h('span', { title: run.cost_basis || '' }, `$${run.cost_usd.toFixed(4)}`)] : null,
      run.gpu ? ['GPUs', run.gpu] : null,
      ['Image', h('span', { class: 'mono' }, run.image)],
      ['Command', run.command ? h('pre', { class: 'block', id: 'run-command' }, run.command) : '—', true],
    ], 'run-attrs'));
    replace(detailsHost, attrs([
      ['Timeout (s)', run.active_deadline_seconds],
      ['Host', run.instance && run.instance.dns_name],
      ['Engine task', run.task_id ? h('span', { class: 'mono' }, run.task_id) : null],
      ['Node lifecycle', run.lifecycle_note ? `${run.node_lifecycle} (${run.lifecycle_note})` : run.node_lifecycle],
      run.resources_note ? ['Resources', run.resources_note] : null,
      run.tier ? ['Tier', run.tier] : null,
      ['Description', run.description],
      isTemplate && run.execution_request_custom
        ? ['Template payload', h('pre', { class: 'block' }, JSON.stringify(run.execution_request_custom.template_payload, null, 2)), true]
        : null,
      ['Environment', envTable(run.env, 'Run environment'), true],
    ], 'run-details'));
  };

  // ---- polling --------------------------------------------------------------
  let drains = 0;
  let polls = 0;
  const changed = (s) => s.status !== run.status || s.exit_code !== run.exit_code
    || s.started_at !== run.started_at || s.finished_at !== run.finished_at
    || s.running_long !== run.running_long;
  const poll = async () => {
    polls += 1;
    try {
      const status = await get(`api/v6/${enc(runId)}/status`);
      if (changed(status)) {
        run = await get(runPath);
        if (run.attempt_count !== logAttempt) {
          logAttempt = run.attempt_count;
          logText = '';
          lastSeen = undefined;
          droppedHead = false;
          renderLog();
        }
        render();
        await loadTimeline();
      } else if (polls % 5 === 0) {
        await loadTimeline();
      }
      showWaiting(status);
      if (run.started_at && !run.finished_at) durationEl.textContent = duration(run.started_at);
      await pullLog();
      if (polls === 1) renderLog();
      if (run.status === 'STOPPED') {
        drains += 1;
        if (drains > DRAIN_POLLS) {
          logState.textContent = logText ? 'The run has ended; this is its whole log.' : 'The run has ended without writing to its log.';
          return;
        }
      }
      logState.textContent = run.status === 'QUEUED' || run.status === 'PENDING'
        ? 'Waiting for the run to start…'
        : 'Following the log…';
    } catch (e) {
      logState.textContent = `Could not refresh (${e.message}); trying again.`;
    }
    scope.later(POLL_MS, poll);
  };

  render();
  await Promise.all([loadTimeline(), pullLog()]);
  if (run.status === 'STOPPED') drains = DRAIN_POLLS;
  scope.later(0, poll);

  return h('section', {},
    heading,
    h('p', { class: 'sub mono', id: 'run-id' }, run.run_id),
    actions,
    notices,
    waitingEl,
    attrsHost,
    h('h2', { id: 'log-heading' }, 'Log'),
    h('div', { class: 'log-tools' },
      h('div', { class: 'search' },
        h('label', { for: 'log-search' }, 'Search'), search,
        h('button', { type: 'button', onclick: () => step(-1), 'aria-label': 'Previous match' }, '↑'),
        h('button', { type: 'button', onclick: () => step(1), 'aria-label': 'Next match' }, '↓'),
        matchInfo),
      h('label', {}, follow, ' Follow the end'),
      linksHost,
      logState),
    logPre,
    h('h2', {}, 'Timeline'),
    timelineHost,
    h('h2', {}, 'Details'),
    detailsHost);
}
