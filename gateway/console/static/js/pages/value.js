// Value: campaigns measured against a holdout (list, builder with a live audience count, launch,
// results as uplift with its interval), the offer templates they issue, the ideas board, and the
// value map against competitors. Each section is drawn only when the caller holds its scope.
//
// The builder works on a draft campaign: value counts an audience with
// POST /v1/campaigns/{id}/preview, over a saved campaign. So "New campaign" creates the draft
// (name, channel, offer, message), and the draft's page saves each edit of the audience and
// holdout (PATCH, one at a time, in order) and counts it again; an edit made meanwhile cancels
// the count in flight, whose answer would be stale.

import { api, withQuery } from "../api.js";
import { async_block, chart, clear, day, errorBox, form, h, num, pct, section, table, when } from "../dom.js";
import { vocabulary } from "../vocabulary.js";

const CHANNELS = ["email", "sms", "chat", "phone", "social", "in_person"];
const TEMPLATE_KINDS = { percent_off: "Percent off", amount_off: "Amount off", free_item: "Free item", points: "Points" };
const IDEA_STATUSES = ["new", "under_review", "planned", "shipped", "declined"];
// Where an idea may go next (services/value/ideas/service.py NEXT).
const IDEA_NEXT = {
  new: ["under_review", "declined"],
  under_review: ["planned", "declined"],
  planned: ["shipped", "declined"],
  shipped: [],
  declined: [],
};
const COLOURS = { treatment: "#1f3a5f", holdout: "#6b7785", uplift: "#b45309" };
const SUBJECT_COLOURS = ["#1f3a5f", "#b45309", "#0d652d", "#7b1fa2", "#a50e0e", "#00695c", "#5d4037", "#455a64"];
const CHECK_LABEL = "flex-direction: row; align-items: center; gap: .35em; margin-right: 1em";
const READABLE_DATE = "max-width: 14em";

// Templates made on this page reach the builder's offer list.
const templates = new EventTarget();

const words = (text) => String(text ?? "").replaceAll("_", " ");
const enc = encodeURIComponent;
const pill = (text, extra) => h("span", { class: "pill", ...extra }, words(text));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function campaignHref(id) {
  return `#/value/campaigns/${enc(id)}`;
}

function customerLink(ctx, id) {
  return ctx.can("customers:read") ? h("a", { href: `#/customers/${enc(id)}` }, id) : id;
}

// A table over a cursor-paginated list, with "Show more" while there is more.
function pagedTable({ load, columns, caption, empty, testid }) {
  const box = h("div", { "data-testid": testid, "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  let rows = [];
  let cursor = null;
  const more = h("button", { type: "button", class: "secondary", onclick: () => next(true) }, "Show more");
  async function next(focus) {
    more.disabled = true;
    try {
      const page = await load(cursor);
      rows = rows.concat(page.items);
      cursor = page.next_cursor;
      clear(box, table({ columns, rows, caption, empty }), cursor ? more : null);
      more.disabled = false;
      if (focus && cursor) more.focus();
    } catch (error) {
      clear(box, errorBox(error));
    } finally {
      box.removeAttribute("aria-busy");
    }
  }
  next(false);
  return box;
}

// UTC times in datetime-local inputs (labelled "UTC"), so what the user types is what the API gets.
function toInputUtc(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().slice(0, 19);
}

function fromInputUtc(value) {
  if (!value) return null;
  return (value.length === 16 ? `${value}:00` : value) + "Z";
}

function templateTerms(t) {
  if (t.kind === "percent_off") return `${num(t.percent_off)}% off`;
  if (t.kind === "amount_off" && t.amount_off) return `${num(t.amount_off.amount)} ${t.amount_off.currency} off`;
  if (t.kind === "free_item") return `free ${t.free_item}`;
  if (t.kind === "points") return `${num(t.points)} points`;
  return words(t.kind);
}

function expired(t) {
  return t.valid_until && new Date(t.valid_until) <= new Date();
}

// --- the page ------------------------------------------------------------------------------

export default {
  id: "value",
  title: "Value",
  scopes: ["campaigns:read", "ideas:read", "value_map:read", "offers:read"],
  render(ctx) {
    const [sub, id] = ctx.params;
    if (sub === "campaigns" && id && ctx.can("campaigns:read")) return campaignPage(ctx, id);
    return overview(ctx);
  },
};

function overview(ctx) {
  return h(
    "div",
    {},
    h("h1", {}, "Value"),
    h(
      "p",
      { class: "muted" },
      "Campaigns measured against a holdout, the offers they carry, the ideas customers bring, and how customers value us against competitors.",
    ),
    ctx.can("campaigns:read") ? campaignsSection(ctx) : null,
    ctx.can("offers:read") ? offersSection(ctx) : null,
    ctx.can("ideas:read") ? ideasSection(ctx) : null,
    ctx.can("value_map:read") ? valueMapSection() : null,
  );
}

// --- campaigns -----------------------------------------------------------------------------

function campaignsSection(ctx) {
  const list = h("div");
  const statusSelect = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, "Any state"),
    ["draft", "scheduled", "launching", "running", "completed", "cancelled"].map((s) => h("option", { value: s }, words(s))),
  );
  const draw = () =>
    clear(
      list,
      pagedTable({
        testid: "campaigns",
        caption: "Campaigns, newest first",
        empty: "No campaigns yet.",
        load: (cursor) => api("/v1/campaigns", { query: { status: statusSelect.value, limit: 20, cursor } }),
        columns: [
          { label: "Campaign", value: (c) => h("a", { href: campaignHref(c.id) }, c.name) },
          { label: "State", value: (c) => pill(c.status) },
          { label: "Channel", value: (c) => words(c.channel) },
          { label: "Holdout share", numeric: true, value: (c) => pct(c.holdout_share) },
          { label: "Treatment", numeric: true, value: (c) => (c.launched_at ? num(c.treatment) : "—") },
          { label: "Holdout", numeric: true, value: (c) => (c.launched_at ? num(c.holdout) : "—") },
          { label: "Launched", value: (c) => when(c.launched_at) },
          { label: "Created", value: (c) => day(c.created_at) },
        ],
      }),
    );
  statusSelect.addEventListener("change", draw);
  draw();
  return section(
    "Campaigns",
    h("div", { class: "row" }, h("label", {}, "Show campaigns in", statusSelect)),
    list,
    ctx.can("campaigns:write") ? builder(ctx) : null,
  );
}

// Step one of the builder: the draft (its audience and holdout are edited on its page, with the live count).
function builder(ctx) {
  const offerField = ctx.can("offers:read")
    ? h("select", { name: "template_id", required: true }, h("option", { value: "" }, "Loading offers…"))
    : h("input", { name: "template_id", required: true, maxlength: 36 });
  const offerHelp = h("span", { class: "muted", id: "offer-help" });
  if (ctx.can("offers:read")) {
    api("/v1/offer-templates", { query: { limit: 200 } }).then(
      (page) => {
        const usable = page.items.filter((t) => !expired(t));
        clear(
          offerField,
          h("option", { value: "" }, usable.length ? "Choose an offer" : "No offer templates yet"),
          usable.map((t) => h("option", { value: t.id }, `${t.title} (${templateTerms(t)})`)),
        );
        if (!usable.length) offerHelp.textContent = "Create an offer template first (Offers, below).";
      },
      (error) => clear(offerField, h("option", { value: "" }, `Offers could not be read: ${error.message}`)),
    );
    const added = (event) => {
      if (!offerField.isConnected) return templates.removeEventListener("created", added);
      const t = event.detail;
      const option = h("option", { value: t.id }, `${t.title} (${templateTerms(t)})`);
      offerField.insertBefore(option, offerField.options[1] || null);
      offerField.value = t.id;
      offerHelp.textContent = "";
    };
    templates.addEventListener("created", added);
  }
  return h(
    "div",
    {},
    h("h3", { id: "new-campaign" }, "New campaign"),
    h(
      "p",
      { class: "muted" },
      "First the offer and the message; then, on the draft's page, the audience (counted as you edit it), the holdout, and the launch.",
    ),
    form(
      { "aria-labelledby": "new-campaign" },
      [
        h(
          "div",
          { class: "row" },
          h("label", {}, "Name", h("input", { name: "name", required: true, maxlength: 200 })),
          h(
            "label",
            {},
            "Channel",
            h("select", { name: "channel" }, CHANNELS.map((c) => h("option", { value: c }, words(c)))),
          ),
          h("label", {}, "Offer", offerField),
          offerHelp,
        ),
        h(
          "div",
          { class: "row" },
          h("label", {}, "Subject", h("input", { name: "subject", required: true, maxlength: 200, size: 40 })),
          h(
            "label",
            {},
            "Attribution window (days)",
            h("input", { name: "attribution_days", type: "number", min: 1, max: 365, value: 30, required: true }),
          ),
        ),
        h(
          "div",
          {},
          h(
            "label",
            {},
            "Message",
            h("textarea", { name: "body", required: true, rows: 4, cols: 60, maxlength: 5000, "aria-describedby": "body-help" }),
          ),
          h("p", { id: "body-help", class: "muted" }, "It may name {{ offer_code }} and {{ offer_title }}."),
        ),
        h("div", {}, h("button", { type: "submit" }, "Create draft")),
      ],
      async (data) => {
        const made = await api("/v1/campaigns", {
          method: "POST",
          json: {
            name: data.get("name"),
            channel: data.get("channel"),
            template_id: data.get("template_id"),
            subject: data.get("subject"),
            body: data.get("body"),
            attribution_days: Number(data.get("attribution_days")),
          },
        });
        ctx.go(campaignHref(made.id));
        return `Draft “${made.name}” created.`;
      },
    ),
  );
}

// One campaign: a draft's audience editor and launch, or a launched one's results.
async function campaignPage(ctx, id) {
  const root = h("div");
  const redraw = async (focusId) => {
    const campaign = await api(`/v1/campaigns/${enc(id)}`);
    clear(root, campaignContent(ctx, campaign, redraw));
    const target = focusId && root.querySelector(`#${focusId}`);
    if (target) {
      target.setAttribute("tabindex", "-1");
      target.focus();
    }
  };
  await redraw();
  return root;
}

function campaignContent(ctx, c, redraw) {
  const editable = c.status === "draft" || c.status === "scheduled";
  const launched = Boolean(c.launched_at) && c.status !== "launching";
  return h(
    "div",
    {},
    h("h1", {}, c.name),
    h("p", {}, h("a", { href: "#/value" }, "All campaigns")),
    h(
      "p",
      {},
      pill(c.status, { "data-testid": "campaign-status" }),
      ` on ${words(c.channel)} · created ${when(c.created_at)}`,
    ),
    c.launch_error ? h("p", { class: "error" }, `The scheduled launch was refused: ${c.launch_error}`) : null,
    detailsTable(ctx, c),
    editable ? draftEditor(ctx, c, redraw) : null,
    c.status === "launching" ? unfinishedLaunch(ctx, c, redraw) : null,
    launched ? resultsSection(c) : null,
    launched ? membersSection(ctx, c) : null,
    endActions(ctx, c, redraw),
  );
}

function detailsTable(ctx, c) {
  const offer = h("span", {}, c.template_id);
  if (ctx.can("offers:read")) {
    api(`/v1/offer-templates/${enc(c.template_id)}`).then(
      (t) => clear(offer, `${t.title} (${templateTerms(t)})`),
      () => {},
    );
  }
  const rows = [
    ["Offer", offer],
    ["Message", c.message_template_id ? `message template ${c.message_template_id}` : c.subject],
    // A draft's holdout and window are in its editor, below (where they change).
    ...(c.status === "draft" || c.status === "scheduled"
      ? []
      : [
          ["Holdout share", pct(c.holdout_share)],
          ["Attribution window", `${num(c.attribution_days)} days after launch`],
        ]),
    ["Holdout seed", c.seed],
    ["Scheduled for", when(c.scheduled_at)],
    ["Launched", when(c.launched_at)],
    ["Ended", when(c.ended_at)],
  ];
  return section(
    "Details",
    h(
      "table",
      {},
      h("tbody", {}, rows.map(([label, value]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, value)))),
    ),
  );
}

// Saves a draft's edits one PATCH at a time, in order, then counts its audience; an edit cancels
// the count in flight (its answer would be of an audience no longer wanted).
function liveDraft(id, { counting, counted, failed }) {
  let wanted = null;
  let timer = null;
  let saving = null;
  let preview = null;
  let lastError = null;

  async function count() {
    if (preview) preview.abort();
    const mine = (preview = new AbortController());
    counting();
    try {
      const answer = await api(`/v1/campaigns/${enc(id)}/preview`, { method: "POST", signal: mine.signal });
      if (mine === preview) counted(answer);
    } catch (error) {
      if (mine.signal.aborted || mine !== preview) return;
      failed(error, false);
    }
  }

  async function flush() {
    clearTimeout(timer);
    timer = null;
    if (!saving) {
      saving = (async () => {
        while (wanted) {
          const body = wanted;
          wanted = null;
          try {
            await api(`/v1/campaigns/${enc(id)}`, { method: "PATCH", json: body });
            lastError = null;
          } catch (error) {
            lastError = error;
          }
        }
      })().finally(() => {
        saving = null;
      });
    }
    await saving;
    if (wanted) return flush();
    if (timer) return; // a newer edit waits for its pause; it counts then
    if (lastError) failed(lastError, true);
    else await count();
  }

  function edited(body) {
    wanted = body;
    if (preview) preview.abort();
    counting();
    clearTimeout(timer);
    timer = setTimeout(flush, 350);
  }

  return { edited, flush, count, error: () => lastError };
}

function draftEditor(ctx, c, redraw) {
  const writable = ctx.can("campaigns:write");
  const a = c.audience || {};
  const checks = (legend, name, values, chosen = []) =>
    h(
      "fieldset",
      {},
      h("legend", {}, legend),
      h(
        "div",
        { class: "row" },
        values.map((v) =>
          h(
            "label",
            { style: CHECK_LABEL },
            h("input", { type: "checkbox", name, value: v, checked: chosen.includes(v), disabled: !writable }),
            words(v),
          ),
        ),
      ),
    );
  const range = (legend, name, given, step) => {
    const bounds = given || {};
    return
    h(
      "fieldset",
      {},
      h("legend", {}, legend),
      h(
        "div",
        { class: "row" },
        ["min", "max"].map((end) =>
          h(
            "label",
            {},
            end === "min" ? "At least" : "At most",
            h("input", { type: "number", name: `${name}.${end}`, step, value: bounds[end] ?? "", disabled: !writable }),
          ),
        ),
      ),
    );
  };
  const dateInput = (name) =>
    h("input", { type: "datetime-local", step: 1, name, value: toInputUtc(a[name]), disabled: !writable, style: READABLE_DATE });

  const countNode = h("div", { class: "big", "data-testid": "audience-count" }, "…");
  const countState = h("div", { class: "muted", role: "status", "aria-live": "polite" }, "Counting…");
  const split = h("div", { class: "muted", "data-testid": "audience-split" });
  const sample = h("div");
  const holdoutInput = h("input", {
    type: "number",
    name: "holdout",
    min: 0,
    max: 50,
    step: "any",
    required: true,
    value: String(Math.round(c.holdout_share * 1000) / 10),
    disabled: !writable,
  });
  let lastCount = null;

  const showSplit = () => {
    const share = Number(holdoutInput.value) / 100;
    if (lastCount === null || !Number.isFinite(share)) return clear(split);
    const held = Math.round(lastCount * share);
    clear(split, `About ${num(held)} held out and ${num(lastCount - held)} offered (the holdout is drawn by hash at launch).`);
  };

  const live = liveDraft(c.id, {
    counting: () => {
      countState.className = "muted";
      countState.textContent = "Counting…";
      countNode.setAttribute("aria-busy", "true");
    },
    counted: (answer) => {
      lastCount = answer.count;
      countNode.removeAttribute("aria-busy");
      countNode.textContent = num(answer.count);
      countState.className = "muted";
      countState.textContent = `${num(answer.count)} ${answer.count === 1 ? "customer matches" : "customers match"} the audience now, with marketing consent on ${words(c.channel)}.`;
      showSplit();
      clear(
        sample,
        answer.sample.length
          ? table({
              caption: `A sample of the audience (${answer.sample.length} of ${num(answer.count)})`,
              columns: [
                { label: "Customer", value: (m) => customerLink(ctx, m.customer_id) },
                { label: "Segment", value: (m) => words(m.segment) || "—" },
                { label: "Stage", value: (m) => words(m.stage) || "—" },
                { label: "Predicted CLV", numeric: true, value: (m) => num(m.predicted_clv, 2) },
              ],
              rows: answer.sample,
            })
          : null,
      );
    },
    failed: (error, saving) => {
      countNode.removeAttribute("aria-busy");
      countNode.textContent = "—";
      lastCount = null;
      showSplit();
      countState.className = "error";
      countState.textContent = saving ? `Not saved: ${error.message}` : `Could not count: ${error.message}`;
    },
  });

  const editor = h(
    "form",
    { "aria-labelledby": "audience-title" },
    checks("RFM segments (any of)", "segments", vocabulary.segments, a.segments),
    checks("Kinds (any of)", "kinds", vocabulary.kinds, a.kinds),
    checks("Lifecycle stages (any of)", "stages", vocabulary.stages, a.stages),
    h(
      "div",
      { class: "row" },
      range("Predicted CLV", "predicted_clv", a.predicted_clv, "any"),
      range("Probability alive (0 to 1)", "probability_alive", a.probability_alive, "any"),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Last purchase (UTC)"),
      h(
        "div",
        { class: "row" },
        h("label", {}, "After", dateInput("last_purchase_after")),
        h("label", {}, "Before", dateInput("last_purchase_before")),
      ),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Measurement"),
      h(
        "div",
        { class: "row" },
        h("label", {}, "Holdout (% of the audience kept back, 0 to 50)", holdoutInput),
        h(
          "label",
          {},
          "Attribution window (days)",
          h("input", { type: "number", name: "attribution_days", min: 1, max: 365, value: c.attribution_days, disabled: !writable }),
        ),
      ),
    ),
  );

  const collect = () => {
    const data = new FormData(editor);
    const audience = {};
    for (const name of ["segments", "kinds", "stages"]) {
      const chosen = data.getAll(name);
      if (chosen.length) audience[name] = chosen;
    }
    for (const name of ["predicted_clv", "probability_alive"]) {
      const bounds = {};
      for (const end of ["min", "max"]) {
        const value = data.get(`${name}.${end}`);
        if (value !== null && value !== "") bounds[end] = Number(value);
      }
      if (Object.keys(bounds).length) audience[name] = bounds;
    }
    for (const name of ["last_purchase_after", "last_purchase_before"]) {
      const value = fromInputUtc(data.get(name));
      if (value) audience[name] = value;
    }
    return {
      audience,
      holdout_share: Number(data.get("holdout")) / 100,
      attribution_days: Number(data.get("attribution_days")),
    };
  };
  if (writable) {
    editor.addEventListener("input", () => {
      live.edited(collect());
      showSplit();
    });
    editor.addEventListener("submit", (event) => {
      event.preventDefault();
      live.flush();
    });
  }
  live.count();

  const launchBox = h("div", {});
  const recount = h("button", { type: "button", class: "secondary", onclick: () => live.flush() }, "Count again");
  return h(
    "div",
    {},
    h("h2", { id: "audience-title" }, writable ? "Audience and holdout" : "Audience"),
    writable ? h("p", { class: "muted" }, "Each change is saved to the draft and the audience counted again.") : null,
    h(
      "div",
      { class: "cards" },
      h("div", { class: "card" }, h("div", {}, "Audience now"), countNode, countState, split, recount),
    ),
    editor,
    sample,
    writable && c.allowed_transitions.includes("running") ? launchSection(c, live, launchBox, redraw) : null,
    launchBox,
  );
}

function launchSection(c, live, box, redraw) {
  const ask = async () => {
    await live.flush();
    if (live.error()) {
      clear(box, errorBox(`Fix the audience first: ${live.error().message}`));
      return;
    }
    const yes = h("button", { type: "button", onclick: () => runLaunch(c, box, redraw) }, "Yes, launch it");
    clear(
      box,
      h(
        "p",
        {},
        `Launch “${c.name}” now? Every customer in the audience is assigned to treatment or holdout; treatment customers get the offer and a message on ${words(c.channel)}.`,
      ),
      h("div", { class: "row" }, yes, h("button", { type: "button", class: "secondary", onclick: () => clear(box) }, "Not yet")),
    );
    yes.focus();
  };
  return h(
    "div",
    {},
    h("h2", {}, "Launch"),
    h("p", { class: "row" }, h("button", { type: "button", onclick: ask }, "Launch campaign")),
  );
}

function describeLaunch(now) {
  if (now.status === "draft" || now.status === "scheduled") return "planning: reading the audience and assigning the holdout…";
  return `${words(now.status)}: ${num(now.treatment)} in treatment, ${num(now.holdout)} held out${
    now.status === "launching" ? "; issuing the offers and asking engage to send the messages…" : "."
  }`;
}

// POST …/launch answers once every offer is issued (minutes for a large audience): meanwhile the
// campaign's state is read every second and shown under an indeterminate progress bar.
async function runLaunch(c, box, redraw) {
  const state = h("span", {}, "starting…");
  clear(
    box,
    h("p", { role: "status", "data-testid": "launch-progress" }, "Launching: ", state),
    h("progress", { class: "progress", "aria-label": "Launch in progress" }),
  );
  let done = false;
  const read = () => api(`/v1/campaigns/${enc(c.id)}`);
  (async () => {
    while (!done && box.isConnected) {
      await sleep(1000);
      if (done) break;
      try {
        state.textContent = describeLaunch(await read());
      } catch {
        // the next look may answer
      }
    }
  })();
  try {
    await api(`/v1/campaigns/${enc(c.id)}/launch`, { method: "POST" });
  } catch (error) {
    if (error.status !== 504 && error.status !== 502) {
      done = true;
      clear(box, errorBox(error));
      return;
    }
    // The gateway stopped waiting; the launch goes on: wait for it to finish.
    for (;;) {
      if (!box.isConnected) return;
      await sleep(2000);
      try {
        const now = await read();
        if (now.status !== "launching" && now.status !== "draft" && now.status !== "scheduled") break;
      } catch {
        // keep looking
      }
    }
  }
  done = true;
  if (!box.isConnected) return;
  try {
    await redraw("results-title");
  } catch (error) {
    clear(box, errorBox(error));
  }
}

function unfinishedLaunch(ctx, c, redraw) {
  const box = h("div");
  return h(
    "div",
    {},
    h("h2", {}, "Launch"),
    h(
      "p",
      {},
      `Launching: ${num(c.treatment)} in treatment, ${num(c.holdout)} held out. A launch cut short is finished by launching again.`,
    ),
    ctx.can("campaigns:write")
      ? h("p", {}, h("button", { type: "button", onclick: () => runLaunch(c, box, redraw) }, "Finish the launch"))
      : null,
    box,
  );
}

function endActions(ctx, c, redraw) {
  if (!ctx.can("campaigns:write")) return null;
  const status = h("p", { role: "status" });
  const move = (path, label) =>
    h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: async (event) => {
          const button = event.currentTarget;
          button.disabled = true;
          try {
            await api(`/v1/campaigns/${enc(c.id)}/${path}`, { method: "POST" });
            await redraw();
          } catch (error) {
            clear(status, errorBox(error));
            button.disabled = false;
          }
        },
      },
      label,
    );
  const buttons = [
    c.allowed_transitions.includes("completed") ? move("complete", "Complete campaign") : null,
    c.allowed_transitions.includes("cancelled")
      ? move("cancel", c.status === "running" ? "Cancel campaign" : "Cancel draft")
      : null,
  ].filter(Boolean);
  if (!buttons.length) return null;
  return h("div", {}, h("h2", {}, "End"), h("div", { class: "row" }, buttons), status);
}

// --- results -------------------------------------------------------------------------------

function estimateRow(label, e, scale = 1, unit = "") {
  const show = (v) => (v === null || v === undefined ? "—" : `${num(v * scale, 2)}${unit}`);
  return { label, value: show(e?.value), low: show(e?.low), high: show(e?.high) };
}

const ESTIMATE_COLUMNS = [
  { label: "Measure", value: (r) => r.label },
  { label: "Estimate", numeric: true, value: (r) => r.value },
  { label: "95% low", numeric: true, value: (r) => r.low },
  { label: "95% high", numeric: true, value: (r) => r.high },
];

// A point with its error bar for each estimate that has a value.
function pointsTrace(names, estimates, scale, colours) {
  const v = (e) => (e && e.value !== null && e.value !== undefined ? e.value * scale : null);
  return {
    type: "scatter",
    mode: "markers",
    x: names,
    y: estimates.map(v),
    marker: { size: 13, color: colours },
    error_y: {
      type: "data",
      symmetric: false,
      array: estimates.map((e) => (e && e.high !== null && e.value !== null ? (e.high - e.value) * scale : NaN)),
      arrayminus: estimates.map((e) => (e && e.low !== null && e.value !== null ? (e.value - e.low) * scale : NaN)),
      thickness: 2,
      width: 10,
      color: "#1a1a1a",
    },
    hoverinfo: "x+y",
  };
}

function interval(e, scale, unit) {
  if (!e || e.value === null || e.value === undefined) return "not measurable yet";
  const text = `${num(e.value * scale, 2)}${unit}`;
  if (e.low === null || e.high === null) return `${text} (no interval yet)`;
  return `${text} (95% interval ${num(e.low * scale, 2)}${unit} to ${num(e.high * scale, 2)}${unit})`;
}

function resultsSection(c) {
  const holder = h("div");
  const draw = () => clear(holder, async_block(() => api(`/v1/campaigns/${enc(c.id)}/results`).then(drawResults)));
  draw();
  return h(
    "div",
    {},
    h("h2", { id: "results-title" }, "Results against the holdout"),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: draw }, "Refresh results")),
    holder,
  );
}

function drawResults(r) {
  const t = r.treatment;
  const ho = r.holdout;
  const conversion = chart({
    testid: "uplift-conversion",
    caption: "Conversion: treatment against holdout, and the uplift, with 95% intervals (percent)",
    summary: `Treatment converted ${pct(t.conversion_rate.value)}, holdout ${pct(ho.conversion_rate.value)}; uplift ${interval(r.uplift.conversion, 100, " points")}.`,
    traces: [
      pointsTrace(
        ["Holdout", "Treatment", "Uplift"],
        [ho.conversion_rate, t.conversion_rate, r.uplift.conversion],
        100,
        [COLOURS.holdout, COLOURS.treatment, COLOURS.uplift],
      ),
    ],
    layout: {
      height: 320,
      showlegend: false,
      yaxis: { title: { text: "Percent of customers" }, zeroline: true, zerolinecolor: "#555", ticksuffix: "%" },
    },
    columns: ESTIMATE_COLUMNS,
    rows: [
      estimateRow("Holdout conversion rate (Wilson)", ho.conversion_rate, 100, "%"),
      estimateRow("Treatment conversion rate (Wilson)", t.conversion_rate, 100, "%"),
      estimateRow("Uplift in conversion (percentage points)", r.uplift.conversion, 100, ""),
    ],
  });
  const perCustomer = (value) => ({ value, low: null, high: null });
  const revenue = chart({
    testid: "uplift-revenue",
    caption: "Revenue per customer: treatment against holdout, and the uplift with its 95% interval (Welch)",
    summary: `Revenue per customer: treatment ${num(t.revenue_per_customer, 2)}, holdout ${num(ho.revenue_per_customer, 2)}; uplift ${interval(r.uplift.revenue_per_customer, 1, "")}.`,
    traces: [
      pointsTrace(
        ["Holdout", "Treatment", "Uplift"],
        [perCustomer(ho.revenue_per_customer), perCustomer(t.revenue_per_customer), r.uplift.revenue_per_customer],
        1,
        [COLOURS.holdout, COLOURS.treatment, COLOURS.uplift],
      ),
    ],
    layout: {
      height: 320,
      showlegend: false,
      yaxis: { title: { text: "Revenue per customer" }, zeroline: true, zerolinecolor: "#555" },
    },
    columns: ESTIMATE_COLUMNS,
    rows: [
      estimateRow("Holdout revenue per customer", perCustomer(ho.revenue_per_customer)),
      estimateRow("Treatment revenue per customer", perCustomer(t.revenue_per_customer)),
      estimateRow("Uplift in revenue per customer", r.uplift.revenue_per_customer),
    ],
  });
  const groups = [
    ["Customers", (g) => num(g.customers)],
    ["Converted", (g) => num(g.converted)],
    ["Conversion rate", (g) => pct(g.conversion_rate.value)],
    ["Revenue", (g) => num(g.revenue, 2)],
    ["Revenue per customer", (g) => num(g.revenue_per_customer, 2)],
    ["Offers redeemed", (g) => num(g.redemptions)],
  ];
  const card = (label, value, testid) =>
    h("div", { class: "card" }, h("div", {}, label), h("div", { class: "big", "data-testid": testid }, value));
  return h(
    "div",
    {},
    h(
      "p",
      { class: "muted" },
      `Purchases from ${when(r.window_from)} until ${when(r.window_until)}; the campaign is ${words(r.status)}.`,
    ),
    h(
      "div",
      { class: "cards" },
      card("Treatment customers", num(t.customers), "treatment-count"),
      card("Holdout customers", num(ho.customers), "holdout-count"),
      card("Incremental revenue", num(r.incremental_revenue, 2), "incremental-revenue"),
      card("Offers' cost", num(r.offer_cost, 2)),
      card("Net of the offers' cost", num(r.net_incremental_revenue, 2)),
    ),
    conversion,
    revenue,
    h(
      "table",
      { "data-testid": "results-table" },
      h("caption", {}, "Treatment and holdout"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Measure"),
          h("th", { scope: "col", class: "num" }, "Treatment"),
          h("th", { scope: "col", class: "num" }, "Holdout"),
        ),
      ),
      h(
        "tbody",
        {},
        groups.map(([label, value]) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, label),
            h("td", { class: "num" }, value(t)),
            h("td", { class: "num" }, value(ho)),
          ),
        ),
      ),
    ),
  );
}

function membersSection(ctx, c) {
  return h(
    "div",
    {},
    h("h2", {}, "Members"),
    pagedTable({
      testid: "members",
      caption: "Members by customer id: group and delivery",
      empty: "No members.",
      load: (cursor) => api(`/v1/campaigns/${enc(c.id)}/members`, { query: { limit: 50, cursor } }),
      columns: [
        { label: "Customer", value: (m) => customerLink(ctx, m.customer_id) },
        { label: "Group", value: (m) => pill(m.group) },
        { label: "Promoted", value: (m) => m.promoted || "—" },
        { label: "Delivery", value: (m) => words(m.outcome) + (m.outcome_reason ? ` (${words(m.outcome_reason)})` : "") },
        { label: "Since", value: (m) => when(m.outcome_at || m.promoted_at) },
      ],
    }),
  );
}

// --- offer templates -----------------------------------------------------------------------

function offersSection(ctx) {
  const list = h("div");
  const draw = () =>
    clear(
      list,
      pagedTable({
        testid: "offer-templates",
        caption: "Offer templates, newest first",
        empty: "No offer templates yet.",
        load: (cursor) => api("/v1/offer-templates", { query: { limit: 20, cursor } }),
        columns: [
          { label: "Offer", value: (t) => t.title },
          { label: "Terms", value: (t) => templateTerms(t) },
          { label: "Issued", numeric: true, value: (t) => num(t.issued) },
          { label: "Budget", numeric: true, value: (t) => num(t.budget) },
          { label: "Per customer", numeric: true, value: (t) => num(t.per_customer_cap) },
          { label: "Cost each", numeric: true, value: (t) => num(t.cost) },
          {
            label: "Valid until",
            value: (t) => (expired(t) ? h("span", { class: "late" }, `expired ${day(t.valid_until)}`) : day(t.valid_until)),
          },
        ],
      }),
    );
  draw();
  return section("Offers", list, ctx.can("offers:write") ? offerForm(draw) : null);
}

function offerForm(redrawList) {
  const kind = h(
    "select",
    { name: "kind" },
    Object.entries(TEMPLATE_KINDS).map(([value, label]) => h("option", { value }, label)),
  );
  const amountLabel = h("span", {}, "Percent off");
  const amount = h("input", { name: "amount", required: true, size: 12 });
  const currency = h("input", { name: "currency", value: "USD", size: 4, maxlength: 3 });
  const currencyLabel = h("label", { style: "display: none" }, "Currency", currency);
  kind.addEventListener("change", () => {
    amountLabel.textContent = TEMPLATE_KINDS[kind.value];
    currencyLabel.style.display = kind.value === "amount_off" ? "" : "none";
  });
  return h(
    "div",
    {},
    h("h3", { id: "new-offer" }, "New offer template"),
    form(
      { "aria-labelledby": "new-offer" },
      [
        h(
          "div",
          { class: "row" },
          h("label", {}, "Title", h("input", { name: "title", required: true, maxlength: 200 })),
          h("label", {}, "Kind", kind),
          h("label", {}, amountLabel, amount),
          currencyLabel,
          h("label", {}, "Cost to us of one offer", h("input", { name: "cost", value: "0", size: 8 })),
          h("label", {}, "Valid for (days)", h("input", { name: "valid_days", type: "number", min: 1, max: 3650 })),
        ),
        h("div", {}, h("button", { type: "submit" }, "Create offer")),
      ],
      async (data, node) => {
        const k = data.get("kind");
        const value = String(data.get("amount")).trim();
        const body = { kind: k, title: data.get("title"), cost: String(data.get("cost") || "0").trim() };
        if (k === "percent_off") body.percent_off = value;
        if (k === "amount_off") body.amount_off = { amount: value, currency: String(data.get("currency")).trim().toUpperCase() };
        if (k === "free_item") body.free_item = value;
        if (k === "points") body.points = Number(value);
        if (data.get("valid_days")) body.valid_days = Number(data.get("valid_days"));
        const made = await api("/v1/offer-templates", { method: "POST", json: body });
        templates.dispatchEvent(new CustomEvent("created", { detail: made }));
        redrawList();
        node.querySelector("input[name=title]").value = "";
        node.querySelector("input[name=amount]").value = "";
        return `Offer “${made.title}” created.`;
      },
    ),
  );
}

// --- ideas ---------------------------------------------------------------------------------

function ideasSection(ctx) {
  const sort = h(
    "select",
    { name: "sort" },
    h("option", { value: "votes" }, "Most votes"),
    h("option", { value: "value" }, "Value-weighted demand (the voters' CLV)"),
  );
  const status = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, "Any status"),
    IDEA_STATUSES.map((s) => h("option", { value: s }, words(s))),
  );
  const list = h("div");
  const draw = () =>
    clear(
      list,
      pagedTable({
        testid: "ideas",
        caption: sort.value === "value" ? "Ideas by value-weighted demand" : "Ideas by votes",
        empty: "No ideas here yet.",
        load: (cursor) => api("/v1/ideas", { query: { sort: sort.value, status: status.value, limit: 50, cursor } }),
        columns: ideaColumns(ctx),
      }),
    );
  sort.addEventListener("change", draw);
  status.addEventListener("change", draw);
  draw();
  return section(
    "Ideas board",
    h("div", { class: "row" }, h("label", {}, "Sort by", sort), h("label", {}, "Status", status)),
    list,
  );
}

function ideaColumns(ctx) {
  const statusCell = (idea) =>
    h(
      "span",
      {},
      pill(idea.status, { "data-testid": "idea-status" }),
      idea.status_reason ? h("span", { class: "muted" }, ` ${idea.status_reason}`) : null,
    );
  const columns = [
    {
      label: "Idea",
      value: (idea) =>
        h(
          "div",
          {},
          h("strong", {}, idea.title),
          idea.description
            ? h("div", { class: "muted" }, idea.description.length > 160 ? `${idea.description.slice(0, 160)}…` : idea.description)
            : null,
        ),
    },
    { label: "Area", value: (idea) => words(idea.product_area) },
    { label: "Status", value: (idea) => (idea._status ||= statusCell(idea)) },
    { label: "Votes", numeric: true, value: (idea) => num(idea.votes) },
    {
      label: "Value-weighted demand",
      numeric: true,
      value: (idea) => num(idea.value_weighted_demand, 2) + (idea.unscored_voters ? ` (${idea.unscored_voters} unscored)` : ""),
    },
    { label: "Submitted", value: (idea) => day(idea.submitted_at) },
  ];
  if (ctx.can("ideas:write")) {
    columns.push({ label: "Move to", value: (idea) => (idea._move ||= moveCell(idea, statusCell)) });
  }
  return columns;
}

function moveCell(idea, statusCell) {
  const cell = h("div");
  const draw = (message) => {
    const next = IDEA_NEXT[idea.status] || [];
    if (!next.length) return clear(cell, h("span", { class: "muted" }, "final"), message);
    const to = h(
      "select",
      { name: "status", "aria-label": `New status of “${idea.title}”` },
      next.map((s) => h("option", { value: s }, words(s))),
    );
    const reason = h("input", {
      name: "reason",
      size: 18,
      maxlength: 1000,
      placeholder: "Reason (public)",
      "aria-label": `Reason customers read, for “${idea.title}” (needed to decline)`,
    });
    const outcome = h("span", { role: "status" }, message);
    const move = h("form", { class: "row" }, to, reason, h("button", { type: "submit", class: "secondary" }, "Move"), outcome);
    move.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = move.querySelector("button");
      button.disabled = true;
      try {
        const changed = await api(`/v1/ideas/${enc(idea.id)}/status`, {
          method: "POST",
          json: { status: to.value, reason: reason.value.trim() || null },
        });
        Object.assign(idea, changed);
        clear(idea._status, ...statusCell(idea).childNodes);
        draw(h("span", { class: "ok" }, `Moved to ${words(changed.status)}.`));
        const first = cell.querySelector("select") || cell.querySelector("[role=status]") || cell;
        first.focus?.();
      } catch (error) {
        button.disabled = false;
        clear(outcome, h("span", { class: "error" }, error.message));
      }
    });
    clear(cell, move);
  };
  draw();
  return cell;
}

// --- the value map -------------------------------------------------------------------------

function valueMapSection() {
  const segment = h(
    "select",
    { name: "segment" },
    h("option", { value: "" }, "Every segment"),
    vocabulary.segments.map((s) => h("option", { value: s }, words(s))),
  );
  const from = h("input", { type: "date", name: "from" });
  const to = h("input", { type: "date", name: "to" });
  const out = h("div");
  const draw = () => {
    const query = { segment: segment.value, from: from.value, to: to.value };
    clear(out, async_block(() => api(withQuery("/v1/value-map", query)).then(drawMap)));
  };
  const filters = h(
    "form",
    { class: "row", "aria-label": "Value map filters" },
    h("label", {}, "Segment", segment),
    h("label", {}, "From (UTC day)", from),
    h("label", {}, "To (UTC day)", to),
    h("div", {}, h("button", { type: "submit" }, "Show the map")),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    draw();
  });
  draw();
  return section(
    "Value map",
    h(
      "p",
      { class: "muted" },
      "How customers rate us and each competitor, attribute by attribute (1 worst to 10 best), and Gale's value map: perceived quality against perceived price.",
    ),
    filters,
    out,
  );
}

function drawMap(map) {
  const rated = map.subjects.filter((s) => s.attributes.some((a) => a.ratings > 0));
  const unrated = map.subjects.length - rated.length;
  const unmapped = map.unmapped.ratings
    ? h(
        "p",
        { class: "muted" },
        `${num(map.unmapped.ratings)} ratings could not be mapped ` +
          `(unknown attribute ${num(map.unmapped.unknown_attribute)}, ` +
          `unknown competitor ${num(map.unmapped.unknown_subject)}, ` +
          `out of range ${num(map.unmapped.score_out_of_range)})` +
          (map.unmapped.names.length ? `: ${map.unmapped.names.map((n) => n.name).join(", ")}.` : "."),
      )
    : null;
  if (!rated.length) return h("div", {}, h("p", {}, "No ratings in this window yet."), unmapped);
  const attributes = map.weights.map((w) => w.attribute);
  const meanOf = (subject, attribute) => subject.attributes.find((a) => a.attribute === attribute) || { mean_score: null, ratings: 0 };
  const subjectName = (s) => (s.subject === "us" ? "Us" : s.subject);
  const byAttribute = chart({
    testid: "value-map-attributes",
    caption: "Ratings per attribute: us against competitors (mean score, 1 to 10)",
    summary: `Mean scores of ${rated.length} subjects over ${attributes.length} attributes, from ${num(map.ratings)} ratings.`,
    traces: rated.map((s, i) => ({
      type: "bar",
      name: subjectName(s),
      x: attributes,
      y: attributes.map((a) => meanOf(s, a).mean_score),
      marker: { color: SUBJECT_COLOURS[i % SUBJECT_COLOURS.length] },
    })),
    layout: { barmode: "group", height: 340, yaxis: { range: [0, 10], title: { text: "Mean score" } } },
    columns: [
      { label: "Attribute", value: (row) => row.attribute },
      { label: "Weight share", numeric: true, value: (row) => pct(row.share) },
      ...rated.map((s) => ({
        label: subjectName(s),
        numeric: true,
        value: (row) => {
          const m = meanOf(s, row.attribute);
          return m.mean_score === null ? "—" : `${num(m.mean_score, 2)} (${num(m.ratings)})`;
        },
      })),
    ],
    rows: map.weights,
  });
  const placed = rated.filter((s) => s.perceived_price.value !== null && s.perceived_quality.value !== null);
  const traces = [
    {
      type: "scatter",
      mode: "markers+text",
      x: placed.map((s) => s.perceived_price.value),
      y: placed.map((s) => s.perceived_quality.value),
      text: placed.map(subjectName),
      textposition: "top center",
      marker: { size: 14, color: placed.map((s) => (s.subject === "us" ? COLOURS.uplift : COLOURS.treatment)) },
      name: "Subjects",
    },
  ];
  const line = map.fair_value_line;
  if (line.slope !== null && line.intercept !== null && placed.length) {
    const xs = placed.map((s) => s.perceived_price.value);
    const lo = Math.max(1, Math.min(...xs) - 1);
    const hi = Math.min(10, Math.max(...xs) + 1);
    traces.push({
      type: "scatter",
      mode: "lines",
      x: [lo, hi],
      y: [line.intercept + line.slope * lo, line.intercept + line.slope * hi],
      line: { dash: "dash", color: "#555" },
      name: "Fair-value line",
    });
  }
  const figure = (metric, digits = 2) => (metric.value === null ? "—" : num(metric.value, digits));
  const valueMap = chart({
    testid: "value-map",
    caption: "The value map: perceived quality against perceived price, with the fair-value line",
    summary:
      line.slope === null
        ? "Too few subjects with both a quality and a price rating to draw the fair-value line."
        : `Fair-value line: quality = ${num(line.intercept, 2)} + ${num(line.slope, 3)} × price, through ${line.points} subjects. Above the line is better value.`,
    traces,
    layout: {
      height: 380,
      xaxis: { title: { text: "Perceived price (1 cheap to 10 expensive)" }, range: [0, 11] },
      yaxis: { title: { text: "Perceived quality (1 to 10)" }, range: [0, 11] },
    },
    columns: [
      { label: "Subject", value: (s) => subjectName(s) },
      { label: "Perceived quality", numeric: true, value: (s) => figure(s.perceived_quality) },
      { label: "Price score", numeric: true, value: (s) => figure(s.price_score) },
      { label: "Perceived price", numeric: true, value: (s) => figure(s.perceived_price) },
      { label: "Perceived worth", numeric: true, value: (s) => figure(s.perceived_worth) },
      { label: "Value added (us ÷ them)", numeric: true, value: (s) => figure(s.value_added_ratio, 3) },
      { label: "Against the line", numeric: true, value: (s) => (s.value_position === null ? "—" : num(s.value_position, 2)) },
      { label: "Ratings", numeric: true, value: (s) => num(s.perceived_worth.ratings || s.perceived_quality.ratings) },
    ],
    rows: rated,
  });
  return h(
    "div",
    {},
    h(
      "p",
      { class: "muted" },
      `${num(map.ratings)} ratings` +
        (map.segment ? ` from ${words(map.segment)} customers` : "") +
        (unrated ? `; ${unrated} competitors have no ratings here.` : "."),
    ),
    byAttribute,
    valueMap,
    unmapped,
  );
}
