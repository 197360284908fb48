// Signing in, as the server says (GET api/ui-config): nothing to sign in to,
// a token to paste, or the OAuth 2.0 authorization-code flow with PKCE at an
// issuer (a stack's Cognito user pool, say). The flow: a random verifier and
// state are kept in this tab's session storage, the browser goes to the
// issuer's authorization endpoint with the verifier's SHA-256 as the
// challenge, the issuer sends it back here with a code, and the code and the
// verifier buy the tokens. The ID token is then sent as the bearer token.

import { setToken } from './api.js';

const PENDING_KEY = 'flotilla-sign-in';
let config = null;

/** How this server's UI signs in: {sign_in: 'open'|'token'|'oauth'|'iam', oauth?}. */
export async function signInConfig() {
  if (!config) {
    try {
      const response = await fetch('api/ui-config', { headers: { Accept: 'application/json' } });
      config = response.ok ? await response.json() : { sign_in: 'token' };
    } catch {
      config = { sign_in: 'token' };
    }
  }
  return config;
}

function base64url(bytes) {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText(bytes) {
  const buffer = new Uint8Array(bytes);
  crypto.getRandomValues(buffer);
  return base64url(buffer);
}

/** The page's own address, which the issuer sends the user back to. */
const redirectUri = () => `${location.origin}${location.pathname}`;

/** The issuer's endpoints: as configured, else from its discovery document. */
async function endpoints(oauth) {
  if (oauth.authorization_endpoint && oauth.token_endpoint) return oauth;
  const url = `${oauth.issuer}/.well-known/openid-configuration`;
  let found;
  try {
    const response = await fetch(url, { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error(`${response.status}`);
    found = await response.json();
  } catch (e) {
    throw new Error(`The sign-in service at ${oauth.issuer} did not say where to sign in (${url}: ${e.message}).`);
  }
  return {
    ...oauth,
    authorization_endpoint: oauth.authorization_endpoint || found.authorization_endpoint,
    token_endpoint: oauth.token_endpoint || found.token_endpoint,
  };
}

/** Sends the browser to the issuer to sign in; it comes back to this page. */
export async function beginSignIn(oauth) {
  const at = await endpoints(oauth);
  const verifier = randomText(48);
  const state = randomText(16);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({
    verifier,
    state,
    client_id: oauth.client_id,
    token_endpoint: at.token_endpoint,
    back: location.hash || '#/tasks',
  }));
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: oauth.client_id,
    redirect_uri: redirectUri(),
    scope: oauth.scopes,
    state,
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: 'S256',
  });
  location.assign(`${at.authorization_endpoint}?${q}`);
}

/**
 * Finishes a sign-in the issuer sent the browser back from (`?code=…&state=…`
 * on this page's address): false when the address carries none. Throws,
 * saying why, when the issuer refused or the answer is not for this tab's
 * sign-in; the address is cleaned either way.
 */
export async function completeSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return false;
  let pending = null;
  try {
    pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || 'null');
  } catch {
    pending = null;
  }
  sessionStorage.removeItem(PENDING_KEY);
  history.replaceState(null, '', `${location.pathname}${(pending && pending.back) || '#/tasks'}`);
  if (params.has('error')) {
    throw new Error(`The sign-in service refused: ${params.get('error_description') || params.get('error')}.`);
  }
  if (!pending || pending.state !== params.get('state')) {
    throw new Error('This sign-in was not started from this page (its state does not match), so it was not used: sign in again.');
  }
  let response;
  try {
    response = await fetch(pending.token_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: params.get('code'),
        redirect_uri: redirectUri(),
        client_id: pending.client_id,
        code_verifier: pending.verifier,
      }),
    });
  } catch (e) {
    throw new Error(`The sign-in service could not be reached (${e.message}): sign in again.`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(`The sign-in service gave no token: ${data.error_description || data.error || response.status}.`);
  }
  const token = data.id_token || data.access_token;
  if (!token) throw new Error('The sign-in service answered without a token.');
  setToken(token);
  return true;
}
