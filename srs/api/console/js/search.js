// Search: a form whose values are the list endpoint's query parameters, mirrored in the URL hash;
// the table shows one page of the API's pagination at a time (never all rows).

import { API, isAdmin, request } from "./api.js";
import { fmtDuration, fmtTime, h, participantText, toast } from "./dom.js";
import { startExport } from "./exports.js";

const STATES = ["", "starting", "recording", "stopping", "available", "failed"];
const TEXT_FIELDS = [
  ["call_recording_id", "Call-recording-id", "text"],
  ["participant", "Participant (name or AOR)", "text"],
  ["source", "Source SBC", "text"],
  ["sip_call_id", "SIP Call-ID", "text"],
];
export const FILTER_KEYS = ["state", "start", "end", "call_recording_id", "participant", "sip_call_id", "source",
  "min_duration", "max_duration"];
const PAGE_SIZES = [25, 50, 100, 200];

function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return shifted.toISOString().slice(0, 16);
}

function field(name, label, input) {
  input.id = `f-${name}`;
  input.name = name;
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
}

// The filter part of the hash query (what an export "of this search" sends too).
export function filterFrom(params) {
  const filter = {};
  for (const key of FILTER_KEYS) {
    const value = params.get(key);
    if (value) filter[key] = value;
  }
  const ext = params.getAll("extension").filter(Boolean);
  if (ext.length) filter.extension = ext;
  return filter;
}

function buildForm(params) {
  const inputs = {};
  const parts = [];
  for (const [name, label, type] of TEXT_FIELDS) {
    inputs[name] = h("input", { type, value: params.get(name) || "", autocomplete: "off" });
    parts.push(field(name, label, inputs[name]));
  }
  inputs.state = h("select", {}, STATES.map((s) => h("option", { value: s, selected: params.get("state") === s },
    s || "any")));
  parts.push(field("state", "State", inputs.state));
  inputs.start = h("input", { type: "datetime-local", value: localInput(params.get("start")) });
  parts.push(field("start", "Started from", inputs.start));
  inputs.end = h("input", { type: "datetime-local", value: localInput(params.get("end")) });
  parts.push(field("end", "Started before", inputs.end));
  inputs.min_duration = h("input", { type: "number", min: "0", step: "any", value: params.get("min_duration") || "" });
  parts.push(field("min_duration", "Min duration (s)", inputs.min_duration));
  inputs.max_duration = h("input", { type: "number", min: "0", step: "any", value: params.get("max_duration") || "" });
  parts.push(field("max_duration", "Max duration (s)", inputs.max_duration));
  inputs.extension = h("textarea", { rows: 2, placeholder: "key=value, one per line" });
  inputs.extension.value = params.getAll("extension").join("\n");
  parts.push(field("extension", "Vendor extension", inputs.extension));

  const form = h("form", { class: "search", role: "search", "aria-label": "Find recordings" },
    h("div", { class: "fields" }, parts),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Search"),
      h("button", { type: "reset", class: "secondary" }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of ["call_recording_id", "participant", "source", "sip_call_id", "state", "min_duration",
      "max_duration"]) {
      const value = inputs[name].value.trim();
      if (value) next.set(name, value);
    }
    for (const name of ["start", "end"]) {
      if (inputs[name].value) next.set(name, new Date(inputs[name].value).toISOString());
    }
    for (const line of inputs.extension.value.split("\n")) if (line.trim()) next.append("extension", line.trim());
    for (const keep of ["max", "order"]) if (params.get(keep)) next.set(keep, params.get(keep));
    location.hash = `#/search?${next}`;
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    location.hash = "#/search";
  });
  return form;
}

function flags(rec) {
  const out = [];
  if (rec.incomplete) out.push(h("span", { class: "flag warn", title: rec.incomplete_reason || "" }, "incomplete"));
  if (rec.legal_hold) out.push(h("span", { class: "flag hold" }, "legal hold"));
  if (rec.warnings && rec.warnings.length) out.push(h("span", { class: "flag" }, `${rec.warnings.length} warnings`));
  const streams = (rec.completeness && rec.completeness.streams) || {};
  const lost = Object.values(streams).reduce((n, s) => n + (s.packets_lost || 0), 0);
  if (lost) out.push(h("span", { class: "flag warn" }, `${lost} lost`));
  return out.length ? out : h("span", { class: "flag ok" }, "complete");
}

const COLUMNS = [
  ["started_at", "Start", (r) => r.started_at || ""],
  ["duration_ms", "Duration", (r) => r.duration_ms ?? -1],
  ["call_recording_id", "Call-recording-id", (r) => r.call_recording_id || ""],
  ["participants", "Participants", (r) => (r.participants || []).map(participantText).join(", ")],
  ["state", "State", (r) => r.state],
  ["flags", "Completeness", (r) => (r.incomplete ? 1 : 0)],
];

function buildTable(items, params, selected) {
  const order = params.get("order") || "newest";
  const sortKey = params.get("sort") || "started_at";
  const dir = params.get("dir") || (order === "oldest" ? "asc" : "desc");
  const rows = [...items];
  if (sortKey !== "started_at") {
    const col = COLUMNS.find((c) => c[0] === sortKey);
    if (col) {
      rows.sort((a, b) => {
        const x = col[2](a);
        const y = col[2](b);
        const cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return dir === "asc" ? cmp : -cmp;
      });
    }
  }
  const admin = isAdmin();
  const head = h("tr", {},
    admin ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")) : null,
    COLUMNS.map(([key, label]) => {
      const active = key === sortKey;
      const ariaSort = active ? (dir === "asc" ? "ascending" : "descending") : "none";
      const button = h("button", { type: "button", class: "sort", dataset: { sort: key } }, label,
        h("span", { "aria-hidden": "true" }, active ? (dir === "asc" ? " ▲" : " ▼") : ""));
      button.addEventListener("click", () => {
        const next = new URLSearchParams(params);
        const nextDir = active && dir === "desc" ? "asc" : "desc";
        if (key === "started_at") {
          // start time is sorted by the API across all pages
          next.delete("sort"); next.delete("dir");
          next.set("order", nextDir === "asc" ? "oldest" : "newest");
          next.delete("page");
        } else {
          next.set("sort", key); next.set("dir", nextDir);
        }
        location.hash = `#/search?${next}`;
      });
      return h("th", { scope: "col", "aria-sort": ariaSort }, button);
    }));
  const body = h("tbody", {}, rows.map((rec) => {
    const link = h("a", { href: `#/recording/${encodeURIComponent(rec.id)}` }, rec.call_recording_id || rec.id);
    const check = admin ? h("input", { type: "checkbox", "aria-label": `Select ${rec.call_recording_id || rec.id}`,
      checked: selected.has(rec.id) }) : null;
    if (check) check.addEventListener("change", () => (check.checked ? selected.add(rec.id) : selected.delete(rec.id)));
    return h("tr", { dataset: { id: rec.id } },
      admin ? h("td", {}, check) : null,
      h("td", {}, fmtTime(rec.started_at)),
      h("td", { class: "num" }, fmtDuration(rec.duration_ms)),
      h("td", {}, link),
      h("td", {}, (rec.participants || []).map(participantText).join(", ") || "–"),
      h("td", {}, h("span", { class: `state state-${rec.state}` }, rec.state)),
      h("td", {}, flags(rec)));
  }));
  const note = sortKey === "started_at" ? "" : " (this page sorted in the browser; start time sorts all pages)";
  return h("table", { class: "results" },
    h("caption", {}, `Recordings${note}`), h("thead", {}, head), body);
}

function pager(pagination, params) {
  const page = pagination.current;
  const go = (n) => {
    const next = new URLSearchParams(params);
    next.set("page", String(n));
    location.hash = `#/search?${next}`;
  };
  const size = h("select", { id: "page-size" }, PAGE_SIZES.map((n) =>
    h("option", { value: n, selected: Number(params.get("max") || 50) === n }, n)));
  size.addEventListener("change", () => {
    const next = new URLSearchParams(params);
    next.set("max", size.value);
    next.delete("page");
    location.hash = `#/search?${next}`;
  });
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", disabled: page <= 1, onclick: () => go(page - 1) }, "‹ Previous"),
    h("span", { class: "page-of" }, `Page ${page} of ${Math.max(1, pagination.pages)} · ${pagination.total} recordings`),
    h("button", { type: "button", disabled: page >= pagination.pages, onclick: () => go(page + 1) }, "Next ›"),
    h("label", { for: "page-size" }, "Per page"), size);
}

export async function searchView(root, { params }) {
  root.append(h("h1", {}, "Find recordings"), buildForm(params));
  const query = new URLSearchParams();
  for (const [key, value] of params) if (!["sort", "dir"].includes(key)) query.append(key, value);
  if (!query.get("max")) query.set("max", "50");
  const status = h("p", { class: "status", role: "status" }, "Searching…");
  root.append(status);
  const result = await request(`${API}/recordings`, { query: query.toString() });
  status.textContent = `${result.pagination.total} recordings match.`;
  const selected = new Set();
  root.append(buildTable(result.items, params, selected), pager(result.pagination, params));
  if (isAdmin()) {
    const format = h("select", { id: "export-format" }, h("option", { value: "tar.gz" }, "tar.gz"),
      h("option", { value: "zip" }, "zip"));
    const run = async (body) => {
      try {
        const job = await startExport({ ...body, format: format.value });
        location.hash = `#/exports?id=${encodeURIComponent(job.id)}`;
      } catch (exc) { toast(exc.message); }
    };
    root.append(h("div", { class: "actions export-bar" },
      h("label", { for: "export-format" }, "Export format"), format,
      h("button", { type: "button", id: "export-selected", onclick: () => {
        if (!selected.size) { toast("Select recordings first."); return; }
        run({ ids: [...selected] });
      } }, "Export selected"),
      h("button", { type: "button", id: "export-search", class: "secondary",
        onclick: () => run({ filter: filterFrom(params) }) }, `Export all ${result.pagination.total} results`)));
  }
}
