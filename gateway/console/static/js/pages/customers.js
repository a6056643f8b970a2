// Customers: search as you type over `q` with facets, sort and export; the customer page (profile,
// scores with evidence, stage history, timeline, offers, tickets, consent, feedback, network,
// referrals); merge candidates with a merge button.

import { api, ApiError } from "../api.js";
import { async_block, clear, debounce, errorBox, h, money, num, pct, section, table, when } from "../dom.js";
import { vocabulary } from "../vocabulary.js";

const SORTS = [
  ["", "Oldest first"],
  ["name", "Name A–Z"],
  ["-name", "Name Z–A"],
  ["-clv", "Highest CLV"],
  ["clv", "Lowest CLV"],
  ["-last_purchase", "Most recent purchase"],
  ["-created_at", "Newest"],
];
const MIN_Q = 3;
const PAGE = 25;

function customerLink(customer) {
  return h("a", { href: `#/customers/${encodeURIComponent(customer.id)}` }, customer.name || customer.email || customer.external_id || customer.id);
}

const columns = [
  { label: "Customer", value: customerLink },
  { label: "Email", value: (c) => c.email },
  { label: "Segment", value: (c) => c.scores?.segment },
  { label: "Kinds", value: (c) => (c.scores?.kinds || []).join(", ") },
  { label: "Predicted CLV", value: (c) => money(c.scores?.predicted_clv), numeric: true },
  { label: "Purchases", value: (c) => num(c.purchase_count), numeric: true },
];

function select(id, label, options, value) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("select", { id, name: id }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))),
  );
}

function listView(ctx) {
  const q0 = ctx.query;
  const search = h("input", { id: "q", name: "q", type: "search", value: q0.get("q") || "", autocomplete: "off", "aria-describedby": "q-help", maxlength: 200 });
  const filters = h(
    "div",
    { class: "row" },
    h("label", { for: "q" }, "Search customers", search),
    select("segment", "Segment", [["", "Any"], ...vocabulary.segments.map((s) => [s, s.replaceAll("_", " ")])], q0.get("segment") || ""),
    select("kind", "Kind", [["", "Any"], ...vocabulary.kinds.map((k) => [k, k.replaceAll("_", " ")])], q0.get("kind") || ""),
    ctx.can("lifecycle:read") ? select("stage", "Stage", [["", "Any"], ...vocabulary.stages.map((s) => [s, s.replace("_", " ")])], q0.get("stage") || "") : null,
    h("label", { for: "min_clv" }, "CLV from", h("input", { id: "min_clv", name: "min_clv", type: "number", min: 0, step: "any", value: q0.get("min_clv") || "", size: 8 })),
    h("label", { for: "max_clv" }, "CLV to", h("input", { id: "max_clv", name: "max_clv", type: "number", min: 0, step: "any", value: q0.get("max_clv") || "", size: 8 })),
    select("sort", "Sort", SORTS, q0.get("sort") || ""),
  );
  const help = h("p", { id: "q-help", class: "muted" }, `Part of a name, email, phone or external id (at least ${MIN_Q} characters).`);
  const status = h("p", { role: "status", "aria-live": "polite", "data-testid": "search-status" });
  const results = h("div", { "data-testid": "results" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  const exportButton = h("button", { type: "button", class: "secondary" }, "Export CSV");
  const exportStatus = h("span", { role: "status", class: "muted" });
  let controller = null;
  let cursor = null;
  let shown = [];

  const value = (id) => filters.querySelector(`#${id}`)?.value.trim() || "";
  const query = () => {
    const q = value("q");
    return {
      q: q.length >= MIN_Q ? q : undefined,
      segment: value("segment"),
      kind: value("kind"),
      min_clv: value("min_clv"),
      max_clv: value("max_clv"),
      sort: value("sort"),
    };
  };

  // With a stage, the list is lifecycle's customers in that stage (a page of ids), each looked up in identify.
  async function stagePage(stage, after, signal) {
    const page = await api("/v1/lifecycle/customers", { query: { stage, limit: PAGE, cursor: after }, signal });
    const found = await Promise.all(
      page.items.map((item) => api(`/v1/customers/${encodeURIComponent(item.customer_id)}`, { signal }).catch(() => null)),
    );
    return { items: found.filter(Boolean), next_cursor: page.next_cursor };
  }

  async function run(append = false) {
    if (controller) controller.abort(); // a newer keystroke wins; the older answer is dropped
    controller = new AbortController();
    const signal = controller.signal;
    const q = value("q");
    if (q && q.length < MIN_Q) {
      status.textContent = `Type at least ${MIN_Q} characters.`;
      return;
    }
    status.textContent = "Searching…";
    try {
      const stage = value("stage");
      const page = stage
        ? await stagePage(stage, append ? cursor : undefined, signal)
        : await api("/v1/customers", { query: { ...query(), limit: PAGE, cursor: append ? cursor : undefined }, signal });
      shown = append ? shown.concat(page.items) : page.items;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      clear(results, table({ columns, rows: shown, caption: "Customers", empty: "No customer matches." }));
      status.textContent = `${shown.length}${cursor ? "+" : ""} customer${shown.length === 1 ? "" : "s"} shown.`;
    } catch (error) {
      if (error.name === "AbortError") return;
      status.textContent = "";
      clear(results, errorBox(error));
    }
  }

  const typed = debounce(() => run(false), 120);
  search.addEventListener("input", typed);
  filters.addEventListener("change", (event) => {
    if (event.target !== search) run(false);
  });
  more.addEventListener("click", () => run(true));
  exportButton.addEventListener("click", async () => {
    exportStatus.textContent = "Preparing the file…";
    try {
      const answer = await api("/v1/customers/export", { query: { ...query(), format: "csv" }, raw: true });
      const url = URL.createObjectURL(await answer.blob());
      const link = h("a", { href: url, download: "customers.csv" }, "customers.csv");
      clear(exportStatus, "Ready: ", link);
      link.click();
    } catch (error) {
      exportStatus.textContent = error.message;
    }
  });
  run(false);
  return h(
    "div",
    {},
    h("h1", {}, "Customers"),
    filters,
    help,
    h("div", { class: "row" }, exportButton, exportStatus),
    status,
    results,
    more,
  );
}

// A section that fetches `path` and shows its items (or the answer) as a table; left out
// without the scope, and "none" on a 404.
function part(ctx, title, scope, path, columnsOf, pick = (answer) => answer.items) {
  if (!ctx.can(scope)) return null;
  return section(
    title,
    async_block(async () => {
      let answer;
      try {
        answer = await api(path);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return h("p", { class: "muted" }, "None.");
        throw error;
      }
      return table({ columns: columnsOf, rows: pick(answer) || [], caption: title, hideCaption: true });
    }),
  );
}

function evidenceList(evidence) {
  const entries = Object.entries(evidence || {});
  if (!entries.length) return h("p", { class: "muted" }, "No evidence recorded.");
  return h(
    "dl",
    {},
    entries.map(([kind, detail]) => [h("dt", {}, kind.replaceAll("_", " ")), h("dd", {}, typeof detail === "string" ? detail : JSON.stringify(detail))]),
  );
}

function scoresPart(customer) {
  const s = customer.scores;
  if (!s) return section("Scores", h("p", { class: "muted" }, "Not scored yet: the next refit scores this customer."));
  return section(
    "Scores",
    table({
      caption: "Scores",
      columns: [
        { label: "Score", value: (r) => r[0] },
        { label: "Value", value: (r) => r[1], numeric: true },
      ],
      rows: [
        ["Segment", s.segment],
        ["Recency / frequency / monetary", `${s.recency ?? "—"} / ${s.frequency ?? "—"} / ${s.monetary ?? "—"}`],
        ["Historic CLV", money(s.historic_clv)],
        ["Predicted CLV", money(s.predicted_clv)],
        ["Expected purchases", num(s.expected_purchases, 2)],
        ["Probability alive", pct(s.probability_alive)],
        ["Kinds", s.kinds.join(", ") || "none"],
        ["Scored", when(s.scored_at)],
      ],
    }),
    h("h3", {}, "Evidence"),
    evidenceList(s.evidence),
  );
}

function mergePart(ctx, customer) {
  if (!ctx.can("customers:read")) return null;
  return section(
    "Possible duplicates",
    async_block(async () => {
      const answer = await api(`/v1/customers/${encodeURIComponent(customer.id)}/duplicates`);
      return table({
        caption: "Merge candidates",
        hideCaption: true,
        empty: "No likely duplicates.",
        columns: [
          { label: "Customer", value: (d) => customerLink(d.customer) },
          { label: "Email", value: (d) => d.customer.email },
          { label: "Score", value: (d) => num(d.score, 2), numeric: true },
          { label: "Why", value: (d) => d.reasons.join(", ") },
          {
            label: "Merge",
            value: (d) =>
              ctx.can("customers:write")
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "secondary",
                      "aria-label": `Merge ${d.customer.name || d.customer.id} into this customer`,
                      onclick: async (event) => {
                        const button = event.currentTarget;
                        if (!confirm(`Merge ${d.customer.name || d.customer.id} into ${customer.name || customer.id}?`)) return;
                        button.disabled = true;
                        try {
                          await api(`/v1/customers/${encodeURIComponent(customer.id)}/merge`, { method: "POST", json: { merge: [d.customer.id] } });
                          button.replaceWith(h("span", { class: "ok" }, "Merged"));
                        } catch (error) {
                          button.disabled = false;
                          button.after(errorBox(error));
                        }
                      },
                    },
                    "Merge into this one",
                  )
                : "—",
          },
        ],
        rows: answer.items,
      });
    }),
  );
}

function timelinePart(ctx, id) {
  if (!ctx.can("interactions:read")) return null;
  const list = h("ol", { class: "timeline", "data-testid": "timeline" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older");
  let cursor;
  const load = async () => {
    const page = await api(`/v1/customers/${encodeURIComponent(id)}/timeline`, { query: { limit: 25, cursor } });
    for (const item of page.items) {
      list.append(h("li", { class: "list-item" }, h("time", { datetime: item.time }, when(item.time)), " — ", item.summary, " ", h("span", { class: "pill" }, item.type)));
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (!list.children.length) list.append(h("li", { class: "muted" }, "Nothing on the timeline yet."));
  };
  more.addEventListener("click", () => load().catch((error) => more.after(errorBox(error))));
  return section("Timeline", async_block(async () => {
    await load();
    return h("div", {}, list, more);
  }));
}

async function customerView(ctx, id) {
  const customer = await api(`/v1/customers/${encodeURIComponent(id)}`);
  const enc = encodeURIComponent(id);
  const title = customer.name || customer.email || customer.external_id || customer.id;
  return h(
    "div",
    {},
    h("p", {}, h("a", { href: "#/customers" }, "← Customers")),
    h("h1", {}, title),
    customer.merged_into
      ? h("p", { class: "error" }, "This customer was merged into ", h("a", { href: `#/customers/${encodeURIComponent(customer.merged_into)}` }, customer.merged_into), ".")
      : null,
    section(
      "Profile",
      table({
        caption: "Profile",
        hideCaption: true,
        columns: [
          { label: "Field", value: (r) => r[0] },
          { label: "Value", value: (r) => r[1] },
        ],
        rows: [
          ["Name", customer.name],
          ["Email", customer.email],
          ["Phone", customer.phone],
          ["External id", customer.external_id],
          ["Purchases", num(customer.purchase_count)],
          ["Referral code", customer.referral_code],
          ["Referred by", customer.referred_by],
          ["Marketing", customer.suppressed ? "suppressed" : "allowed"],
          ["Created", when(customer.created_at)],
        ],
      }),
    ),
    scoresPart(customer),
    part(ctx, "Stage history", "customers:read", `/v1/customers/${enc}/lifecycle`, [
      { label: "From", value: (t) => t.from || "—" },
      { label: "To", value: (t) => t.to },
      { label: "When", value: (t) => when(t.at) },
      { label: "Why", value: (t) => t.rule },
    ], (answer) => answer.history),
    timelinePart(ctx, id),
    part(ctx, "Offers", "offers:read", `/v1/customers/${enc}/offers`, [
      { label: "Offer", value: (o) => o.title || o.name || o.template_id || o.id },
      { label: "Status", value: (o) => o.status },
      { label: "Issued", value: (o) => when(o.issued_at || o.created_at) },
    ]),
    part(ctx, "Tickets", "tickets:read", `/v1/customers/${enc}/tickets`, [
      { label: "Subject", value: (t) => (ctx.can("tickets:read") ? h("a", { href: `#/lifecycle/tickets/${encodeURIComponent(t.id)}` }, t.subject || t.id) : t.subject) },
      { label: "Status", value: (t) => t.status },
      { label: "Priority", value: (t) => t.priority },
    ]),
    part(ctx, "Consent", "consent:read", `/v1/customers/${enc}/consent`, [
      { label: "Purpose", value: (c) => c.purpose },
      { label: "Channel", value: (c) => c.channel },
      { label: "Granted", value: (c) => (c.granted ? "yes" : "no") },
      { label: "Legal basis", value: (c) => c.legal_basis },
      { label: "Changed", value: (c) => when(c.changed_at || c.recorded_at) },
    ], (answer) => answer.items || answer.current || answer.ledger),
    part(ctx, "Feedback", "feedback:read", `/v1/customers/${enc}/feedback`, [
      { label: "When", value: (r) => when(r.submitted_at || r.created_at) },
      { label: "NPS", value: (r) => r.nps, numeric: true },
      { label: "CSAT", value: (r) => r.csat, numeric: true },
      { label: "CES", value: (r) => r.ces, numeric: true },
      { label: "Channel", value: (r) => r.channel },
    ]),
    part(ctx, "Network", "network:read", `/v1/customers/${enc}/relations`, [
      { label: "Stakeholder", value: (r) => r.stakeholder_id },
      { label: "Kind", value: (r) => r.stakeholder_kind },
      { label: "Relation", value: (r) => r.relation },
      { label: "Since", value: (r) => when(r.started_at) },
      { label: "Until", value: (r) => (r.ended_at ? when(r.ended_at) : "current") },
    ]),
    part(ctx, "Referrals", "customers:read", `/v1/customers/${enc}/referrals`, [
      { label: "Referred", value: (r) => h("a", { href: `#/customers/${encodeURIComponent(r.referred_id)}` }, r.referred_id) },
      { label: "Status", value: (r) => r.status },
      { label: "Recorded", value: (r) => when(r.recorded_at) },
    ]),
    mergePart(ctx, customer),
  );
}

export default {
  id: "customers",
  title: "Customers",
  scopes: ["customers:read"],
  render(ctx) {
    return ctx.params.length ? customerView(ctx, ctx.params[0]) : listView(ctx);
  },
};

