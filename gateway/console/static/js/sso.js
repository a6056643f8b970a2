// "Sign in with SSO": OAuth 2.0 authorization code flow with PKCE (RFC 7636) against the
// configured IdP, as a public client (no secret in the browser). The access token it gets is
// a JWT the gateway verifies against the IdP's JWKS; it is kept like a pasted key.

import { setCredential } from "./api.js";

const STATE = "valuechain.sso.state";
const VERIFIER = "valuechain.sso.verifier";

function randomText(bytes) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return base64url(data);
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function redirectUri() {
  return `${location.origin}/console/`;
}

export async function startSso(sso) {
  const state = randomText(16);
  const verifier = randomText(32);
  sessionStorage.setItem(STATE, state);
  sessionStorage.setItem(VERIFIER, verifier);
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  const url = new URL(sso.authorize_url);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: sso.client_id,
    redirect_uri: redirectUri(),
    scope: sso.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

// Back from the IdP with ?code=&state=: trade the code for a token. True when signed in.
export async function finishSso(sso) {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  const state = params.get("state");
  if (!code) return false;
  const expected = sessionStorage.getItem(STATE);
  const verifier = sessionStorage.getItem(VERIFIER);
  sessionStorage.removeItem(STATE);
  sessionStorage.removeItem(VERIFIER);
  // The code leaves the address bar (and the history) before anything else happens.
  history.replaceState(null, "", "/console/");
  if (!expected || state !== expected || !verifier) return false;
  const answer = await fetch(sso.token_url, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri(),
      client_id: sso.client_id,
      code_verifier: verifier,
    }),
  });
  if (!answer.ok) return false;
  const token = await answer.json();
  if (!token.access_token) return false;
  setCredential(token.access_token);
  return true;
}

// Back from the IdP with ?error= (the user cancelled, or the IdP refused): its words, once.
export function ssoError() {
  const params = new URLSearchParams(location.search);
  const error = params.get("error");
  if (!error) return null;
  history.replaceState(null, "", "/console/");
  return params.get("error_description") || error;
}
