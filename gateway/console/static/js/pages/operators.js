// Operators: readiness of every service (the gateway's GET /readyz), dead letters per service
// (GET /v1/ops/<service>/dead-letters), API keys (keys:admin) and the audit log (audit:read).
// docs/operations.md and docs/security.md say what each one means.

import { api, apiAll } from "../api.js";
import { clear, debounce, form, h, num, section, table, when } from "../dom.js";
import { vocabulary } from "../vocabulary.js";
import { confirmArea, field, instant, pagedTable, secretBox, words } from "../widgets.js";

const KEYS_SHOWN = 50;

// --- readiness ------------------------------------------------------------------------------

function readiness() {
  const cards = h("div", { class: "cards", "aria-live": "polite" });
  const status = h("p", { role: "status", class: "muted" });
  async function load() {
    status.className = "muted";
    status.textContent = "Checking…";
    let body;
    try {
      body = await api("/readyz");
    } catch (error) {
      // 503: something is not ready, and the answer says what.
      if (error.status === 503 && error.body && error.body.checks) body = error.body;
      else {
        status.className = "error";
        status.textContent = error.message;
        return;
      }
    }
    const names = Object.keys(body.checks);
    clear(
      cards,
      names.map((name) => {
        const check = body.checks[name];
        const ready = check === "ready";
        const replicas = body.replicas && body.replicas[name];
        return h(
          "div",
          { class: "card", "data-testid": `ready-${name}` },
          h("h3", {}, name),
          h("p", { class: ready ? "ok big" : "error" }, ready ? "ready" : check),
          replicas
            ? h("p", { class: "muted" }, `${replicas.healthy} of ${replicas.total} replica${replicas.total === 1 ? "" : "s"} ready`)
            : null,
          replicas && replicas.not_ready
            ? h("ul", {}, Object.entries(replicas.not_ready).map(([url, why]) => h("li", {}, `${url}: ${why}`)))
            : null,
        );
      }),
    );
    status.className = body.status === "ready" ? "ok" : "error";
    status.textContent = `${body.status === "ready" ? "Everything is ready" : "Not ready"} (checked ${new Date().toLocaleTimeString()}).`;
  }
  load();
  return section(
    "Readiness",
    h("p", { class: "muted" }, "Each service answers its /readyz through the gateway, and NATS lets the gateway in."),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: load }, "Check again")),
    status,
    cards,
  );
}

// --- dead letters ---------------------------------------------------------------------------

const DEAD_LETTER_COLUMNS = [
  { label: "Id", value: (d) => String(d.id), numeric: true },
  { label: "Failed", value: (d) => when(d.failed_at) },
  { label: "Consumer", value: (d) => d.consumer },
  { label: "Subject", value: (d) => d.subject || "—" },
  { label: "Event", value: (d) => (d.event_id ? h("code", {}, d.event_id) : "—") },
  { label: "Deliveries", value: (d) => String(d.deliveries), numeric: true },
  { label: "Error", value: (d) => d.error },
  {
    label: "Message",
    value: (d) => h("details", {}, h("summary", {}, "Show"), h("code", {}, d.body.length > 2000 ? d.body.slice(0, 2000) + "…" : d.body)),
  },
];
const DEAD_LETTER_PAGE = 20;

// A summary row per service (how many, the newest), then the list of each service that has any.
function deadLetters() {
  const summary = h("div", { "aria-live": "polite" });
  const lists = h("div", {});
  const status = h("p", { role: "status", class: "muted" });
  async function load() {
    status.className = "muted";
    status.textContent = "Loading…";
    const results = await Promise.all(
      vocabulary.services.map((service) =>
        api(`/v1/ops/${service}/dead-letters`, { query: { limit: DEAD_LETTER_PAGE } }).then(
          (page) => ({ service, page }),
          (error) => ({ service, error }),
        ),
      ),
    );
    clear(
      summary,
      table({
        caption: "Dead letters per service",
        rows: results,
        columns: [
          { label: "Service", value: (r) => r.service },
          {
            label: "Dead letters",
            numeric: true,
            value: (r) =>
              r.error
                ? h("span", { class: "error" }, r.error.message)
                : r.page.items.length
                  ? h("span", { class: "late" }, `${r.page.items.length}${r.page.next_cursor ? " or more" : ""}`)
                  : h("span", { class: "ok" }, "none"),
          },
          { label: "Newest", value: (r) => (r.page && r.page.items.length ? when(r.page.items[0].failed_at) : "—") },
        ],
      }),
    );
    clear(
      lists,
      results
        .filter((r) => r.page && r.page.items.length)
        .map((r) =>
          h(
            "div",
            { "data-testid": `dead-letters-${r.service}` },
            h("h3", {}, `Dead letters of ${r.service}`),
            pagedTable({
              path: `/v1/ops/${r.service}/dead-letters`,
              caption: `Dead letters of ${r.service}, newest first`,
              empty: "None.",
              limit: DEAD_LETTER_PAGE,
              columns: DEAD_LETTER_COLUMNS,
            }).node,
          ),
        ),
    );
    status.textContent = `Checked ${new Date().toLocaleTimeString()}.`;
  }
  load();
  return section(
    "Dead letters",
    h(
      "p",
      { class: "muted" },
      "Events a service's consumers gave up on after their redeliveries (docs/operations.md, “Dead letters”).",
    ),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: load }, "Refresh dead letters")),
    status,
    summary,
    lists,
  );
}

// --- API keys -------------------------------------------------------------------------------

function apiKeys(ctx, audit) {
  let keys = [];
  let showAll = false;
  const listBox = h("div", { "aria-live": "polite" });
  const status = h("p", { role: "status", class: "muted" });
  const newKey = h("div", {});
  const confirm = confirmArea();
  const find = h("input", { type: "search", size: 24 });

  function keyState(k) {
    if (k.revoked_at) return h("span", { class: "late" }, `revoked ${when(k.revoked_at)}`);
    if (k.expires_at && new Date(k.expires_at) <= new Date()) return h("span", { class: "late" }, `expired ${when(k.expires_at)}`);
    return h("span", { class: "ok" }, k.expires_at ? `active until ${when(k.expires_at)}` : "active");
  }

  function draw() {
    const needle = find.value.trim().toLowerCase();
    const matching = needle
      ? keys.filter((k) => [k.name, k.role, k.prefix, k.id].some((v) => String(v || "").toLowerCase().includes(needle)))
      : keys;
    const shown = showAll ? matching : matching.slice(0, KEYS_SHOWN);
    clear(
      listBox,
      table({
        caption: `API keys, newest first (${shown.length} of ${matching.length}${needle ? " matching" : ""})`,
        empty: needle ? "No key matches." : "No keys yet.",
        rows: shown,
        columns: [
          { label: "Name", value: (k) => k.name },
          { label: "Role", value: (k) => h("span", { class: "pill" }, k.role) },
          { label: "Prefix", value: (k) => h("code", {}, `vc_${k.prefix}…`) },
          { label: "Extra scopes", value: (k) => (k.scopes.length ? k.scopes.join(", ") : "—") },
          { label: "Partner", value: (k) => k.partner_id || "—" },
          { label: "Created", value: (k) => when(k.created_at) },
          { label: "Last used", value: (k) => (k.last_used_at ? when(k.last_used_at) : "—") },
          { label: "State", value: keyState },
          { label: "Actions", value: (k) => h("div", { class: "actions" }, keyActions(k)) },
        ],
      }),
      matching.length > shown.length
        ? h("button", { type: "button", class: "secondary", onclick: () => ((showAll = true), draw()) }, `Show all ${matching.length}`)
        : null,
    );
  }

  function keyActions(k) {
    const actions = [];
    if (!k.revoked_at) {
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            "aria-label": `Rotate key ${k.name}`,
            onclick: () => {
              const overlap = h("input", { name: "hours", type: "number", min: "0", max: "720", step: "any", value: "24", size: 6 });
              confirm.ask(
                `Rotate the key “${k.name}”: a new secret, shown once?`,
                field("Old secret keeps working for (hours)", overlap, "0 ends it at once; at most 720 (30 days)"),
                "Rotate",
                async (data) => {
                  const seconds = Math.round(Number(data.get("hours") || 0) * 3600);
                  const rotated = await api(`/v1/api-keys/${encodeURIComponent(k.id)}/rotate`, {
                    method: "POST",
                    json: { overlap_seconds: seconds },
                  });
                  const note = "Give it to the key's holder: only its hash is stored.";
                  clear(newKey, secretBox(`New secret of ${rotated.name}`, rotated.key, note));
                  await load();
                },
              );
            },
          },
          "Rotate…",
        ),
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            "aria-label": `Revoke key ${k.name}`,
            onclick: () =>
              confirm.ask(`Revoke the key “${k.name}”? Every secret of it stops working.`, null, "Revoke", async () => {
                await api(`/v1/api-keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
                await load();
              }),
          },
          "Revoke…",
        ),
      );
    }
    if (audit) {
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            "aria-label": `Audit trail of key ${k.name}`,
            onclick: () => audit.show({ resource: k.id }),
          },
          "Audit trail",
        ),
      );
    }
    return actions;
  }

  async function load() {
    status.className = "muted";
    status.textContent = "Loading…";
    try {
      keys = (await apiAll("/v1/api-keys", { limit: 200 }, 10000)).reverse();
      status.textContent = "";
      draw();
    } catch (error) {
      status.className = "error";
      status.textContent = error.message;
    }
  }

  find.addEventListener("input", debounce(draw, 150));
  load();
  return section(
    "API keys",
    createKeyForm(ctx, newKey, load),
    newKey,
    h("h3", {}, "Keys"),
    field("Find a key (name, role, prefix or id)", find),
    confirm.node,
    status,
    listBox,
  );
}

function createKeyForm(ctx, newKey, reload) {
  const role = h("select", { name: "role", required: true }, vocabulary.roles.map((r) => h("option", { value: r }, r)));
  const partners = h("datalist", { id: "partner-stakeholders" });
  if (ctx.can("network:read")) {
    api("/v1/stakeholders", { query: { kind: "partner", limit: 200 } })
      .then((page) => clear(partners, page.items.map((s) => h("option", { value: s.id, label: s.name }))))
      .catch(() => {});
  }
  return form(
    { "aria-labelledby": "new-key-title" },
    [
      h("h3", { id: "new-key-title" }, "Make a key"),
      h(
        "div",
        { class: "row" },
        field("Name", h("input", { name: "name", type: "text", required: true, maxlength: 200, size: 24 })),
        field("Role", role),
        field("Expires (your local time)", h("input", { name: "expires_at", type: "datetime-local" }), "empty: never"),
      ),
      h(
        "div",
        { class: "row" },
        field(
          "Partner (stakeholder id)",
          h("input", { name: "partner_id", type: "text", list: "partner-stakeholders", size: 28 }),
          "needed for a partner key, refused for others",
        ),
        field("Person (employee stakeholder id)", h("input", { name: "person_id", type: "text", size: 28 })),
      ),
      h(
        "div",
        { class: "row" },
        field("Extra scopes", h("input", { name: "scopes", type: "text", size: 30 }), "beyond the role's, comma-separated"),
        field(
          "Event types",
          h("input", { name: "event_types", type: "text", size: 30 }),
          "empty: every public type; e.g. crm.identify.customer.*",
        ),
        h("button", { type: "submit" }, "Make the key"),
      ),
      partners,
    ],
    async (data, node) => {
      clear(newKey);
      const body = { name: String(data.get("name")).trim(), role: String(data.get("role")) };
      const expires = instant(data.get("expires_at"));
      if (expires) body.expires_at = expires;
      for (const name of ["partner_id", "person_id"]) {
        const value = String(data.get(name) || "").trim();
        if (value) body[name] = value;
      }
      const scopes = words(data.get("scopes"));
      if (scopes.length) body.scopes = scopes;
      const types = words(data.get("event_types"));
      if (types.length) body.event_types = types;
      const made = await api("/v1/api-keys", { method: "POST", json: body });
      const note = `The key “${made.name}” (${made.role}): only its hash is stored, so copy it now.`;
      clear(newKey, secretBox("New API key", made.key, note));
      node.reset();
      await reload();
      return `Made the key “${made.name}”.`;
    },
  );
}

// --- the audit log --------------------------------------------------------------------------

function auditLog(ctx) {
  const actor = h("input", { name: "actor", type: "text", size: 22 });
  const resource = h("input", { name: "resource", type: "text", size: 28 });
  const from = h("input", { name: "from", type: "datetime-local", step: "1" });
  const to = h("input", { name: "to", type: "datetime-local", step: "1" });
  const list = pagedTable({
    path: "/v1/audit",
    query: () => ({ actor: actor.value.trim(), resource: resource.value.trim(), from: instant(from.value), to: instant(to.value) }),
    caption: "Audit entries, newest first",
    empty: "No entries match.",
    columns: [
      { label: "Seq", value: (e) => String(e.seq), numeric: true },
      { label: "When", value: (e) => when(e.at) },
      { label: "Who", value: (e) => h("span", {}, h("code", {}, e.actor_id), ` (${e.role})`) },
      { label: "What", value: (e) => h("span", {}, h("strong", {}, e.method), " ", e.route) },
      { label: "Path", value: (e) => h("code", {}, e.path) },
      { label: "Resources", value: (e) => (e.resources.length ? e.resources.join(", ") : "—") },
      { label: "Status", value: (e) => h("span", { class: e.status >= 400 ? "late" : null }, String(e.status)), numeric: true },
      { label: "Detail", value: (e) => (e.detail ? JSON.stringify(e.detail) : "—") },
    ],
  });
  const filters = h(
    "form",
    { "aria-label": "Filter the audit log" },
    h(
      "div",
      { class: "row" },
      field("Actor (key id, jwt:<sub> or person)", actor),
      field("Resource id", resource),
      field("From (your local time)", from),
      field("To (your local time)", to),
      h("button", { type: "submit" }, "Show entries"),
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: () => {
            filters.reset();
            list.reload();
          },
        },
        "Clear filters",
      ),
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: () => {
            filters.reset();
            actor.value = ctx.me.id;
            list.reload();
          },
        },
        "Only mine",
      ),
    ),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    list.reload();
  });

  const anchorSeq = h("input", { name: "anchor_seq", type: "number", min: "1", size: 10 });
  const anchorHash = h("input", { name: "anchor_hash", type: "text", size: 40, pattern: "[0-9a-f]{64}" });
  const verifyResult = h("div", {});
  const verify = form(
    { "aria-labelledby": "verify-title" },
    [
      h("h3", { id: "verify-title" }, "Verify the chain"),
      h(
        "p",
        { class: "muted" },
        "Walks the whole hash chain, oldest first. With a head you kept elsewhere, it also checks the chain " +
          "still passes through it.",
      ),
      h(
        "div",
        { class: "row" },
        field("Kept head: seq", anchorSeq),
        field("Kept head: hash", anchorHash),
        h("button", { type: "submit", class: "secondary" }, "Verify"),
      ),
      verifyResult,
    ],
    async (data) => {
      clear(verifyResult);
      const query = {};
      if (String(data.get("anchor_seq") || "").trim() || String(data.get("anchor_hash") || "").trim()) {
        query.anchor_seq = String(data.get("anchor_seq")).trim();
        query.anchor_hash = String(data.get("anchor_hash")).trim();
      }
      const check = await api("/v1/audit/verify", { query });
      if (check.ok) {
        clear(
          verifyResult,
          h("p", { class: "ok" }, `The chain holds: ${num(check.count)} entries.`),
          check.head
            ? h(
                "p",
                {},
                "Head: seq ",
                h("code", {}, String(check.head.seq)),
                ", hash ",
                h("code", {}, check.head.hash),
                " (keep it elsewhere).",
              )
            : null,
        );
        return "Verified.";
      }
      clear(verifyResult, h("p", { class: "error", role: "alert" }, `Broken at entry ${check.broken.seq}: ${check.broken.reason}`));
      return `${num(check.count)} entries checked out before the break.`;
    },
  );

  const node = section(
    "Audit log",
    h("p", { class: "muted" }, "Every write through the gateway, append-only in one hash chain (docs/security.md, “Audit log”)."),
    filters,
    list.node,
    verify,
  );
  node.id = "audit-log";
  return {
    node,
    show({ resource: id }) {
      filters.reset();
      resource.value = id;
      list.reload();
      node.scrollIntoView({ block: "start" });
      resource.focus({ preventScroll: true });
    },
  };
}

// --- the page ---------------------------------------------------------------------------------

export default {
  id: "operators",
  title: "Operators",
  scopes: ["ops", "keys:admin", "audit:read"],
  render(ctx) {
    const audit = ctx.can("audit:read") ? auditLog(ctx) : null;
    return h(
      "div",
      {},
      h("h1", {}, "Operators"),
      ctx.can("ops") ? readiness() : null,
      ctx.can("ops") ? deadLetters() : null,
      ctx.can("keys:admin") ? apiKeys(ctx, audit) : null,
      audit ? audit.node : null,
    );
  },
};
