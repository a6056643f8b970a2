// Building the page. Every value from the API goes in as text (textContent or an attribute
// set through the DOM), never as HTML: a customer named <script>…</script> shows as text.

// h("button", {class: "secondary", onclick: fn, "aria-label": "…"}, "text", childNode, …)
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "value" || name === "checked" || name === "selected" || name === "disabled") {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const percentFormat = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

export function num(value, digits) {
  if (value === undefined || value === null || value === "") return "—";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return digits === undefined ? numberFormat.format(n) : n.toFixed(digits);
}

export function pct(value) {
  if (value === undefined || value === null) return "—";
  return percentFormat.format(Number(value));
}

export function money(amount, currency) {
  if (amount === undefined || amount === null) return "—";
  const n = Number(amount);
  if (!currency) return numberFormat.format(n);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(n);
  } catch {
    return `${numberFormat.format(n)} ${currency}`;
  }
}

export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

export function day(value) {
  if (!value) return "—";
  return String(value).slice(0, 10);
}

// A table. columns: [{label, value: row => text|Node, numeric?}]; `hideCaption` keeps the caption
// for screen readers only (where a heading just above already says it).
export function table({ columns, rows, caption, empty = "Nothing here yet.", hideCaption = false }) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h(
    "table",
    {},
    caption ? h("caption", { class: hideCaption ? "visually-hidden" : null }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : null }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h("tr", {}, columns.map((c) => h("td", { class: c.numeric ? "num" : null }, c.value(row) ?? "—"))),
      ),
    ),
  );
}

// A chart with its text alternatives: the figure's caption names it, a sentence says what it
// shows, and the numbers behind it sit one click away in a table under "Show the numbers".
// (The plot itself is no role="img": Plotly puts buttons inside it, and an image may hold no
// controls.)
export function chart({ caption, summary, traces, layout = {}, columns, rows, testid }) {
  const plot = h("div", { class: "plot" });
  const figure = h(
    "figure",
    { class: "chart", "data-testid": testid },
    h("figcaption", {}, caption),
    summary ? h("p", { class: "muted" }, summary) : null,
    plot,
    h("details", {}, h("summary", {}, "Show the numbers"), table({ columns, rows, caption })),
  );
  const draw = () => {
    if (!window.Plotly) {
      plot.replaceChildren(h("p", { class: "muted" }, "The chart library did not load; the numbers are below."));
      return;
    }
    window.Plotly.newPlot(
      plot,
      traces,
      { margin: { t: 20, r: 20, b: 50, l: 60 }, font: { family: "system-ui, sans-serif", size: 13 }, ...layout },
      { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] },
    );
  };
  // Plotly measures its container: draw once the figure is in the document.
  requestAnimationFrame(draw);
  return figure;
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, error && error.message ? error.message : String(error));
}

export function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), ...children);
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// Renders `load()`'s result into a fresh container, with "Loading…" first and the error if it fails.
export function async_block(load) {
  const box = h("div", { "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  Promise.resolve()
    .then(load)
    .then(
      (content) => clear(box, content),
      (error) => clear(box, errorBox(error)),
    )
    .finally(() => box.removeAttribute("aria-busy"));
  return box;
}

// A form whose submit runs `action(formData)` and shows its outcome in a status line.
export function form(attrs, children, action) {
  const status = h("p", { role: "status", class: "muted" });
  const node = h("form", attrs, children, status);
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = node.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    status.className = "muted";
    status.textContent = "Working…";
    try {
      const message = await action(new FormData(node), node);
      status.className = "ok";
      status.textContent = message || "Done.";
    } catch (error) {
      status.className = "error";
      status.textContent = error && error.message ? error.message : String(error);
    } finally {
      if (button) button.disabled = false;
    }
  });
  return node;
}
