// The console's shell: sign-in, the navigation the caller's role allows (GET /v1/me), and
// hash routes (#/customers/<id>) that hand each page a context. Pages live in pages/*.js.

import { api, credential, forgetCredential, setCredential } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { finishSso, ssoError, startSso } from "./sso.js";
import { learn } from "./vocabulary.js";
import customers from "./pages/customers.js";
import engage from "./pages/engage.js";
import importPage from "./pages/import.js";
import lifecycle from "./pages/lifecycle.js";
import operators from "./pages/operators.js";
import partners from "./pages/partners.js";
import portfolio from "./pages/portfolio.js";
import value from "./pages/value.js";

// In the navigation's order. A page is shown when the caller has any of its `scopes`.
export const PAGES = [portfolio, customers, importPage, engage, value, lifecycle, partners, operators];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let me = null;
let config = { sso: null };

function can(scope) {
  return Boolean(me && me.scopes.includes(scope));
}

function visible(page) {
  return page.scopes.some(can);
}

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [path, query = ""] = hash.split("?");
  const [id = "", ...params] = path.split("/").filter(Boolean);
  return { id, params, query: new URLSearchParams(query) };
}

export function go(hash) {
  location.hash = hash;
}

function drawNav(current) {
  clear(
    nav,
    PAGES.filter(visible).map((page) =>
      h("a", { href: `#/${page.id}`, "aria-current": page.id === current ? "page" : null }, page.title),
    ),
  );
  clear(
    who,
    h("span", { "data-testid": "role" }, `${me.role}`),
    h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"),
  );
}

function signOut() {
  forgetCredential();
  me = null;
  clear(nav);
  clear(who);
  showSignIn();
}

function showSignIn(message) {
  document.title = "Sign in · Value Chain CRM";
  const input = h("input", {
    id: "api-key",
    name: "key",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": "key-help",
  });
  const status = h("p", { role: "status" }, message ? h("span", { class: "error" }, message) : null);
  const signInForm = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("label", { for: "api-key" }, "API key", input),
    h("p", { id: "key-help", class: "muted" }, "The key stays in this browser tab only, and is forgotten when you close it."),
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  signInForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    setCredential(input.value.trim());
    input.value = "";
    await start(status);
  });
  clear(
    main,
    h("h1", { id: "signin-title" }, "Sign in"),
    signInForm,
    config.sso
      ? h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => startSso(config.sso) }, "Sign in with SSO"))
      : null,
  );
  input.focus();
}

async function start(status) {
  try {
    me = await api("/v1/me");
  } catch (error) {
    forgetCredential();
    if (status) clear(status, h("span", { class: "error" }, error.status === 401 ? "That key was not accepted." : error.message));
    else showSignIn(error.status === 401 ? "Your session ended: sign in again." : error.message);
    return;
  }
  if (!location.hash || location.hash === "#" || location.hash === "#/") {
    const first = PAGES.find(visible);
    location.hash = first ? `#/${first.id}` : "#/none";
    return; // hashchange renders it
  }
  await render();
}

let rendering = 0;

async function render() {
  if (!me) return;
  const { id, params, query } = route();
  const page = PAGES.find((p) => p.id === id);
  drawNav(page ? page.id : "");
  const ticket = ++rendering;
  // Where the keyboard goes after a route change: the page's heading. Not for the first page
  // drawn after loading: there the first Tab still reaches "Skip to the page".
  const moveFocus = ticket > 1;
  if (!page || !visible(page)) {
    clear(main, h("h1", {}, "Not available"), h("p", {}, "This page does not exist, or your role cannot see it."));
    return;
  }
  document.title = `${page.title} · Value Chain CRM`;
  clear(main, h("p", { class: "muted" }, "Loading…"));
  try {
    const content = await page.render({ me, can, params, query, go });
    if (ticket !== rendering) return; // the user moved on meanwhile
    clear(main, content);
  } catch (error) {
    if (ticket !== rendering) return;
    clear(main, h("h1", {}, page.title), errorBox(error));
  }
  const heading = main.querySelector("h1");
  if (heading && moveFocus) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", render);
window.addEventListener("console:signed-out", () => {
  if (me) {
    forgetCredential();
    me = null;
    clear(nav);
    clear(who);
    showSignIn("Your session ended: sign in again.");
  }
});

async function boot() {
  try {
    config = await (await fetch("/console/config.json")).json();
  } catch {
    config = { sso: null };
  }
  learn(config);
  const refused = config.sso && ssoError();
  if (refused) {
    showSignIn(`The sign-in with SSO did not complete: ${refused}`);
    return;
  }
  if (config.sso && (await finishSso(config.sso))) {
    await start();
    return;
  }
  if (credential()) await start();
  else showSignIn();
}

boot();
