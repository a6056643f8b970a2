// Lifecycle: the stage funnel, the cohort retention heatmap, customers by CLV at risk, the
// ticket queue with its SLA countdowns (and a ticket's page: #/lifecycle/tickets/<id>), and the
// loyalty tiers. Each section only for the scope that reads it (lifecycle:read, tickets:read,
// loyalty:read); answering and moving a ticket only with tickets:write. API: docs/lifecycle.md.

import { api, apiAll } from "../api.js";
import { async_block, chart, clear, day, errorBox, form, h, num, pct, section, table, when } from "../dom.js";
import { vocabulary } from "../vocabulary.js";

const STATUSES = ["new", "open", "pending", "solved", "closed"];
const WAITING = ["new", "open", "pending"]; // a queue's default: tickets someone still has to act on
const PRIORITIES = ["low", "normal", "high", "urgent"];
// The moves PATCH /v1/tickets/{id} allows (docs/lifecycle.md, "Statuses").
const TRANSITIONS = {
  new: ["open", "pending", "solved", "closed"],
  open: ["pending", "solved", "closed"],
  pending: ["open", "solved", "closed"],
  solved: ["open", "closed"],
  closed: [],
};
const REFRESH_MS = 30_000;
const DAY_MS = 86_400_000;

export default {
  id: "lifecycle",
  title: "Lifecycle",
  scopes: ["lifecycle:read", "tickets:read", "loyalty:read"],
  render(ctx) {
    const [view, id] = ctx.params;
    if (view === "tickets" && id && ctx.can("tickets:read")) return ticketPage(ctx, id);
    if (view === "tickets" && ctx.can("tickets:read")) {
      return keepCounting(h("div", {}, h("h1", {}, "Ticket queue"), overviewLink(), ticketQueue(ctx, { heading: false })));
    }
    return overview(ctx);
  },
};

function overview(ctx) {
  return keepCounting(
    h(
      "div",
      {},
      h("h1", {}, "Lifecycle"),
      ctx.can("lifecycle:read") ? funnelSection() : null,
      ctx.can("lifecycle:read") ? cohortSection(ctx) : null,
      ctx.can("lifecycle:read") ? atRiskSection() : null,
      ctx.can("tickets:read") ? ticketQueue(ctx, { heading: true }) : null,
      ctx.can("loyalty:read") ? loyaltySection() : null,
    ),
  );
}

function overviewLink() {
  return h("p", {}, h("a", { href: "#/lifecycle" }, "← Lifecycle overview"));
}

// --- small helpers of this page -------------------------------------------------------------

let fieldSeq = 0;

// A labelled control: the label wraps it and names it (console.css lays labels out as columns).
function labelled(text, control) {
  if (!control.id) control.id = `lc-${++fieldSeq}`;
  return h("label", { for: control.id }, text, control);
}

// A form that only chooses what a section shows: its submit reloads the section in place.
function filterForm(label, children, onSubmit) {
  const node = h("form", { class: "row", "aria-label": label }, children);
  node.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(new FormData(node));
  });
  return node;
}

function select(name, options, selected) {
  return h(
    "select",
    { name },
    options.map(([value, text]) => h("option", { value, selected: value === selected }, text)),
  );
}

function words(value) {
  return value === undefined || value === null || value === "" ? "—" : String(value).replaceAll("_", " ");
}

function customerLink(customerId, label) {
  return h("a", { href: `#/customers/${encodeURIComponent(customerId)}` }, label || customerId);
}

function ticketLink(ticket) {
  return h("a", { href: `#/lifecycle/tickets/${encodeURIComponent(ticket.id)}` }, ticket.subject || "(no subject)");
}

// One decimal of a percentage, half up: what the cohort table shows and a test can recompute
// (Python: math.floor(share * 1000 + 0.5) / 10, formatted with one decimal).
function percent1(share) {
  return `${(Math.round(share * 1000) / 10).toFixed(1)}%`;
}

// --- SLA countdowns ---------------------------------------------------------------------------

function span(minutes) {
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 24 * 60) {
    const m = minutes % 60;
    return m ? `${Math.floor(minutes / 60)} h ${m} min` : `${Math.floor(minutes / 60)} h`;
  }
  const hours = Math.floor(minutes / 60) % 24;
  return hours ? `${Math.floor(minutes / 1440)} d ${hours} h` : `${Math.floor(minutes / 1440)} d`;
}

// "2 h 10 min left" or "late by 5 min", from a due time and now.
export function countdown(due, now = Date.now()) {
  const ms = new Date(due).getTime() - now;
  const minutes = Math.floor(Math.abs(ms) / 60_000);
  if (ms > 0) return { text: minutes ? `${span(minutes)} left` : "under 1 min left", late: false };
  return { text: minutes ? `late by ${span(minutes)}` : "late by under 1 min", late: true };
}

function paintCountdown(node, now = Date.now()) {
  const { text, late } = countdown(node.dataset.due, now);
  node.textContent = text;
  node.className = late ? "countdown late" : "countdown";
}

function countdownNode(due) {
  const node = h("time", { datetime: due, "data-due": due, title: `Due ${when(due)}` });
  paintCountdown(node);
  return node;
}

// A ticket's SLA timer as text: a countdown while it runs, else what became of it.
function slaCell(ticket, kind) {
  if (kind === "first_response") {
    if (ticket.first_response_at) {
      return ticket.first_response_breached_at
        ? h("span", { class: "late" }, "answered late")
        : h("span", { class: "ok" }, "answered in time");
    }
    if (ticket.first_response_due_at) return countdownNode(ticket.first_response_due_at);
    if (ticket.first_response_breached_at) return h("span", { class: "late" }, "missed");
    if (ticket.solved_at || ticket.closed_at) return h("span", { class: "muted" }, "not answered");
  } else {
    if (ticket.solved_at || ticket.closed_at) {
      return ticket.resolution_breached_at
        ? h("span", { class: "late" }, "solved late")
        : h("span", { class: "ok" }, "solved");
    }
    if (ticket.resolution_due_at) return countdownNode(ticket.resolution_due_at);
    if (ticket.resolution_breached_at) return h("span", { class: "late" }, "missed");
  }
  return h("span", { class: "muted" }, ticket.status === "pending" ? "paused" : "no SLA");
}

// Repaints every countdown under `root` every 30 s while the page is shown; stops when the
// user leaves it (any route change renders a new page with its own timer) or it is gone.
function keepCounting(root) {
  let timer = null;
  const stop = () => {
    clearInterval(timer);
    window.removeEventListener("hashchange", stop);
  };
  timer = setInterval(() => {
    if (!root.isConnected) return stop();
    const now = Date.now();
    root.querySelectorAll("[data-due]").forEach((node) => paintCountdown(node, now));
  }, REFRESH_MS);
  window.addEventListener("hashchange", stop);
  return root;
}

// --- the funnel ---------------------------------------------------------------------------------

const WINDOWS = [
  ["", "All time"],
  ["7", "Last 7 days"],
  ["30", "Last 30 days"],
  ["90", "Last 90 days"],
  ["365", "Last 365 days"],
];

function funnelSection() {
  const box = h("div");
  const load = (days) =>
    clear(
      box,
      async_block(async () => {
        const from = days ? new Date(Date.now() - Number(days) * DAY_MS).toISOString() : undefined;
        return funnelView(await api("/v1/lifecycle/funnel", { query: { from } }));
      }),
    );
  const controls = filterForm(
    "Funnel window",
    [labelled("Window", select("days", WINDOWS, "")), h("button", { type: "submit", class: "secondary" }, "Show funnel")],
    (data) => load(data.get("days")),
  );
  load("");
  return section("Stage funnel", controls, box);
}

function funnelView(funnel) {
  const stages = funnel.stages;
  const moves = funnel.moves.filter((m) => m.moved > 0);
  const window = funnel.from ? `${when(funnel.from)} to ${when(funnel.to)}` : `all time to ${when(funnel.to)}`;
  return h(
    "div",
    {},
    chart({
      caption: `Customers entering each stage, ${window}, and in each stage at its end`,
      summary: stages.map((s) => `${words(s.stage)}: ${s.customers} entered, ${s.in_stage} now`).join("; "),
      testid: "funnel-chart",
      traces: [
        {
          type: "bar",
          name: "Customers who entered",
          x: stages.map((s) => words(s.stage)),
          y: stages.map((s) => s.customers),
          marker: { color: "#1f3a5f" },
        },
        {
          type: "bar",
          name: "In the stage at the end",
          x: stages.map((s) => words(s.stage)),
          y: stages.map((s) => s.in_stage),
          marker: { color: "#e08a00" },
        },
      ],
      layout: { barmode: "group", yaxis: { title: { text: "customers" }, rangemode: "tozero" }, legend: { orientation: "h" } },
      columns: [
        { label: "Stage", value: (s) => words(s.stage) },
        { label: "Entries", value: (s) => num(s.entered), numeric: true },
        { label: "Customers who entered", value: (s) => num(s.customers), numeric: true },
        { label: "In the stage at the end", value: (s) => num(s.in_stage), numeric: true },
      ],
      rows: stages,
    }),
    h("h3", {}, "Moves between stages"),
    table({
      caption: "Of the entries into a stage in the window, how many moved on to the next, and after how long",
      empty: "No customer moved from one stage to another in this window.",
      columns: [
        { label: "From", value: (m) => words(m.from) },
        { label: "To", value: (m) => words(m.to) },
        { label: "Moved", value: (m) => num(m.moved), numeric: true },
        { label: "Conversion", value: (m) => pct(m.conversion), numeric: true },
        { label: "Median days before", value: (m) => num(m.median_days, 1), numeric: true },
      ],
      rows: moves.sort((a, b) => vocabulary.stages.indexOf(a.from) - vocabulary.stages.indexOf(b.from) || b.moved - a.moved),
    }),
  );
}

// --- the cohort heatmap ---------------------------------------------------------------------------

function cohortSection(ctx) {
  const box = h("div");
  const first = h("input", { type: "month", name: "from", value: ctx.query.get("cohort_from") || "" });
  const last = h("input", { type: "month", name: "to", value: ctx.query.get("cohort_to") || "" });
  const load = (from, to) =>
    clear(
      box,
      async_block(async () =>
        cohortView(await api("/v1/lifecycle/cohorts", { query: { by: "month", from, to } })),
      ),
    );
  const controls = filterForm(
    "Cohorts to show",
    [
      labelled("First cohort (YYYY-MM)", first),
      labelled("Last cohort (YYYY-MM)", last),
      h("button", { type: "submit", class: "secondary" }, "Show cohorts"),
    ],
    (data) => load(String(data.get("from") || ""), String(data.get("to") || "")),
  );
  load(first.value, last.value);
  return section(
    "Cohort retention",
    h("p", { class: "muted" }, "Customers grouped by the month of their first purchase: the share of each cohort buying again k months later."),
    controls,
    box,
  );
}

function cohortView(matrix) {
  const cohorts = matrix.cohorts;
  if (!cohorts.length) return h("p", { class: "muted" }, "No customer made a first purchase in these months.");
  const width = Math.max(...cohorts.map((c) => c.months.length));
  const ks = Array.from({ length: width }, (_, k) => k);
  const cell = (c, k) => c.months.find((m) => m.k === k);
  const range = `${cohorts[0].cohort} to ${cohorts[cohorts.length - 1].cohort}`;
  const columns = [
    { label: "Cohort", value: (c) => h("span", { "data-testid": `cohort-${c.cohort}` }, c.cohort) },
    { label: "Size", value: (c) => h("span", { "data-testid": `cohort-${c.cohort}-size` }, String(c.size)), numeric: true },
    ...ks.map((k) => ({
      label: `Month ${k}`,
      numeric: true,
      value: (c) => {
        const m = cell(c, k);
        if (!m) return "";
        return h(
          "span",
          {
            "data-testid": `cohort-${c.cohort}-${k}`,
            "data-customers": m.customers,
            "data-share": m.share,
            title: `${m.customers} of ${c.size} customers bought in ${m.month}`,
          },
          `${percent1(m.share)} (${m.customers})`,
        );
      },
    })),
  ];
  return chart({
    caption: `Cohort retention, cohorts ${range}: share of each cohort buying in month k after its first`,
    summary: `${cohorts.length} cohorts from ${range}, ${cohorts.reduce((n, c) => n + c.size, 0)} customers; the table below has every cell`,
    testid: "cohort-heatmap",
    traces: [
      {
        type: "heatmap",
        x: ks.map((k) => `Month ${k}`),
        y: cohorts.map((c) => c.cohort),
        z: cohorts.map((c) => ks.map((k) => (cell(c, k) ? cell(c, k).share : null))),
        text: cohorts.map((c) => ks.map((k) => (cell(c, k) ? `${percent1(cell(c, k).share)}` : ""))),
        customdata: cohorts.map((c) => ks.map((k) => (cell(c, k) ? cell(c, k).customers : null))),
        texttemplate: width <= 24 && cohorts.length <= 24 ? "%{text}" : "",
        hovertemplate: "Cohort %{y}, %{x}: %{text} (%{customdata} customers)<extra></extra>",
        colorscale: "Blues",
        reversescale: true,
        zmin: 0,
        zmax: 1,
        xgap: 1,
        ygap: 1,
        colorbar: { title: { text: "share" }, tickformat: ".0%" },
      },
    ],
    layout: {
      height: Math.max(320, 60 + 30 * cohorts.length),
      yaxis: { type: "category", autorange: "reversed", title: { text: "cohort" } },
      xaxis: { type: "category", side: "top" },
      margin: { t: 40, r: 20, b: 20, l: 80 },
    },
    columns,
    rows: cohorts,
  });
}

// --- customers at risk ------------------------------------------------------------------------------

function atRiskSection() {
  const box = h("div");
  const load = (band) => clear(box, atRiskList(band));
  const controls = filterForm(
    "Customers at risk to show",
    [
      labelled("Churn band", select("band", [["", "Any band"], ["high", "High"], ["medium", "Medium"], ["low", "Low"]], "")),
      h("button", { type: "submit", class: "secondary" }, "Show customers"),
    ],
    (data) => load(data.get("band")),
  );
  load("");
  return section(
    "Customers by CLV at risk",
    h("p", { class: "muted" }, "Predicted CLV × churn risk, highest first, as the last sweep left them (only customers with a predicted CLV)."),
    controls,
    box,
  );
}

function atRiskList(band) {
  const rows = [];
  const body = h("div");
  const more = h("div");
  const columns = [
    { label: "Customer", value: (r) => customerLink(r.customer_id) },
    { label: "Stage", value: (r) => words(r.stage) },
    { label: "Churn risk", value: (r) => pct(r.churn_risk), numeric: true },
    { label: "Band", value: (r) => words(r.band) },
    { label: "Predicted CLV", value: (r) => num(r.predicted_clv, 2), numeric: true },
    { label: "CLV at risk", value: (r) => num(r.clv_at_risk, 2), numeric: true },
    {
      label: "Main driver",
      value: (r) => {
        const top = [...(r.drivers || [])].sort((a, b) => b.weight - a.weight)[0];
        return top && top.weight > 0 ? `${words(top.driver)} (${pct(top.weight)})` : "—";
      },
    },
  ];
  const page = async (cursor) => {
    const answer = await api("/v1/lifecycle/at-risk", { query: { band, limit: 20, cursor } });
    rows.push(...answer.items);
    clear(
      body,
      table({ caption: "Customers by CLV at risk", columns, rows, empty: "No scored customer is at risk in this band." }),
    );
    clear(
      more,
      answer.next_cursor
        ? h(
            "button",
            {
              type: "button",
              class: "secondary",
              onclick: (event) => {
                event.currentTarget.disabled = true;
                page(answer.next_cursor).catch((error) => clear(more, errorBox(error)));
              },
            },
            "Show more",
          )
        : null,
    );
    return h("div", {}, body, more);
  };
  return async_block(() => page(undefined));
}

// --- the ticket queue ---------------------------------------------------------------------------------

function soonestDue(ticket) {
  const dues = [ticket.first_response_due_at, ticket.resolution_due_at].filter(Boolean).map((d) => new Date(d).getTime());
  return dues.length ? Math.min(...dues) : Infinity;
}

async function loadQueue({ status, queue }) {
  const statuses = status ? [status] : WAITING;
  const lists = await Promise.all(
    statuses.map((s) => apiAll("/v1/tickets", { status: s, queue: queue || undefined, limit: 200 }, 1000)),
  );
  // The most urgent first: the nearest due time (late ones first), then the oldest.
  return lists.flat().sort((a, b) => soonestDue(a) - soonestDue(b) || a.created_at.localeCompare(b.created_at));
}

function ticketQueue(ctx, { heading }) {
  const box = h("div");
  const initial = { status: ctx.query.get("status") || "", queue: ctx.query.get("queue") || "" };
  const load = (filters) =>
    clear(
      box,
      async_block(async () => {
        const tickets = await loadQueue(filters);
        return table({
          caption: `${tickets.length} ${filters.status ? filters.status : "waiting (new, open or pending)"} tickets${
            filters.queue ? ` in queue ${filters.queue}` : ""
          }, most urgent first`,
          empty: "No ticket waits here.",
          columns: [
            { label: "Subject", value: (t) => ticketLink(t) },
            { label: "Status", value: (t) => h("span", { class: "pill" }, words(t.status)) },
            { label: "Priority", value: (t) => words(t.priority) },
            { label: "Queue", value: (t) => t.queue || "—" },
            { label: "Customer", value: (t) => customerLink(t.customer_id) },
            { label: "First response", value: (t) => slaCell(t, "first_response") },
            { label: "Resolution", value: (t) => slaCell(t, "resolution") },
            { label: "Opened", value: (t) => when(t.created_at) },
          ],
          rows: tickets,
        });
      }),
    );
  const controls = filterForm(
    "Tickets to show",
    [
      labelled(
        "Status",
        select("status", [["", "Waiting (new, open, pending)"], ...STATUSES.map((s) => [s, words(s)])], initial.status),
      ),
      labelled("Queue", h("input", { type: "search", name: "queue", value: initial.queue, autocomplete: "off" })),
      h("button", { type: "submit", class: "secondary" }, "Show tickets"),
    ],
    (data) => load({ status: String(data.get("status") || ""), queue: String(data.get("queue") || "").trim() }),
  );
  load(initial);
  const parts = [
    h("p", { class: "muted" }, "SLA countdowns refresh every 30 seconds while this page is open."),
    controls,
    box,
  ];
  return heading ? section("Ticket queue", ...parts) : h("section", { "aria-label": "Ticket queue" }, ...parts);
}

// --- one ticket ------------------------------------------------------------------------------------------

async function ticketPage(ctx, id) {
  const path = `/v1/tickets/${encodeURIComponent(id)}`;
  const ticket = await api(path);
  const title = h("h1", {}, `Ticket: ${ticket.subject || "(no subject)"}`);
  const details = h("div");
  const comments = h("div");
  const history = h("div");
  let current = ticket;
  let customerName = null;
  if (ctx.can("customers:read")) {
    try {
      const customer = await api(`/v1/customers/${encodeURIComponent(ticket.customer_id)}`);
      customerName = customer.name || customer.email || null;
    } catch {
      customerName = null; // the ticket still shows, with the customer's id
    }
  }

  const drawDetails = (t) =>
    clear(
      details,
      table({
        caption: "The ticket",
        columns: [
          { label: "Field", value: (r) => r[0] },
          { label: "Value", value: (r) => r[1] },
        ],
        rows: [
          ["Status", h("span", { class: "pill", "data-testid": "ticket-status" }, words(t.status))],
          ["Priority", words(t.priority)],
          ["Customer", customerLink(t.customer_id, customerName)],
          ["Channel", words(t.channel)],
          ["Queue", t.queue || "—"],
          ["Category", t.category || "—"],
          ["Assignee", t.assignee_id || "—"],
          ["Opened", when(t.created_at)],
          [
            "First response",
            t.first_response_at
              ? h("span", {}, `${when(t.first_response_at)} · `, slaCell(t, "first_response"))
              : slaCell(t, "first_response"),
          ],
          [
            "Resolution",
            t.solved_at ? h("span", {}, `${when(t.solved_at)} · `, slaCell(t, "resolution")) : slaCell(t, "resolution"),
          ],
          ["Handling time", `${num(t.handling_minutes)} min`],
          ["Escalated", t.escalated_at ? h("span", { class: "late" }, when(t.escalated_at)) : "no"],
        ],
      }),
    );

  const loadComments = async () => {
    const items = await apiAll(`${path}/comments`, { limit: 200 });
    return items.length
      ? h(
          "ol",
          { "aria-label": "Comments, oldest first" },
          items.map((c) =>
            h(
              "li",
              { class: "list-item", "data-testid": "ticket-comment" },
              h(
                "p",
                {},
                h("span", { class: "pill" }, c.public ? "Reply" : "Internal note"),
                " ",
                h(
                  "span",
                  { class: "muted" },
                  [when(c.created_at), c.author_id, c.minutes ? `${num(c.minutes)} min` : null].filter(Boolean).join(" · "),
                ),
              ),
              h("p", { class: "pre" }, c.body ?? "(erased)"),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No comment yet.");
  };

  const loadHistory = async () => {
    const items = await apiAll(`${path}/history`, { limit: 200 });
    return table({
      caption: "Every change, oldest first",
      empty: "No change yet.",
      columns: [
        { label: "When", value: (c) => when(c.at) },
        { label: "Field", value: (c) => words(c.field) },
        { label: "From", value: (c) => c.from_value ?? "—" },
        { label: "To", value: (c) => c.to_value ?? "—" },
        { label: "Who", value: (c) => c.actor || "—" },
      ],
      rows: items,
    });
  };

  const statusControl = h("select", { name: "status" });
  const priorityControl = select("priority", PRIORITIES.map((p) => [p, words(p)]), ticket.priority);
  const drawControls = (t) => {
    clear(
      statusControl,
      [t.status, ...TRANSITIONS[t.status]].map((s) => h("option", { value: s, selected: s === t.status }, words(s))),
    );
    priorityControl.value = t.priority;
  };

  const refresh = async () => {
    current = await api(path);
    drawDetails(current);
    drawControls(current);
    clear(comments, async_block(loadComments));
    clear(history, async_block(loadHistory));
  };

  drawDetails(ticket);
  drawControls(ticket);
  clear(comments, async_block(loadComments));
  clear(history, async_block(loadHistory));

  const writable = ctx.can("tickets:write");
  const answerForm = writable
    ? form(
        { "aria-label": "Answer the ticket" },
        [
          h("div", {}, labelled("Answer", h("textarea", { name: "body", rows: 5, cols: 70, required: true }))),
          h(
            "div",
            { class: "row" },
            labelled("Internal note (the customer does not see it)", h("input", { type: "checkbox", name: "internal" })),
            labelled("Handling minutes", h("input", { type: "number", name: "minutes", min: 0, max: 1440, step: "any", value: "0" })),
          ),
          h("button", { type: "submit" }, "Send answer"),
        ],
        async (data, node) => {
          if (current.status === "closed") throw new Error("A closed ticket takes no comments: open a new ticket.");
          const internal = data.get("internal") === "on";
          await api(`${path}/comments`, {
            method: "POST",
            json: { body: String(data.get("body")), public: !internal, minutes: Number(data.get("minutes") || 0) },
          });
          node.querySelector("textarea").value = "";
          await refresh();
          return internal ? "Internal note added." : "Answer sent.";
        },
      )
    : null;
  const changeForm = writable
    ? form(
        { class: "row", "aria-label": "Change the ticket" },
        [labelled("Status", statusControl), labelled("Priority", priorityControl), h("button", { type: "submit" }, "Save changes")],
        async (data) => {
          const change = {};
          if (data.get("status") !== current.status) change.status = data.get("status");
          if (data.get("priority") !== current.priority) change.priority = data.get("priority");
          if (!Object.keys(change).length) return "Nothing to change.";
          await api(path, { method: "PATCH", json: change });
          await refresh();
          return "Saved.";
        },
      )
    : null;

  return keepCounting(
    h(
      "div",
      {},
      title,
      h("p", {}, h("a", { href: "#/lifecycle/tickets" }, "← Ticket queue")),
      details,
      section("Comments", comments),
      writable && ticket.status !== "closed" ? section("Answer", answerForm) : null,
      writable ? section("Status and priority", changeForm) : null,
      section("History", history),
    ),
  );
}

// --- loyalty tiers ------------------------------------------------------------------------------------------

function loyaltySection() {
  return section(
    "Loyalty tiers",
    async_block(async () => {
      const programme = await api("/v1/loyalty/programme");
      const byPoints = programme.tier_basis === "points_12m";
      const basis = byPoints ? "points earned over the last 12 months" : "predicted CLV";
      const counted = programme.tiers.some((t) => t.members !== undefined && t.members !== null);
      const facts = h(
        "div",
        { class: "cards" },
        h("div", { class: "card" }, h("div", { class: "big" }, programme.points_per_unit), "points per unit spent"),
        h(
          "div",
          { class: "card" },
          h("div", { class: "big" }, programme.expiry_months ? `${programme.expiry_months} months` : "never"),
          "until points expire",
        ),
        h("div", { class: "card" }, h("div", { class: "big" }, byPoints ? "points" : "CLV"), `tiers by ${basis}`),
      );
      const columns = [
        { label: "Tier", value: (t) => t.name },
        { label: byPoints ? "From points (12 months)" : "From predicted CLV", value: (t) => num(t.threshold), numeric: true },
        ...(counted ? [{ label: "Customers", value: (t) => num(t.members), numeric: true }] : []),
      ];
      const version = h(
        "p",
        { class: "muted" },
        `Programme version ${programme.version}${programme.updated_at ? `, set ${day(programme.updated_at)}` : " (the default)"}.`,
      );
      if (!programme.tiers.length) return h("div", {}, facts, version, h("p", { class: "muted" }, "The programme has no tiers."));
      if (!counted) return h("div", {}, facts, version, table({ caption: `Tiers by ${basis}`, columns, rows: programme.tiers }));
      return h(
        "div",
        {},
        facts,
        version,
        chart({
          caption: `Customers per loyalty tier (tiers by ${basis})`,
          summary: programme.tiers.map((t) => `${t.name}: ${t.members} customers from ${num(t.threshold)}`).join("; "),
          testid: "loyalty-tiers",
          traces: [
            {
              type: "bar",
              x: programme.tiers.map((t) => t.name),
              y: programme.tiers.map((t) => t.members),
              marker: { color: "#1f3a5f" },
              hovertemplate: "%{x}: %{y} customers<extra></extra>",
            },
          ],
          layout: { height: 280, yaxis: { title: { text: "customers" }, rangemode: "tozero" } },
          columns,
          rows: programme.tiers,
        }),
      );
    }),
  );
}
