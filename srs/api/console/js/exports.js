// Exports: start one (from the search view), watch it finish, download the archive.

import { API, download, isAdmin, request } from "./api.js";
import { fmtBytes, fmtTime, h, toast } from "./dom.js";

const KEY = "srs.console.exports";

function remembered() {
  try { return JSON.parse(sessionStorage.getItem(KEY) || "[]"); } catch { return []; }
}

export async function startExport(body) {
  const job = await request(`${API}/exports`, { method: "POST", body });
  sessionStorage.setItem(KEY, JSON.stringify([job.id, ...remembered().filter((x) => x !== job.id)].slice(0, 50)));
  return job;
}

function row(job, onDownload) {
  const button = h("button", { type: "button", class: "download-export", disabled: job.state !== "done",
    dataset: { id: job.id } }, "Download");
  button.addEventListener("click", () => onDownload(job));
  return h("tr", { dataset: { id: job.id, state: job.state } },
    h("td", { class: "mono" }, job.id), h("td", {}, h("span", { class: `state state-${job.state}` }, job.state)),
    h("td", { class: "num" }, job.count ?? "–"), h("td", { class: "num" }, fmtBytes(job.size)),
    h("td", {}, fmtTime(job.created_at)), h("td", {}, fmtTime(job.expires_at)),
    h("td", {}, job.error || ""), h("td", {}, button));
}

export async function exportsView(root, { params }) {
  root.append(h("h1", {}, "Exports"));
  if (!isAdmin()) {
    root.append(h("p", {}, "Exports need an admin token."));
    return null;
  }
  root.append(h("p", { class: "help" },
    "Start an export from the search view: select recordings, or export every result of a search."));
  const ids = remembered();
  const focus = params.get("id");
  if (focus && !ids.includes(focus)) ids.unshift(focus);
  const body = h("tbody", { id: "export-rows" });
  root.append(h("table", { class: "results" }, h("caption", {}, "Exports started in this session"),
    h("thead", {}, h("tr", {}, ["Id", "State", "Recordings", "Size", "Created", "Expires", "Error", ""]
      .map((x) => h("th", { scope: "col" }, x)))), body));
  const onDownload = (job) => download(`${API}/exports/${encodeURIComponent(job.id)}/file`,
    `srs-export-${job.id}.${job.format}`).catch((exc) => toast(exc.message));
  let timer = null;
  let stopped = false;
  const refresh = async () => {
    const jobs = await Promise.all(ids.map((id) => request(`${API}/exports/${encodeURIComponent(id)}`)
      .catch(() => ({ id, state: "unknown" }))));
    if (stopped) return;
    body.replaceChildren(...jobs.map((job) => row(job, onDownload)));
    if (!jobs.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No exports yet.")));
    if (jobs.some((job) => ["pending", "running"].includes(job.state))) timer = setTimeout(refresh, 1000);
  };
  await refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
