// Form widgets shared by pages: a labelled field, a paged table, a secret shown once, an
// in-place confirmation. Like dom.js, they build the DOM from text only.

import { api } from "./api.js";
import { clear, h, table } from "./dom.js";


export function words(text) {
  return String(text || "")
    .split(/[\s,]+/)
    .map((word) => word.trim())
    .filter(Boolean);
}

// A labelled input, laid out as console.css lays out a label, with its help (if any) under it as
// its description. The label does not wrap the input: a wrapped <select> would add its chosen
// option to its own accessible name ("Role readonly").
let fields = 0;
export function field(label, input, help) {
  const id = input.id || `field-${++fields}`;
  input.id = id;
  if (help) input.setAttribute("aria-describedby", `${id}-help`);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    help ? h("span", { id: `${id}-help`, class: "muted small" }, help) : null,
  );
}

// datetime-local (the user's local time) → an instant with a zone, as the API wants.
export function instant(value) {
  const text = String(value || "").trim();
  return text ? new Date(text).toISOString() : undefined;
}

// A cursor-paginated list drawn as a table, with "Load more"; `query()` is read at each load.
export function pagedTable({ path, query = () => ({}), columns, caption, empty, limit = 50 }) {
  let rows = [];
  let cursor = null;
  let ticket = 0;
  const body = h("div", { "aria-live": "polite" });
  const status = h("p", { role: "status", class: "muted" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  async function load(fresh) {
    const mine = ++ticket;
    if (fresh) cursor = null;
    more.disabled = true;
    status.className = "muted";
    status.textContent = "Loading…";
    try {
      const page = await api(path, { query: { ...query(), limit, cursor: cursor || undefined } });
      if (mine !== ticket) return;
      rows = fresh ? page.items : rows.concat(page.items);
      cursor = page.next_cursor;
      clear(body, table({ columns, rows, caption, empty }));
      status.textContent = fresh ? `Updated ${new Date().toLocaleTimeString()}.` : "";
      more.hidden = !cursor;
    } catch (error) {
      if (mine !== ticket) return;
      status.className = "error";
      status.textContent = error.message;
    } finally {
      if (mine === ticket) more.disabled = false;
    }
  }
  more.addEventListener("click", () => load(false));
  load(true);
  return { node: h("div", {}, body, more, status), reload: () => load(true) };
}

export function secretBox(label, secret, note) {
  const input = h("input", { type: "text", readonly: true, value: secret, size: 60 });
  const copied = h("span", { role: "status", class: "muted" });
  const copy = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(secret);
          copied.textContent = "Copied.";
        } catch {
          input.select();
          copied.textContent = "Selected: copy it with Ctrl+C.";
        }
      },
    },
    "Copy",
  );
  return h(
    "div",
    { class: "card" },
    h("p", {}, h("strong", {}, "Shown only now. "), note),
    h("div", { class: "row" }, field(label, input), copy, copied),
  );
}

// A confirmation drawn in place of a destructive click (no window.confirm: it is not keyboard-
// friendly in every browser and headless tests dismiss it). ask(question, extra fields or null,
// the button's label, act(formData)).
export function confirmArea() {
  const area = h("div", { role: "region", "aria-label": "Confirm", hidden: true });
  const close = () => {
    area.hidden = true;
    clear(area);
  };
  return {
    node: area,
    close,
    ask(question, extra, label, act) {
      const status = h("p", { role: "status" });
      const yes = h("button", { type: "submit" }, label);
      const no = h("button", { type: "button", class: "secondary", onclick: close }, "Cancel");
      const box = h(
        "form",
        { class: "card", "aria-label": question },
        h("p", {}, question),
        extra,
        h("div", { class: "row" }, yes, no),
        status,
      );
      box.addEventListener("submit", async (event) => {
        event.preventDefault();
        yes.disabled = true;
        try {
          await act(new FormData(box));
          close();
        } catch (error) {
          clear(status, h("span", { class: "error" }, error.message));
          yes.disabled = false;
        }
      });
      clear(area, box);
      area.hidden = false;
      yes.focus();
    },
  };
}
