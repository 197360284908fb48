// Insights: the week's (or month's) most expensive tasks, owners or groups,
// with their compute hours, runs and failure rate, and a bar chart of each
// day's estimated cost. The chart is plain SVG built here: no chart library,
// no build step.

import { get, query } from './api.js';
import { h, svg, table, navigate } from './dom.js';

const enc = encodeURIComponent;
const DIMENSIONS = [['definition', 'Tasks'], ['owner', 'Owners'], ['group', 'Groups']];
const WINDOWS = ['7d', '30d', '90d'];

/** Dollars with the precision their size needs: "$1,234", "$12.50", "$0.0042". */
const dollars = (n) => {
  const v = Number(n);
  if (v >= 100) return `$${Math.round(v).toLocaleString('en-US')}`;
  if (v >= 1 || v === 0) return `$${v.toFixed(2)}`;
  return `$${v.toFixed(4)}`;
};

/** Hours the same way: "12.5", "0.25", "0.0031". */
const hours = (n) => (n >= 10 ? n.toFixed(1) : n >= 0.1 || n === 0 ? n.toFixed(2) : n.toFixed(4));

/** A bar per day of `days` (`{day, cost_usd, runs}`), its height the day's cost. */
function costChart(days) {
  const width = 640;
  const height = 160;
  const pad = { top: 10, right: 8, bottom: 22, left: 48 };
  const most = Math.max(...days.map((d) => d.cost_usd), 0);
  const top = most > 0 ? most : 1;
  const slot = (width - pad.left - pad.right) / Math.max(days.length, 1);
  const plot = height - pad.top - pad.bottom;
  const bars = days.map((d, i) => {
    const barHeight = (d.cost_usd / top) * plot;
    return svg('rect', {
      class: 'bar',
      x: (pad.left + i * slot + slot * 0.15).toFixed(1),
      y: (pad.top + plot - barHeight).toFixed(1),
      width: (slot * 0.7).toFixed(1),
      height: barHeight.toFixed(1),
      'data-day': d.day,
      'data-cost': d.cost_usd,
    }, svg('title', {}, `${d.day}: ${dollars(d.cost_usd)} estimated, ${d.runs} runs`));
  });
  const every = Math.ceil(days.length / 7);
  const labels = days.map((d, i) => (i % every === 0
    ? svg('text', { x: (pad.left + i * slot + slot / 2).toFixed(1), y: height - 6, 'text-anchor': 'middle', class: 'axis' }, d.day.slice(5))
    : null));
  const total = days.reduce((sum, d) => sum + d.cost_usd, 0);
  return svg('svg', {
    id: 'insights-chart',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `Estimated cost per day, ${days[0]?.day} to ${days[days.length - 1]?.day}: ${dollars(total)} in all, at most ${dollars(most)} a day`,
    class: 'chart',
  },
  svg('line', { x1: pad.left, y1: pad.top + plot, x2: width - pad.right, y2: pad.top + plot, class: 'axis-line' }),
  svg('text', { x: pad.left - 6, y: pad.top + 8, 'text-anchor': 'end', class: 'axis' }, dollars(most)),
  svg('text', { x: pad.left - 6, y: pad.top + plot, 'text-anchor': 'end', class: 'axis' }, '$0'),
  bars, labels);
}

export async function insightsView(scope) {
  const p = scope.params;
  const by = DIMENSIONS.some(([d]) => d === p.get('by')) ? p.get('by') : 'definition';
  const window = WINDOWS.includes(p.get('window')) ? p.get('window') : '7d';
  const board = await get(`api/v6/insights/top${query({ by, window, limit: 10 })}`);
  const choose = (key, value) => navigate('/insights', { by, window, [key]: value });
  const picker = (label, id, options, current, key) => h('label', { for: id }, label, ' ',
    h('select', { id, onchange: (e) => choose(key, e.target.value) },
      options.map(([value, text]) => h('option', { value, selected: value === current }, text))));
  const name = (l) => (by === 'definition'
    ? h('a', { href: `#/tasks/${enc(l.key)}` }, l.label || l.key)
    : (l.label || l.key || '(none)'));
  return h('section', {},
    h('h1', {}, 'Insights'),
    h('p', { class: 'muted' }, 'What ran, and what it cost, by the day it ended (UTC). Costs are estimates: each attempt\'s requested vCPUs, memory and GPUs for the time it ran, at the server\'s price table.'),
    h('div', { class: 'bar' },
      picker('Top', 'insights-by', DIMENSIONS, by, 'by'),
      picker('over', 'insights-window', WINDOWS.map((w) => [w, `the last ${w.replace('d', ' days')}`]), window, 'window')),
    h('figure', { class: 'chart-box' }, costChart(board.days || []),
      h('figcaption', { class: 'muted' }, `Estimated cost per day, ${board.from} to ${board.to}`)),
    h('h2', {}, `Top ${board.top.length || ''} by estimated cost`),
    table([
      ['#', (l) => h('td', { class: 'num' }, board.top.indexOf(l) + 1)],
      [DIMENSIONS.find(([d]) => d === by)[1].replace(/s$/, ''), name],
      ['Cost (estimate)', (l) => h('td', { class: 'num' }, dollars(l.cost_usd))],
      ['vCPU-hours', (l) => h('td', { class: 'num' }, hours(l.compute_hours))],
      ['Runs', (l) => h('td', { class: 'num' }, l.runs)],
      ['Failure rate', (l) => h('td', { class: 'num' }, `${Math.round(l.failure_rate * 100)}%`)],
    ], board.top, { id: 'insights-top', label: 'Leaderboard', empty: 'No run ended in this window.' }));
}
