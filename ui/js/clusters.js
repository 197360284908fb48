// The clusters list: each cluster's status, why, and the tiers it takes.

import { get } from './api.js';
import { h, table, timeEl } from './dom.js';

export async function clustersView() {
  const data = await get('api/v7/clusters');
  return h('section', {},
    h('h1', {}, 'Clusters'),
    h('p', { class: 'muted' }, 'A cluster is a queue of runs; only active clusters take new runs. Manage them with /api/v6/clusters.'),
    table([
      ['Name', (c) => h('span', { class: 'mono' }, c.name)],
      ['Status', (c) => h('span', { class: `badge ${c.status}`, 'data-status': c.status }, c.status)],
      ['Reason', (c) => c.status_reason || '—'],
      ['Allowed tiers', (c) => (c.allowed_tiers || []).join(', ') || '—'],
      ['Capabilities', (c) => (c.capabilities || []).join(', ') || '—'],
      ['Region', (c) => c.region || '—'],
      ['Since', (c) => timeEl(c.status_since)],
    ], data.clusters || [], { id: 'clusters-table', label: 'Clusters', empty: 'No clusters.' }));
}
