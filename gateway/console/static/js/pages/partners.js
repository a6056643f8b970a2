// Partners: webhook subscriptions (docs/partners.md) with their delivery log, retry, replay and
// secret rotation; and the network's stakeholders. A partner's key sees only its own
// subscriptions and its own stakeholder record (the API narrows that, not this page).
//
//   #/partners                     subscriptions, the form to subscribe, stakeholders
//   #/partners/webhooks/<id>       one subscription: its settings, actions and delivery log

import { api } from "../api.js";
import { async_block, clear, errorBox, form, h, num, section, table, when } from "../dom.js";
import { confirmArea, field, pagedTable, secretBox, words } from "../widgets.js";

const STAKEHOLDER_KINDS = ["partner", "reseller", "supplier", "employee", "investor", "owner"];
const FAILED = new Set(["failed", "aborted", "gone", "refused", "exhausted"]);

function outcomePill(outcome) {
  const kind = outcome === "delivered" ? "pill ok" : FAILED.has(outcome) ? "pill late" : "pill";
  return h("span", { class: kind }, outcome);
}

function subscriptionState(hook) {
  if (hook.enabled) {
    return hook.failing_since
      ? h("span", { class: "late" }, `enabled, failing since ${when(hook.failing_since)}`)
      : h("span", { class: "ok" }, "enabled");
  }
  return h("span", { class: "late" }, `disabled${hook.disabled_reason ? ": " + hook.disabled_reason : ""}`);
}

const hookHref = (id) => `#/partners/webhooks/${encodeURIComponent(id)}`;

// --- the event types a subscription may name (GET /v1/schemas: public, no data) -------------

function knownTypes(input) {
  return h(
    "details",
    {},
    h("summary", {}, "Known event types"),
    async_block(async () => {
      const index = await api("/v1/schemas");
      return table({
        caption: "Public event types (patterns: * one token, a final > the rest)",
        columns: [
          { label: "Type", value: (t) => h("code", {}, t.type) },
          { label: "From", value: (t) => t.producer },
          { label: "What", value: (t) => t.description },
          {
            label: "Add",
            value: (t) =>
              h(
                "button",
                {
                  type: "button",
                  class: "secondary",
                  "aria-label": `Add ${t.type}`,
                  onclick: () => {
                    const have = words(input.value);
                    if (!have.includes(t.type)) input.value = [...have, t.type].join(", ");
                    input.focus();
                  },
                },
                "Add",
              ),
          },
        ],
        rows: index.items,
      });
    }),
  );
}

// --- the list of subscriptions and the form to subscribe ------------------------------------

function subscriptions(ctx) {
  const list = pagedTable({
    path: "/v1/webhooks",
    caption: "Webhook subscriptions",
    empty: "No subscriptions yet.",
    columns: [
      { label: "URL", value: (w) => h("a", { href: hookHref(w.id) }, w.url) },
      { label: "Event types", value: (w) => w.event_types.join(", ") },
      { label: "Description", value: (w) => w.description || "—" },
      { label: "State", value: subscriptionState },
      { label: "Partner", value: (w) => w.partner_id || "staff" },
      { label: "Created", value: (w) => when(w.created_at) },
    ],
  });
  const parts = [list.node];
  if (ctx.can("webhooks:write")) parts.unshift(subscribeForm(list.reload));
  return section("Webhook subscriptions", ...parts);
}

function subscribeForm(reload) {
  const url = h("input", { name: "url", type: "url", required: true, size: 50, placeholder: "https://hooks.example.com/crm" });
  const types = h("input", { name: "event_types", type: "text", required: true, size: 50 });
  const description = h("input", { name: "description", type: "text", size: 30 });
  const rate = h("input", { name: "rate_limit", type: "number", min: "0.01", step: "any", size: 8 });
  const result = h("div", {});
  const node = form(
    { "aria-labelledby": "subscribe-title" },
    [
      h("h3", { id: "subscribe-title" }, "Subscribe a webhook"),
      h(
        "div",
        { class: "row" },
        field("URL", url, "https://, or a host the operator allows"),
        field("Event types", types, "comma-separated: crm.identify.customer.created, crm.identify.transaction.*"),
      ),
      h(
        "div",
        { class: "row" },
        field("Description", description),
        field("Rate limit (deliveries a second)", rate),
        h("button", { type: "submit" }, "Subscribe"),
      ),
      knownTypes(types),
    ],
    async (data) => {
      clear(result);
      const body = { url: String(data.get("url")).trim(), event_types: words(data.get("event_types")) };
      if (String(data.get("description")).trim()) body.description = String(data.get("description")).trim();
      if (String(data.get("rate_limit")).trim()) body.rate_limit = Number(data.get("rate_limit"));
      const made = await api("/v1/webhooks", { method: "POST", json: body });
      clear(
        result,
        secretBox("Signing secret", made.secret, "Keep it to verify the signatures of the deliveries: it is not shown again."),
        h("p", {}, h("a", { href: hookHref(made.id) }, `Open the subscription to ${made.url} and its delivery log`)),
      );
      url.value = "";
      types.value = "";
      description.value = "";
      rate.value = "";
      reload();
      return `Subscribed ${made.url}.`;
    },
  );
  return h("div", {}, node, result);
}

// --- one subscription -------------------------------------------------------------------------

function details(hook) {
  const rows = [
    ["URL", hook.url],
    ["Event types", hook.event_types.join(", ")],
    ["Description", hook.description || "—"],
    ["State", subscriptionState(hook)],
    ["Rate limit", hook.rate_limit ? `${num(hook.rate_limit)} a second` : "none"],
    ["Personal fields", hook.pii ? "delivered (its maker held pii:read)" : "null (its maker lacked pii:read)"],
    ["Partner", hook.partner_id || "staff"],
    ["Old secret signs until", hook.previous_secret_expires_at ? when(hook.previous_secret_expires_at) : "—"],
    ["Created", when(hook.created_at)],
    ["Updated", when(hook.updated_at)],
    ["Id", hook.id],
  ];
  return h(
    "dl",
    { "data-testid": "subscription", class: "facts" },
    rows.map(([label, value]) => [h("dt", {}, h("strong", {}, label)), h("dd", {}, value)]),
  );
}

function editForm(hook, redraw) {
  const url = h("input", { name: "url", type: "url", required: true, size: 50, value: hook.url });
  const types = h("input", { name: "event_types", type: "text", required: true, size: 50, value: hook.event_types.join(", ") });
  const description = h("input", { name: "description", type: "text", size: 30, value: hook.description || "" });
  const rate = h("input", { name: "rate_limit", type: "number", min: "0.01", step: "any", size: 8, value: hook.rate_limit ?? "" });
  return h(
    "details",
    {},
    h("summary", {}, "Change the subscription"),
    form(
      { "aria-label": "Change the subscription" },
      [
        h("div", { class: "row" }, field("URL", url), field("Event types", types, "comma-separated types or patterns")),
        h(
          "div",
          { class: "row" },
          field("Description", description),
          field("Rate limit (deliveries a second)", rate),
          h("button", { type: "submit" }, "Save"),
        ),
      ],
      async (data) => {
        const body = { url: String(data.get("url")).trim(), event_types: words(data.get("event_types")) };
        const text = String(data.get("description")).trim();
        if (text) body.description = text;
        if (String(data.get("rate_limit")).trim()) body.rate_limit = Number(data.get("rate_limit"));
        const saved = await api(`/v1/webhooks/${encodeURIComponent(hook.id)}`, { method: "PATCH", json: body });
        redraw(saved);
        return "Saved.";
      },
    ),
  );
}

function replayForm(hook, afterReplay) {
  const after = h("input", { name: "after", type: "text", inputmode: "numeric", pattern: "[0-9]{1,19}", size: 12 });
  const since = h("input", { name: "since", type: "datetime-local", step: "1" });
  return form(
    { "aria-labelledby": "replay-title" },
    [
      h("h3", { id: "replay-title" }, "Replay"),
      h(
        "p",
        { class: "muted" },
        "Send again everything this subscription matches from a point on: after a cursor (an event's stream " +
          "sequence, as the log's Cursor column and GET /v1/events give; 0 is the start), or since a time. " +
          "Give one of the two.",
      ),
      h(
        "div",
        { class: "row" },
        field("After cursor", after),
        field("Or since (your local time)", since),
        h("button", { type: "submit" }, "Replay"),
      ),
    ],
    async (data) => {
      const cursor = String(data.get("after") || "").trim();
      const time = String(data.get("since") || "").trim();
      if (Boolean(cursor) === Boolean(time)) throw new Error("Give either a cursor or a time, not both.");
      const body = cursor ? { after: cursor } : { since: new Date(time).toISOString() };
      const answer = await api(`/v1/webhooks/${encodeURIComponent(hook.id)}/replay`, { method: "POST", json: body });
      afterReplay();
      const from = cursor ? `after cursor ${answer.after}` : `since ${when(answer.since)}`;
      return `Replay started ${from}; the oldest cursor the stream keeps is ${answer.oldest}.`;
    },
  );
}

async function subscriptionView(ctx, id) {
  const hook = await api(`/v1/webhooks/${encodeURIComponent(id)}`);
  const canWrite = ctx.can("webhooks:write");
  const path = `/v1/webhooks/${encodeURIComponent(id)}`;

  const about = h("div", {}, details(hook));
  const actionStatus = h("p", { role: "status" });
  const secretArea = h("div", {});
  const confirm = confirmArea();
  let current = hook;

  function redraw(saved) {
    current = saved;
    clear(about, details(saved));
    clear(actions, actionButtons());
  }

  function actionButtons() {
    if (!canWrite) return [];
    const toggle = h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: async () => {
          clear(actionStatus);
          try {
            redraw(await api(path, { method: "PATCH", json: { enabled: !current.enabled } }));
            clear(actionStatus, h("span", { class: "ok" }, current.enabled ? "Enabled: what it missed is delivered now." : "Paused."));
          } catch (error) {
            clear(actionStatus, h("span", { class: "error" }, error.message));
          }
        },
      },
      current.enabled ? "Pause deliveries" : "Enable again",
    );
    const rotate = h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: () =>
          confirm.ask(
            "Make a new signing secret? For the overlap (24 hours by default) each delivery carries two signatures, one per secret.",
            null,
            "Rotate the secret",
            async () => {
              const rotated = await api(`${path}/rotate-secret`, { method: "POST" });
              redraw(rotated);
              clear(secretArea, secretBox("New signing secret", rotated.secret, "Give it to the receiver: it is not shown again."));
            },
          ),
      },
      "Rotate secret…",
    );
    const remove = h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: () =>
          confirm.ask(
            "Delete this subscription? Its deliveries stop and its delivery log goes with it.",
            null,
            "Delete the subscription",
            async () => {
              await api(path, { method: "DELETE" });
              ctx.go("#/partners");
            },
          ),
      },
      "Delete…",
    );
    return [toggle, rotate, remove];
  }
  const actions = h("div", { class: "row" }, actionButtons());

  const retryStatus = h("p", { role: "status" });
  const log = pagedTable({
    path: `${path}/deliveries`,
    caption: "Delivery attempts, newest first",
    empty: "No deliveries yet: they start with what is published after the subscription was made (older events: replay).",
    columns: [
      { label: "When", value: (d) => when(d.attempted_at) },
      { label: "Event type", value: (d) => d.event_type },
      { label: "Event", value: (d) => h("code", {}, d.event_id) },
      { label: "Cursor", value: (d) => d.sequence, numeric: true },
      { label: "Attempt", value: (d) => String(d.attempt), numeric: true },
      { label: "Outcome", value: (d) => outcomePill(d.outcome) },
      { label: "Status", value: (d) => (d.status_code == null ? "—" : String(d.status_code)), numeric: true },
      { label: "Latency (ms)", value: (d) => num(d.latency_ms, 0), numeric: true },
      {
        label: "Answer or error",
        value: (d) =>
          d.error || d.response_body
            ? h("details", {}, h("summary", {}, d.error ? "Error" : "Answer"), h("code", {}, d.error || d.response_body))
            : "—",
      },
      { label: "Next attempt", value: (d) => (d.next_attempt_at ? when(d.next_attempt_at) : "—") },
      ...(canWrite
        ? [
            {
              label: "Retry",
              value: (d) =>
                h(
                  "button",
                  {
                    type: "button",
                    class: "secondary",
                    "aria-label": `Retry attempt ${d.attempt} of event ${d.event_id}`,
                    onclick: async (event) => {
                      event.currentTarget.disabled = true;
                      clear(retryStatus, "Retrying…");
                      try {
                        const made = await api(`${path}/deliveries/${encodeURIComponent(d.id)}/retry`, { method: "POST" });
                        const code = made.status_code ? ` (${made.status_code})` : "";
                        clear(
                          retryStatus,
                          h(
                            "span",
                            { class: made.outcome === "delivered" ? "ok" : "error" },
                            `Retried event ${made.event_id}: ${made.outcome}${code}.`,
                          ),
                        );
                        log.reload();
                      } catch (error) {
                        clear(retryStatus, h("span", { class: "error" }, error.message));
                      }
                    },
                  },
                  "Retry",
                ),
            },
          ]
        : []),
    ],
  });

  return h(
    "div",
    {},
    h("h1", {}, "Webhook subscription"),
    h("p", {}, h("a", { href: "#/partners" }, "← All subscriptions")),
    about,
    actions,
    confirm.node,
    actionStatus,
    secretArea,
    canWrite ? editForm(hook, redraw) : null,
    section(
      "Delivery log",
      h("p", {}, h("button", { type: "button", onclick: () => log.reload() }, "Refresh the log")),
      retryStatus,
      log.node,
      canWrite ? replayForm(hook, () => log.reload()) : null,
    ),
  );
}

// --- stakeholders -----------------------------------------------------------------------------

function stakeholders() {
  const kind = h(
    "select",
    { name: "kind" },
    h("option", { value: "" }, "Any"),
    STAKEHOLDER_KINDS.map((k) => h("option", { value: k }, k)),
  );
  const q = h("input", { name: "q", type: "search", size: 24 });
  const list = pagedTable({
    path: "/v1/stakeholders",
    query: () => ({ kind: kind.value, q: q.value.trim() }),
    caption: "Stakeholders",
    empty: "No stakeholders match.",
    columns: [
      { label: "Name", value: (s) => s.name },
      { label: "Kind", value: (s) => h("span", { class: "pill" }, s.kind) },
      { label: "Organisation", value: (s) => s.organisation || "—" },
      { label: "Email", value: (s) => s.email || "—" },
      { label: "Id", value: (s) => h("code", {}, s.id) },
      { label: "Since", value: (s) => when(s.created_at) },
    ],
  });
  const filters = h(
    "form",
    { class: "row", "aria-label": "Filter stakeholders" },
    field("Kind", kind),
    field("Name contains", q),
    h("button", { type: "submit", class: "secondary" }, "Filter"),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    list.reload();
  });
  kind.addEventListener("change", () => list.reload());
  return section(
    "Stakeholders",
    h("p", { class: "muted" }, "The network's partners, resellers, suppliers, employees, investors and owners."),
    filters,
    list.node,
  );
}

// --- the page ---------------------------------------------------------------------------------

export default {
  id: "partners",
  title: "Partners",
  scopes: ["webhooks:read", "network:read"],
  async render(ctx) {
    const [view, id] = ctx.params;
    if (view === "webhooks" && id) {
      if (!ctx.can("webhooks:read")) return h("div", {}, h("h1", {}, "Webhook subscription"), errorBox("Your role cannot see webhooks."));
      return subscriptionView(ctx, id);
    }
    return h(
      "div",
      {},
      h("h1", {}, "Partners"),
      h(
        "p",
        { class: "muted" },
        "Partner systems follow the CRM through its events, pushed to them as signed webhooks (Standard Webhooks).",
      ),
      ctx.can("webhooks:read") ? subscriptions(ctx) : null,
      ctx.can("network:read") ? stakeholders() : null,
    );
  },
};
