// Engage: conversations with their replies (email goes out through engage's send queue), the
// consent ledger of a customer, and survey results: NPS, CSAT and CES by month, each with its
// 95% confidence band, for all customers or one RFM segment (GET /v1/feedback/report).
//
// Views: #/engage (the three sections the role may read), #/engage/conversations/<id> (a thread
// and its reply form), #/engage/consent/<customer id> (the customer's current consent and ledger).

import { api, apiAll } from "../api.js";
import { async_block, chart, clear, errorBox, form, h, num, section, table, when } from "../dom.js";
import { vocabulary } from "../vocabulary.js";

const CHANNELS = ["email", "sms", "chat", "phone", "social", "in_person"];
const STATUSES = ["open", "pending", "closed"];
const PURPOSES = ["marketing", "profiling", "research"];
const LEGAL_BASES = ["consent", "contract", "legitimate_interest", "legal_obligation", "vital_interest", "public_task"];
// The report's metrics, their scales and a colour of console.css's palette for each.
const METRICS = [
  { id: "nps", label: "NPS", scale: "−100 to 100", range: [-100, 100], colour: "11,87,208" },
  { id: "csat", label: "CSAT", scale: "mean, 1 to 5", range: [1, 5], colour: "13,101,45" },
  { id: "ces", label: "CES", scale: "mean, 1 to 7 (7: very easy)", range: [1, 7], colour: "180,83,9" },
];
const PAGE_SIZE = 25;

const words = (code) => String(code).replaceAll("_", " ");
const path = (...parts) => parts.map((p) => encodeURIComponent(p)).join("/");

function options(values, selected, first) {
  return [
    first ? h("option", { value: "" }, first) : null,
    values.map((v) => h("option", { value: v, selected: v === selected }, words(v))),
  ];
}

// A select beside its label, not inside it (console.css, `.field`).
function select(id, label, values, { selected, first, name = id } = {}) {
  return h(
    "span",
    { class: "field" },
    h("label", { for: id }, label),
    h("select", { id, name }, options(values, selected, first)),
  );
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Number(seconds);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${num(s / 3600, 1)} h`;
  return `${num(s / 86400, 1)} days`;
}

function customerLink(ctx, customerId) {
  if (!customerId) return "—";
  return ctx.can("customers:read")
    ? h("a", { href: `#/customers/${path(customerId)}` }, customerId)
    : h("span", {}, customerId);
}

// A field list: [[label, value], …] as a definition list.
function facts(pairs) {
  return h(
    "dl",
    { class: "cards" },
    pairs.map(([label, value]) => h("div", { class: "card" }, h("dt", { class: "muted" }, label), h("dd", {}, value))),
  );
}

// --- the overview ------------------------------------------------------------------------

export default {
  id: "engage",
  title: "Engage",
  scopes: ["messages:read", "consent:read", "feedback:read"],
  render(ctx) {
    const [view, id] = ctx.params;
    if (view === "conversations" && id && ctx.can("messages:read")) return conversationView(ctx, id);
    if (view === "consent" && id && ctx.can("consent:read")) return consentView(ctx, id);
    return h(
      "div",
      {},
      h("h1", {}, "Engage"),
      ctx.can("messages:read") ? conversationsSection(ctx) : null,
      ctx.can("consent:read") ? consentSection(ctx) : null,
      ctx.can("feedback:read") ? surveySection(ctx) : null,
    );
  },
};

function conversationsSection(ctx) {
  const list = h("div", {});
  const status = h("p", { role: "status", class: "muted" });
  const more = h("button", { type: "button", class: "secondary" }, "Older conversations");
  more.hidden = true;
  let filters = {};
  let rows = [];
  let cursor = null;

  async function load(reset) {
    if (reset) {
      rows = [];
      cursor = null;
    }
    more.disabled = true;
    list.setAttribute("aria-busy", "true");
    try {
      const answer = await api("/v1/conversations", { query: { ...filters, limit: PAGE_SIZE, cursor } });
      rows = rows.concat(answer.items);
      cursor = answer.next_cursor;
      clear(list, conversationTable(ctx, rows));
      more.hidden = !cursor;
      status.textContent = `${rows.length} conversation${rows.length === 1 ? "" : "s"} shown${cursor ? "; older ones below" : ""}.`;
    } catch (error) {
      clear(list, errorBox(error));
    } finally {
      more.disabled = false;
      list.removeAttribute("aria-busy");
    }
  }
  more.addEventListener("click", () => load(false));

  const filterForm = h(
    "form",
    { class: "row", "aria-label": "Filter conversations" },
    select("conv-status", "Status", STATUSES, { first: "Any status", name: "status" }),
    select("conv-channel", "Channel", CHANNELS, { first: "Any channel", name: "channel" }),
    h("label", { for: "conv-customer" }, "Customer id", h("input", { id: "conv-customer", name: "customer_id", size: 38 })),
    h("label", { for: "conv-assignee" }, "Assignee id", h("input", { id: "conv-assignee", name: "assignee_id", size: 38 })),
    h("p", {}, h("button", { type: "submit" }, "Show conversations")),
  );
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(filterForm);
    filters = {};
    for (const name of ["status", "channel", "customer_id", "assignee_id"]) {
      const value = String(data.get(name) || "").trim();
      if (value) filters[name] = value;
    }
    load(true);
  });
  load(true);
  return section("Conversations", filterForm, status, list, h("p", {}, more));
}

function conversationTable(ctx, rows) {
  return table({
    caption: "Conversations, latest activity first",
    empty: "No conversations match.",
    rows,
    columns: [
      {
        label: "Subject",
        value: (c) => h("a", { href: `#/engage/conversations/${path(c.id)}` }, c.subject || "(no subject)"),
      },
      { label: "Customer", value: (c) => customerLink(ctx, c.customer_id) },
      { label: "Channel", value: (c) => words(c.channel) },
      { label: "Status", value: (c) => h("span", { class: "pill" }, c.status) },
      { label: "Last activity", value: (c) => when(c.last_message_at) },
      { label: "First response", value: (c) => duration(c.first_response_seconds), numeric: true },
    ],
  });
}

function consentSection(ctx) {
  const byEmail = ctx.can("customers:read");
  const input = h("input", { id: "consent-customer", name: "customer", required: true, size: 38, autocomplete: "off" });
  const lookup = form(
    { class: "row", "aria-label": "Find a customer's consent" },
    [
      h("label", { for: "consent-customer" }, byEmail ? "Customer id or email" : "Customer id", input),
      h("p", {}, h("button", { type: "submit" }, "Show consent")),
    ],
    async (data) => {
      const given = String(data.get("customer") || "").trim();
      let customerId = given;
      if (byEmail && given.includes("@")) {
        const found = await api("/v1/customers", { query: { email: given, limit: 1 } });
        if (!found.items.length) throw new Error(`No customer has the email ${given}.`);
        customerId = found.items[0].id;
      }
      ctx.go(`#/engage/consent/${path(customerId)}`);
      return "Opening…";
    },
  );
  return section(
    "Consent ledger",
    h(
      "p",
      { class: "muted" },
      "Each customer's consent per purpose and channel, and every change to it (append-only: nothing is edited or deleted).",
    ),
    lookup,
  );
}

// --- survey results ------------------------------------------------------------------------

// <input type=datetime-local> holds local time without a zone; the API wants one.
function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function instant(value) {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function surveySection() {
  const now = new Date();
  const start = new Date(now.getFullYear(), now.getMonth() - 11, 1);
  const results = h("div", {});
  const periodForm = h(
    "form",
    { class: "row", "aria-label": "Survey results period and segment" },
    h(
      "label",
      { for: "survey-from" },
      "From",
      h("input", { id: "survey-from", name: "from", type: "datetime-local", step: 1, value: localInput(start) }),
    ),
    h(
      "label",
      { for: "survey-to" },
      "To (empty: now)",
      h("input", { id: "survey-to", name: "to", type: "datetime-local", step: 1 }),
    ),
    select("survey-segment", "Segment", vocabulary.segments, { first: "All customers", name: "segment" }),
    h("p", {}, h("button", { type: "submit" }, "Show results")),
  );
  const show = () => {
    const data = new FormData(periodForm);
    const query = { from: instant(data.get("from")), to: instant(data.get("to")) };
    const segment = String(data.get("segment") || "");
    clear(
      results,
      async_block(() => surveyResults(query, segment)),
    );
  };
  periodForm.addEventListener("submit", (event) => {
    event.preventDefault();
    show();
  });
  show();
  return section(
    "Survey results",
    h(
      "p",
      { class: "muted" },
      "Scores by the month the answers arrived, each with its 95% confidence interval (shaded). NPS: promoters' share minus detractors', in points.",
    ),
    periodForm,
    results,
  );
}

async function surveyResults(query, segment) {
  const reports = await Promise.all(
    METRICS.map((m) => api("/v1/feedback/report", { query: { metric: m.id, by: "month", segment, ...query } })),
  );
  const bySegment = await Promise.all(
    METRICS.map((m) => api("/v1/feedback/report", { query: { metric: m.id, by: "segment", ...query } })),
  );
  const who = segment ? `the ${words(segment)} segment` : "all customers";
  return h(
    "div",
    {},
    METRICS.map((metric, i) => metricChart(metric, reports[i].cells, who)),
    h("h3", {}, "By segment, over the whole period"),
    segmentTable(bySegment),
  );
}

const band = (c) => (c.low === null || c.high === null ? "—" : `${num(c.low, 1)} to ${num(c.high, 1)}`);

function metricChart(metric, cells, who) {
  const heading = h("h3", {}, `${metric.label} (${metric.scale})`);
  if (!cells.length) {
    return h("div", {}, heading, h("p", { class: "muted" }, `No ${metric.label} answers from ${who} in this period.`));
  }
  const months = cells.map((c) => c.key);
  const banded = cells.filter((c) => c.low !== null && c.high !== null);
  const colour = metric.colour;
  const traces = [
    {
      type: "scatter",
      mode: "lines",
      name: "95% interval, low",
      x: banded.map((c) => c.key),
      y: banded.map((c) => c.low),
      line: { width: 0, color: `rgb(${colour})` },
      showlegend: false,
    },
    {
      type: "scatter",
      mode: "lines",
      name: "95% interval",
      x: banded.map((c) => c.key),
      y: banded.map((c) => c.high),
      fill: "tonexty",
      fillcolor: `rgba(${colour},0.18)`,
      line: { width: 0, color: `rgb(${colour})` },
    },
    {
      type: "scatter",
      mode: "lines+markers",
      name: metric.label,
      x: months,
      y: cells.map((c) => c.score),
      line: { color: `rgb(${colour})`, width: 2 },
      text: cells.map((c) => `${c.responses} responses`),
      // One month is one point: its band has no width to shade, so it shows as an error bar.
      error_y:
        months.length < 2
          ? {
              type: "data",
              symmetric: false,
              array: cells.map((c) => (c.high === null ? 0 : c.high - c.score)),
              arrayminus: cells.map((c) => (c.low === null ? 0 : c.score - c.low)),
              color: `rgb(${colour})`,
            }
          : undefined,
    },
  ];
  // The scale, widened where an interval reaches past it (a t interval of a mean may).
  const edges = banded.flatMap((c) => [c.low, c.high]);
  const [bottom, top] = [Math.min(metric.range[0], ...edges), Math.max(metric.range[1], ...edges)];
  const pad = (top - bottom) * 0.04;
  const latest = cells[cells.length - 1];
  const columns = [
    { label: "Month", value: (c) => c.key },
    { label: metric.label, value: (c) => num(c.score, 1), numeric: true },
    { label: "95% low", value: (c) => (c.low === null ? "—" : num(c.low, 1)), numeric: true },
    { label: "95% high", value: (c) => (c.high === null ? "—" : num(c.high, 1)), numeric: true },
    { label: "Responses", value: (c) => num(c.responses), numeric: true },
  ];
  if (metric.id === "nps") {
    columns.push(
      { label: "Promoters", value: (c) => num(c.promoters), numeric: true },
      { label: "Passives", value: (c) => num(c.passives), numeric: true },
      { label: "Detractors", value: (c) => num(c.detractors), numeric: true },
    );
  }
  return h(
    "div",
    {},
    heading,
    chart({
      testid: `${metric.id}-chart`,
      caption: `${metric.label} by month, ${who}`,
      summary:
        `${metric.label} by month for ${who}, ${cells.length} month${cells.length === 1 ? "" : "s"}; ` +
        `latest ${latest.key}: ${num(latest.score, 1)} (95% interval ${band(latest)}, ${latest.responses} responses).`,
      traces,
      layout: {
        height: 320,
        xaxis: { title: { text: "Month" }, type: "date", tickformat: "%b %Y", dtick: "M1" },
        yaxis: { title: { text: metric.label }, range: [bottom - pad, top + pad], zeroline: metric.id === "nps" },
        legend: { orientation: "h", y: -0.25 },
      },
      columns,
      rows: cells,
    }),
  );
}

function segmentTable(reports) {
  const keys = [];
  const byKey = new Map();
  reports.forEach((report, i) => {
    for (const cell of report.cells) {
      const key = cell.key ?? "";
      if (!byKey.has(key)) {
        byKey.set(key, {});
        keys.push(key);
      }
      byKey.get(key)[METRICS[i].id] = cell;
    }
  });
  const figure = (id) => (row) => {
    const cell = row[id];
    return cell ? `${num(cell.score, 1)} (${band(cell)}; n ${cell.responses})` : "—";
  };
  return table({
    caption: "NPS, CSAT and CES by segment (score, 95% interval, responses)",
    empty: "No answers in this period.",
    rows: keys.map((key) => ({ key, ...byKey.get(key) })),
    columns: [
      { label: "Segment", value: (row) => (row.key ? words(row.key) : "not known yet") },
      ...METRICS.map((m) => ({ label: m.label, value: figure(m.id) })),
    ],
  });
}

// --- one conversation ------------------------------------------------------------------------

async function conversationView(ctx, id) {
  let conversation = await api(`/v1/conversations/${path(id)}`);
  const about = h("div", {});
  const thread = h("div", { "aria-live": "polite" });

  const drawAbout = () =>
    clear(
      about,
      facts([
        ["Customer", customerLink(ctx, conversation.customer_id)],
        ["Channel", words(conversation.channel)],
        ["Status", h("span", { class: "pill", "data-testid": "conversation-status" }, conversation.status)],
        ["Opened", when(conversation.opened_at)],
        ["Last activity", when(conversation.last_message_at)],
        ["First response", duration(conversation.first_response_seconds)],
        ["Assignee", conversation.assignee_id || "nobody"],
      ]),
      ctx.can("consent:read")
        ? h("p", {}, h("a", { href: `#/engage/consent/${path(conversation.customer_id)}` }, "This customer's consent"))
        : null,
    );

  const loadThread = async () => {
    thread.setAttribute("aria-busy", "true");
    try {
      const messages = await apiAll(`/v1/conversations/${path(id)}/messages`, { limit: 200 }, 1000);
      clear(thread, messages.length ? messages.map(messageItem) : h("p", { class: "muted" }, "No messages yet."));
    } catch (error) {
      clear(thread, errorBox(error));
    } finally {
      thread.removeAttribute("aria-busy");
    }
  };
  drawAbout();
  loadThread();

  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh messages");
  refresh.addEventListener("click", async () => {
    conversation = await api(`/v1/conversations/${path(id)}`).catch(() => conversation);
    drawAbout();
    await loadThread();
  });

  let statusForm = null;
  let replyForm = null;
  if (ctx.can("messages:write")) {
    statusForm = form(
      { class: "row", "aria-label": "Change the conversation's status" },
      [
        select("conversation-status", "Status", STATUSES, { selected: conversation.status, name: "status" }),
        h("p", {}, h("button", { type: "submit", class: "secondary" }, "Change status")),
      ],
      async (data) => {
        conversation = await api(`/v1/conversations/${path(id)}`, {
          method: "PATCH",
          json: { status: data.get("status") },
        });
        drawAbout();
        return `Status: ${conversation.status}.`;
      },
    );
    const isEmail = conversation.channel === "email";
    const fallback = conversation.subject
      ? conversation.subject.toLowerCase().startsWith("re:")
        ? conversation.subject
        : `Re: ${conversation.subject}`
      : "Re: your message";
    replyForm = form(
      { "aria-labelledby": "reply-title" },
      [
        isEmail
          ? h(
              "label",
              { for: "reply-subject" },
              "Subject (optional)",
              h("input", { id: "reply-subject", name: "subject", size: 60, placeholder: fallback, maxlength: 300 }),
            )
          : null,
        h("div", {}, h("label", { for: "reply-body" }, "Reply", h("textarea", { id: "reply-body", name: "body", rows: 6, cols: 70, required: true, maxlength: 10000 }))),
        h(
          "p",
          { class: "muted" },
          isEmail
            ? "Sent by email through engage's send queue, threaded after the customer's last message."
            : `Recorded as sent on ${words(conversation.channel)}.`,
        ),
        h("button", { type: "submit" }, "Send reply"),
      ],
      async (data, node) => {
        const subject = String(data.get("subject") || "").trim();
        const sent = await api(`/v1/conversations/${path(id)}/messages`, {
          method: "POST",
          json: {
            body: String(data.get("body") || ""),
            subject: subject || undefined,
            author_id: ctx.me.person_id || undefined,
          },
        });
        node.reset();
        await loadThread();
        return isEmail
          ? `Reply ${sent.status}: engage's sender emails it to the customer.`
          : `Reply recorded (${sent.status}).`;
      },
    );
  }

  return h(
    "div",
    {},
    h("p", {}, h("a", { href: "#/engage" }, "Engage")),
    h("h1", {}, conversation.subject || "Conversation"),
    about,
    statusForm,
    h("h2", {}, "Messages"),
    thread,
    h("p", {}, refresh),
    replyForm ? h("h2", { id: "reply-title" }, "Reply") : null,
    replyForm,
  );
}

function messageItem(message) {
  const inbound = message.direction === "inbound";
  const route = [message.from_address, message.to_address].filter(Boolean).join(" → ");
  return h(
    "article",
    { class: "list-item", "data-testid": "message" },
    h("h3", {}, `${inbound ? "From the customer" : "Our reply"} · ${when(message.occurred_at)}`),
    h(
      "p",
      { class: "muted" },
      h("span", { class: "pill" }, message.status),
      message.subject ? ` ${message.subject}` : null,
      route ? ` · ${route}` : null,
      message.sent_at && !inbound ? ` · sent ${when(message.sent_at)}` : null,
    ),
    message.last_error ? h("p", { class: "error" }, message.last_error) : null,
    h("p", { class: "pre" }, message.body ?? "(erased)"),
    message.attachments && message.attachments.length
      ? h(
          "ul",
          { "aria-label": "Attachments" },
          message.attachments.map((a) =>
            h("li", {}, `${a.filename || "attachment"} (${a.content_type}, ${num(a.size)} bytes)`),
          ),
        )
      : null,
  );
}

// --- a customer's consent ---------------------------------------------------------------------

async function consentView(ctx, customerId) {
  const base = `/v1/customers/${path(customerId)}/consent`;
  const current = h("div", {});
  const ledger = h("div", {});
  const more = h("button", { type: "button", class: "secondary" }, "Older entries");
  more.hidden = true;
  let entries = [];
  let cursor = null;

  async function load(reset) {
    if (reset) {
      entries = [];
      cursor = null;
    }
    more.disabled = true;
    try {
      const answer = await api(base, { query: { limit: 50, cursor } });
      if (reset) clear(current, currentTable(answer.current));
      entries = entries.concat(answer.items);
      cursor = answer.next_cursor;
      clear(ledger, ledgerTable(entries));
      more.hidden = !cursor;
    } catch (error) {
      clear(ledger, errorBox(error));
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => load(false));
  // The first page before the view shows: an unknown customer is the page's error.
  const first = await api(base, { query: { limit: 50 } });
  clear(current, currentTable(first.current));
  entries = first.items;
  cursor = first.next_cursor;
  clear(ledger, ledgerTable(entries));
  more.hidden = !cursor;

  let record = null;
  if (ctx.can("consent:write")) {
    record = form(
      { class: "row", "aria-labelledby": "record-title" },
      [
        select("consent-purpose", "Purpose", PURPOSES, { name: "purpose" }),
        select("consent-channel", "Channel", CHANNELS, { name: "channel" }),
        select("consent-granted", "Granted or withdrawn", ["granted", "withdrawn"], { name: "granted" }),
        select("consent-basis", "Legal basis", LEGAL_BASES, { name: "legal_basis" }),
        h(
          "label",
          { for: "consent-source" },
          "Source (a code, optional)",
          h("input", { id: "consent-source", name: "source", maxlength: 40, placeholder: "call_centre" }),
        ),
        h(
          "label",
          { for: "consent-notice" },
          "Notice version (optional)",
          h("input", { id: "consent-notice", name: "notice_version", maxlength: 40 }),
        ),
        h("p", {}, h("button", { type: "submit" }, "Record")),
      ],
      async (data) => {
        const text = (name) => String(data.get(name) || "").trim() || undefined;
        await api(base, {
          method: "POST",
          json: {
            purpose: data.get("purpose"),
            channel: data.get("channel"),
            granted: data.get("granted") === "granted",
            legal_basis: data.get("legal_basis"),
            source: text("source"),
            notice_version: text("notice_version"),
          },
        });
        await load(true);
        return "Recorded.";
      },
    );
  }

  return h(
    "div",
    {},
    h("p", {}, h("a", { href: "#/engage" }, "Engage")),
    h("h1", {}, "Consent"),
    h("p", {}, "Customer ", customerLink(ctx, customerId)),
    h("h2", {}, "Now"),
    current,
    h("h2", {}, "Ledger"),
    ledger,
    h("p", {}, more),
    record ? h("h2", { id: "record-title" }, "Record a change") : null,
    record,
  );
}

const grantedText = (granted) => (granted ? "granted" : "withdrawn");

function currentTable(rows) {
  return table({
    caption: "Current consent per purpose and channel (a pair never recorded is not granted)",
    empty: "Nothing recorded: no consent is granted.",
    rows,
    columns: [
      { label: "Purpose", value: (r) => r.purpose },
      { label: "Channel", value: (r) => words(r.channel) },
      { label: "Consent", value: (r) => h("span", { class: r.granted ? "ok" : "late" }, grantedText(r.granted)) },
      { label: "Since", value: (r) => when(r.changed_at) },
    ],
  });
}

function ledgerTable(rows) {
  return table({
    caption: "Every change, newest first",
    empty: "The ledger is empty.",
    rows,
    columns: [
      { label: "Changed", value: (r) => when(r.changed_at) },
      { label: "Purpose", value: (r) => r.purpose },
      { label: "Channel", value: (r) => words(r.channel) },
      { label: "Change", value: (r) => grantedText(r.granted) },
      { label: "Legal basis", value: (r) => words(r.legal_basis) },
      { label: "Source", value: (r) => r.source },
      { label: "Notice", value: (r) => r.notice_version || "—" },
      { label: "Recorded", value: (r) => when(r.recorded_at) },
    ],
  });
}
