// Import: upload a file of transactions, map its columns with a preview of the first rows, watch
// the progress bar, and see the rejected lines with their reasons. The browser reads the file's
// first lines for the preview and counts its lines for the bar; identify parses the file itself.

import { api } from "../api.js";
import { clear, errorBox, h, num, table, when } from "../dom.js";

const OURS = [
  ["customer_external_id", "Customer's external id (required)"],
  ["occurred_at", "Date and time (required)"],
  ["amount", "Amount (required)"],
  ["currency", "Currency"],
  ["external_id", "Transaction's external id"],
  ["margin", "Margin"],
  ["cost", "Cost"],
];
const PREVIEW_BYTES = 64 * 1024;
const PREVIEW_ROWS = 5;

function splitter(delimiter) {
  if (delimiter === "whitespace") return (line) => line.trim().split(/\s+/);
  if (delimiter === "tab") return (line) => line.split("\t");
  return (line) => line.split(delimiter); // a preview: quoted delimiters are identify's to read
}

function guessDelimiter(line) {
  if (line.includes("\t")) return "tab";
  if (line.includes(",")) return ",";
  if (line.includes(";")) return ";";
  return "whitespace";
}

async function countLines(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let lines = 0;
  for (const byte of bytes) if (byte === 10) lines += 1;
  if (bytes.length && bytes[bytes.length - 1] !== 10) lines += 1;
  return lines;
}

function mappingTable(names) {
  return table({
    caption: "Columns: the file's → ours",
    columns: [
      { label: "The file's column", value: (name) => name },
      {
        label: "Imported as",
        value: (name) =>
          h(
            "select",
            { "aria-label": `Import column ${name} as`, "data-column": name },
            h("option", { value: "" }, "Not imported"),
            OURS.map(([ours, label]) => h("option", { value: ours, selected: ours === name }, label)),
          ),
      },
    ],
    rows: names,
  });
}

function uploadView(ctx) {
  const fileInput = h("input", { id: "import-file", type: "file", accept: ".csv,.txt,.tsv,.ndjson,.jsonl,text/csv", required: true });
  const headerBox = h("input", { id: "has-header", type: "checkbox" });
  const delimiterSelect = h(
    "select",
    { id: "delimiter" },
    [["", "Guess"], [",", "Comma"], [";", "Semicolon"], ["tab", "Tab"], ["whitespace", "Spaces"]].map(([v, t]) => h("option", { value: v }, t)),
  );
  const currency = h("input", { id: "currency", maxlength: 3, size: 4, placeholder: "USD", autocomplete: "off" });
  const dateFormat = h("input", { id: "date-format", size: 10, placeholder: "%Y-%m-%d", autocomplete: "off" });
  const create = h("input", { id: "create-customers", type: "checkbox", checked: true });
  const preview = h("div", { "data-testid": "preview" });
  const mapping = h("div", { "data-testid": "mapping" });
  const start = h("button", { type: "submit", disabled: true }, "Import");
  const progressBox = h("div");
  let columnNames = [];
  let fileLines = 0;

  async function readHead() {
    const file = fileInput.files[0];
    if (!file) return;
    const text = await file.slice(0, PREVIEW_BYTES).text();
    const lines = text.split(/\r?\n/).filter((line) => line.trim()).slice(0, PREVIEW_ROWS + 1);
    if (!lines.length) {
      clear(preview, errorBox("The file is empty."));
      return;
    }
    const delimiter = delimiterSelect.value || guessDelimiter(lines[0]);
    const split = splitter(delimiter);
    const first = split(lines[0]);
    if (!headerBox.dataset.touched) headerBox.checked = first.some((cell) => cell.trim() && Number.isNaN(Number(cell)) && !/^\d{4}-?\d{2}-?\d{2}/.test(cell));
    const hasHeader = headerBox.checked;
    columnNames = hasHeader ? first.map((c) => c.trim()) : first.map((_, i) => `column_${i + 1}`);
    const rows = (hasHeader ? lines.slice(1) : lines).slice(0, PREVIEW_ROWS).map(split);
    clear(
      preview,
      table({
        caption: `The first ${rows.length} rows`,
        columns: columnNames.map((name, i) => ({ label: name, value: (row) => row[i] ?? "" })),
        rows,
      }),
    );
    clear(mapping, mappingTable(columnNames));
    fileLines = (await countLines(file)) - (hasHeader ? 1 : 0);
    start.disabled = false;
  }

  fileInput.addEventListener("change", () => readHead().catch((e) => clear(preview, errorBox(e))));
  delimiterSelect.addEventListener("change", () => readHead().catch((e) => clear(preview, errorBox(e))));
  headerBox.addEventListener("change", () => {
    headerBox.dataset.touched = "1";
    readHead().catch((e) => clear(preview, errorBox(e)));
  });

  const formNode = h(
    "form",
    { "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload a file of transactions"),
    h("div", { class: "row" },
      h("label", { for: "import-file" }, "File (CSV or NDJSON)", fileInput),
      h("div", { class: "field" }, h("label", { for: "delimiter" }, "Separator"), delimiterSelect),
      h("label", { for: "has-header" }, "First line names the columns", headerBox),
    ),
    h("h3", {}, "Preview"),
    preview,
    h("h3", {}, "Map the columns"),
    mapping,
    h("div", { class: "row" },
      h("label", { for: "currency" }, "Currency of rows without one", currency),
      h("label", { for: "date-format" }, "Date format (optional)", dateFormat),
      h("label", { for: "create-customers" }, "Create customers for unknown ids", create),
    ),
    start,
  );
  formNode.addEventListener("submit", async (event) => {
    event.preventDefault();
    start.disabled = true;
    try {
      const chosen = {};
      for (const select of mapping.querySelectorAll("select[data-column]")) {
        if (select.value) chosen[select.dataset.column] = select.value;
      }
      const data = new FormData();
      data.append("file", fileInput.files[0]);
      data.append("mapping", JSON.stringify(chosen));
      if (!headerBox.checked) data.append("columns", columnNames.join(","));
      const delimiter = delimiterSelect.value;
      if (delimiter) data.append("delimiter", delimiter);
      if (currency.value.trim()) data.append("currency", currency.value.trim().toUpperCase());
      if (dateFormat.value.trim()) data.append("date_format", dateFormat.value.trim());
      data.append("create_customers", create.checked ? "true" : "false");
      const started = await api("/v1/imports", { method: "POST", body: data });
      clear(progressBox, progressView(started.id, fileLines));
    } catch (error) {
      clear(progressBox, errorBox(error));
    } finally {
      start.disabled = false;
    }
  });
  return h("div", {}, formNode, progressBox);
}

// The job's progress: rows read against the file's rows, polled until it ends.
function progressView(id, total) {
  const bar = h("progress", { class: "progress", max: Math.max(total, 1), value: 0, "aria-label": "Import progress", "data-testid": "import-progress" });
  const label = h("p", { role: "status", "aria-live": "polite", "data-testid": "import-status" }, "Starting…");
  const rejected = h("div");
  const box = h("section", {}, h("h2", {}, "Progress"), bar, label, rejected);
  const poll = async () => {
    let job;
    try {
      job = await api(`/v1/imports/${encodeURIComponent(id)}`);
    } catch (error) {
      clear(rejected, errorBox(error));
      return;
    }
    const done = job.status !== "running";
    const read = done ? Math.max(job.rows_read, total) : Math.min(job.rows_read, total);
    bar.value = done && job.status === "done" ? bar.max : read;
    const percent = Math.round((100 * bar.value) / bar.max);
    label.textContent =
      `${percent}% — ${num(job.rows_read)} of ${num(total)} rows read: ${num(job.recorded)} recorded, ` +
      `${num(job.duplicates)} already there, ${num(job.rejected)} rejected, ${num(job.customers_created)} customers created` +
      (done ? ` (${job.status}${job.failure ? ": " + job.failure : ""})` : "");
    if (!done) {
      if (box.isConnected) setTimeout(poll, 400);
      return;
    }
    if (job.errors.length) clear(rejected, rejectedTable(job));
  };
  setTimeout(poll, 200);
  return box;
}

function rejectedTable(job) {
  return h(
    "div",
    {},
    h("h3", {}, "Rejected lines"),
    table({
      caption: `Rejected lines${job.errors_truncated ? ` (the first ${job.errors.length} of ${num(job.errors_total)})` : ""}`,
      columns: [
        { label: "Line", value: (e) => num(e.line), numeric: true },
        { label: "Reason", value: (e) => e.reason },
        { label: "Text", value: (e) => h("code", {}, e.raw || "") },
      ],
      rows: job.errors,
    }),
  );
}

function recentImports() {
  const box = h("div");
  api("/v1/imports", { query: { limit: 10 } }).then(
    (page) =>
      clear(
        box,
        table({
          caption: "Recent imports",
          empty: "No imports yet.",
          columns: [
            { label: "File", value: (j) => j.filename },
            { label: "Status", value: (j) => j.status },
            { label: "Rows", value: (j) => num(j.rows_read), numeric: true },
            { label: "Recorded", value: (j) => num(j.recorded), numeric: true },
            { label: "Rejected", value: (j) => num(j.rejected), numeric: true },
            { label: "Started", value: (j) => when(j.created_at) },
          ],
          rows: page.items,
        }),
      ),
    (error) => clear(box, errorBox(error)),
  );
  return box;
}

export default {
  id: "import",
  title: "Import",
  scopes: ["imports:write"],
  render(ctx) {
    return h("div", {}, h("h1", {}, "Import"), uploadView(ctx), h("h2", {}, "Earlier imports"), recentImports());
  },
};
