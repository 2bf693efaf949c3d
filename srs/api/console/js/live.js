// Live view: calls being recorded now, from the server-sent events feed. EventSource cannot send a
// token, so each connection opens with a short-lived ticket from POST /api/v1/events/ticket.

import { API, request } from "./api.js";
import { fmtDuration, h, participantText } from "./dom.js";

const RECENT = 20;

export async function liveView(root) {
  const state = h("p", { class: "status", id: "live-status", role: "status" }, "Connecting…");
  const body = h("tbody", { id: "live-calls" });
  const recent = h("ul", { id: "live-recent", class: "recent" });
  root.append(h("h1", {}, "Live"), state,
    h("table", { class: "results" }, h("caption", {}, "Calls being recorded now"),
      h("thead", {}, h("tr", {}, ["Call-recording-id", "Participants", "Started", "Duration", "Streams"]
        .map((x) => h("th", { scope: "col" }, x)))), body),
    h("h2", {}, "Just finished"), recent);

  const calls = new Map(); // id -> call (from snapshots or recording_started)
  let source = null;
  let closed = false;
  let retry = null;
  let offset = 0; // server clock minus ours, so durations tick from the server's idea of now

  const render = () => {
    const now = Date.now() / 1000 + offset;
    const rows = [...calls.values()].sort((a, b) => (a.started_at || 0) - (b.started_at || 0));
    body.replaceChildren(...rows.map((c) => h("tr", { dataset: { id: c.id } },
      h("td", {}, h("a", { href: `#/recording/${encodeURIComponent(c.id)}` }, c.call_recording_id || c.id)),
      h("td", {}, (c.participants || []).map(participantText).join(", ") || "–"),
      h("td", {}, c.started_at ? new Date(c.started_at * 1000).toLocaleTimeString() : "–"),
      h("td", { class: "num duration" }, fmtDuration(Math.max(0, (now - (c.started_at || now)) * 1000)),
        c.paused ? h("span", { class: "flag" }, "on hold") : null),
      h("td", {}, (c.streams || []).map((s) => h("span", { class: "stream", dataset: { label: s.label } },
        `${s.label}: ${s.codec || "?"} · ${s.packets_received ?? 0} pkts`))))));
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No calls right now.")));
  };

  const finished = (data) => {
    if (!data || !data.id) return;
    calls.delete(data.id);
    const existing = recent.querySelector(`[data-id="${CSS.escape(data.id)}"]`);
    if (existing) existing.remove();
    recent.prepend(h("li", { dataset: { id: data.id } },
      h("a", { href: `#/recording/${encodeURIComponent(data.id)}` }, data.call_recording_id || data.id),
      ` · ${data.state || "finished"} · ${fmtDuration(data.duration_ms)}`));
    while (recent.children.length > RECENT) recent.lastElementChild.remove();
    render();
  };

  const connect = async () => {
    if (closed) return;
    let ticket;
    try {
      ticket = await request(`${API}/events/ticket`, { method: "POST" });
    } catch {
      if (!closed) { state.textContent = "Disconnected; retrying…"; retry = setTimeout(connect, 3000); }
      return;
    }
    if (closed) return;
    source = new EventSource(ticket.url);
    source.addEventListener("open", () => { state.textContent = "Connected: updates arrive as calls start and end."; });
    source.addEventListener("live", (event) => {
      const snap = JSON.parse(event.data);
      offset = snap.at - Date.now() / 1000;
      calls.clear();
      for (const call of snap.calls) calls.set(call.id, call);
      render();
    });
    source.addEventListener("recording_started", (event) => {
      const rec = JSON.parse(event.data);
      if (!calls.has(rec.id)) {
        calls.set(rec.id, { id: rec.id, call_recording_id: rec.call_recording_id, participants: rec.participants,
          started_at: Date.parse(rec.started_at) / 1000, streams: [] });
      }
      render();
    });
    for (const name of ["recording_finished", "recording_available"]) {
      source.addEventListener(name, (event) => finished(JSON.parse(event.data)));
    }
    source.addEventListener("error", () => {
      source.close();
      if (!closed) { state.textContent = "Disconnected; reconnecting…"; retry = setTimeout(connect, 2000); }
    });
  };

  render();
  const ticker = setInterval(render, 1000);
  await connect();
  return () => {
    closed = true;
    clearInterval(ticker);
    clearTimeout(retry);
    if (source) source.close();
  };
}
