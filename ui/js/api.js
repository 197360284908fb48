// Calls to Flotilla's API. Paths are relative ("api/v6/task"), so the page
// works on any prefix the API is served under. A refused call throws an
// ApiError carrying the API's message and its problems one by one. When the
// server asks for a token, the one the user gave is kept in this browser and
// sent as a bearer token with every call.

const TOKEN_KEY = 'flotilla-token';

/** The token this browser sends, if the user gave one. */
export const token = () => localStorage.getItem(TOKEN_KEY) || '';

/** Keeps `value` as this browser's token (empty: forget it). */
export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message, problems) {
    super(message);
    this.status = status;
    this.problems = problems && problems.length ? problems : [message];
  }
}

export async function api(method, path, body) {
  const options = { method, headers: { Accept: 'application/json' } };
  if (token()) options.headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new ApiError(0, `The service cannot be reached (${e.message}). Is flotilla serve running?`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText || 'error'}`;
    throw new ApiError(response.status, message, data && data.problems);
  }
  return data;
}

export const get = (path) => api('GET', path);

/** A query string from an object; arrays repeat their key, empty values are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v !== undefined && v !== null && v !== '') q.append(key, String(v));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The cluster names runs may name (`GET /api/v1/clusters`). */
export async function clusterNames() {
  const data = await get('api/v1/clusters');
  return data.clusters || [];
}
