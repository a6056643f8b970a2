// Portfolio: how concentrated the value is (Pareto and Lorenz curves, Gini), the RFM segments by
// size and value, the four kinds of strategically significant customer, and the model with a refit.
// identify computes the curves and segments at refit and serves the stored result.

import { api, ApiError } from "../api.js";
import { chart, clear, h, money, num, pct, section, table, when } from "../dom.js";

const KINDS = [
  ["high_future_value", "High future lifetime value"],
  ["benchmark", "Benchmark (others imitate them)"],
  ["inspiration", "Inspiration (they drive improvement)"],
  ["cost_absorber", "Cost absorber"],
];

function paretoSection(pareto) {
  const top20 = pareto.shares.find((share) => Math.abs(share.top - 0.2) < 1e-9);
  // The Lorenz curve runs smallest customers first; the Pareto curve is the same curve read
  // from the largest: the top x of customers hold 1 - L(1 - x) of the revenue.
  const lorenz = pareto.lorenz;
  const paretoX = lorenz.map(([x]) => 1 - x).reverse();
  const paretoY = lorenz.map(([, y]) => 1 - y).reverse();
  return section(
    "Concentration",
    h(
      "div",
      { class: "cards" },
      h("div", { class: "card", "data-testid": "top20-share" }, h("div", { class: "big" }, top20 ? pct(top20.revenue_share) : "—"), "of revenue from the top 20% of customers"),
      h("div", { class: "card" }, h("div", { class: "big" }, top20 ? pct(top20.profit_share) : "—"), "of profit from the top 20%"),
      h("div", { class: "card", "data-testid": "gini" }, h("div", { class: "big" }, num(pareto.gini, 3)), "Gini coefficient of revenue"),
      h("div", { class: "card" }, h("div", { class: "big" }, num(pareto.customers)), "customers"),
    ),
    chart({
      testid: "pareto-chart",
      caption: "Pareto curve and Lorenz curve",
      summary: top20
        ? `The top 20% of customers bring ${pct(top20.revenue_share)} of revenue; the Gini coefficient is ${num(pareto.gini, 3)}.`
        : `The Gini coefficient is ${num(pareto.gini, 3)}.`,
      traces: [
        { x: paretoX, y: paretoY, name: "Pareto: top share of customers → share of revenue", mode: "lines" },
        { x: lorenz.map(([x]) => x), y: lorenz.map(([, y]) => y), name: "Lorenz: smallest first", mode: "lines" },
        { x: [0, 1], y: [0, 1], name: "Equality", mode: "lines", line: { dash: "dot", color: "#888" } },
      ],
      layout: {
        xaxis: { title: { text: "Share of customers" }, tickformat: ".0%", range: [0, 1] },
        yaxis: { title: { text: "Share of revenue" }, tickformat: ".0%", range: [0, 1] },
        legend: { orientation: "h", y: -0.25 },
        height: 420,
      },
      columns: [
        { label: "Top share of customers", value: (s) => pct(s.top) },
        { label: "Customers", value: (s) => num(s.customers), numeric: true },
        { label: "Share of revenue", value: (s) => pct(s.revenue_share), numeric: true },
        { label: "Share of profit", value: (s) => pct(s.profit_share), numeric: true },
      ],
      rows: pareto.shares,
    }),
  );
}

function segmentsSection(segments) {
  const rows = segments.segments;
  const names = rows.map((s) => s.segment.replaceAll("_", " "));
  const columns = [
    { label: "Segment", value: (s) => h("a", { href: `#/customers?segment=${encodeURIComponent(s.segment)}` }, s.segment.replaceAll("_", " ")) },
    { label: "Customers", value: (s) => num(s.customers), numeric: true },
    { label: "Revenue", value: (s) => money(s.revenue), numeric: true },
    { label: "Historic CLV", value: (s) => money(s.historic_clv), numeric: true },
    { label: "Predicted CLV", value: (s) => money(s.predicted_clv), numeric: true },
  ];
  const layout = { height: 340, xaxis: { tickangle: -30 }, margin: { t: 10, r: 10, b: 110, l: 70 } };
  const largest = [...rows].sort((a, b) => b.predicted_clv - a.predicted_clv)[0];
  return section(
    "Segments",
    h(
      "div",
      { class: "pair" },
      chart({
        testid: "segments-count-chart",
        caption: "Segments by number of customers",
        summary: `${rows.length} RFM segments over ${num(segments.customers)} scored customers.`,
        traces: [{ type: "bar", x: names, y: rows.map((s) => s.customers), name: "Customers", marker: { color: "#1f77b4" } }],
        layout: { ...layout, yaxis: { title: { text: "Customers" } } },
        columns,
        rows,
      }),
      chart({
        testid: "segments-value-chart",
        caption: "Segments by predicted lifetime value",
        summary: largest ? `The most valuable segment is ${largest.segment.replaceAll("_", " ")}, with ${money(largest.predicted_clv)} of predicted CLV.` : "No segment yet.",
        traces: [{ type: "bar", x: names, y: rows.map((s) => s.predicted_clv), name: "Predicted CLV", marker: { color: "#2c7a3f" } }],
        layout: { ...layout, yaxis: { title: { text: "Predicted CLV" } } },
        columns,
        rows,
      }),
    ),
  );
}

function kindsSection(counts) {
  return section(
    "Strategically significant customers",
    table({
      caption: "Customers of each kind",
      columns: [
        { label: "Kind", value: ([, label]) => label },
        { label: "Customers", value: ([kind]) => num(counts[kind] ?? 0), numeric: true },
        { label: "List", value: ([kind, label]) => h("a", { href: `#/customers?kind=${kind}`, "aria-label": `Show the ${label} customers` }, "Show them") },
      ],
      rows: KINDS,
    }),
  );
}

function refitControl(ctx, onDone) {
  const status = h("p", { role: "status", "data-testid": "refit-status" });
  const bar = h("progress", { class: "progress", hidden: true, "aria-label": "Refit progress" });
  const button = h("button", { type: "button" }, "Refit the model");
  button.addEventListener("click", async () => {
    button.disabled = true;
    bar.hidden = false;
    bar.removeAttribute("value"); // indeterminate while it runs
    try {
      const started = await api("/v1/portfolio/refits", { method: "POST", json: {} });
      status.textContent = started.joined ? "Joined a refit already queued…" : "Refit queued…";
      let refit;
      do {
        await new Promise((resolve) => setTimeout(resolve, 500));
        refit = await api(`/v1/portfolio/refits/${encodeURIComponent(started.id)}`);
        status.textContent = `Refit ${refit.status}${refit.customers_scored ? `: ${num(refit.customers_scored)} customers scored` : ""}…`;
      } while (refit.status === "queued" || refit.status === "running");
      bar.hidden = true;
      if (refit.status === "failed") throw new Error(`The refit failed: ${refit.failure}`);
      status.textContent = `Refit done: model version ${refit.model_version}, ${num(refit.customers_scored)} customers scored.`;
      await onDone();
    } catch (error) {
      status.textContent = error.message;
      status.className = "error";
    } finally {
      button.disabled = false;
    }
  });
  return h("div", {}, ctx.can("portfolio:write") ? h("div", { class: "row" }, button, bar) : null, status);
}

function modelSection(model) {
  if (!model) return h("p", { class: "muted" }, "No model has been fitted yet.");
  return h(
    "div",
    {},
    h(
      "p",
      { "data-testid": "model-summary" },
      `Model version ${model.version}, fitted ${when(model.fitted_at)} on ${num(model.customers)} customers; scores as of ${model.as_of}; time unit ${model.time_unit}.`,
    ),
    table({
      caption: "Parameters",
      columns: [
        { label: "Model", value: (row) => row[0] },
        { label: "Parameters", value: (row) => row[1] },
      ],
      rows: [
        ["BG/NBD", Object.entries(model.bgnbd).map(([k, v]) => `${k} = ${num(v, 3)}`).join(", ")],
        ["Pareto/NBD", model.pareto_nbd ? Object.entries(model.pareto_nbd).map(([k, v]) => `${k} = ${num(v, 3)}`).join(", ") : model.pareto_nbd_error || "—"],
        ["Gamma-Gamma", Object.entries(model.gamma_gamma).map(([k, v]) => `${k} = ${num(v, 3)}`).join(", ")],
        ["Discounting", `${pct(model.discount_rate)} a year over ${model.clv_horizon_days} days`],
      ],
    }),
  );
}

async function optional(path) {
  try {
    return await api(path);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export default {
  id: "portfolio",
  title: "Portfolio",
  scopes: ["portfolio:read"],
  async render(ctx) {
    const modelBox = h("div");
    const body = h("div");
    const load = async () => {
      const [pareto, segments, model] = await Promise.all([
        api("/v1/portfolio/pareto"),
        api("/v1/portfolio/segments"),
        optional("/v1/portfolio/model"),
      ]);
      clear(modelBox, modelSection(model));
      clear(body, paretoSection(pareto), segmentsSection(segments), kindsSection(segments.kinds || {}));
    };
    await load();
    return h("div", {}, h("h1", {}, "Portfolio"), section("Model", modelBox, refitControl(ctx, load)), body);
  },
};
