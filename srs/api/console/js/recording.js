// One recording: the player (a signed link, since <audio> cannot send a token), the waveform with
// markers, and everything the index knows about the call beside it.

import { API, isAdmin, request, signedLink } from "./api.js";
import { fmtBytes, fmtDuration, fmtOffset, fmtTime, h, participantText, toast } from "./dom.js";
import { draw, lane, marker, peaksWidth } from "./waveform.js";

const PLAYER_LINK_MINUTES = 60;
const VALIDITIES = [[5, "5 minutes"], [60, "1 hour"], [1440, "24 hours"]];

function dl(pairs) {
  return h("dl", { class: "pairs" }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) =>
    [h("dt", {}, k), h("dd", {}, v === null || v === "" ? "–" : v)]));
}

function section(title, ...content) {
  const id = `s-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

function table(caption, headers, rows) {
  return h("table", { class: "compact" }, h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? "–"))))));
}

// Who joined with each metadata update (AORs not seen in the versions before it) and who left (a
// participant's session association given a disassociate-time, RFC 7865 §6.4).
function metadataChanges(versions) {
  const seen = new Set();
  const names = new Map(); // participant_id -> name or AOR, across versions (updates may be partial)
  const gone = new Set();
  return versions.map((v) => {
    const joined = [];
    const left = [];
    if (v.xml) {
      const doc = new DOMParser().parseFromString(v.xml, "application/xml");
      for (const participant of doc.getElementsByTagNameNS("*", "participant")) {
        const nameId = participant.getElementsByTagNameNS("*", "nameID")[0];
        if (!nameId) continue;
        const aor = nameId.getAttribute("aor");
        const name = nameId.getElementsByTagNameNS("*", "name")[0];
        const who = (name && name.textContent) || aor;
        const id = participant.getAttribute("participant_id");
        if (id && who) names.set(id, who);
        if (aor && !seen.has(aor)) { seen.add(aor); joined.push(who); }
      }
      for (const assoc of doc.getElementsByTagNameNS("*", "participantsessionassoc")) {
        const id = assoc.getAttribute("participant_id");
        if (id && !gone.has(id) && assoc.getElementsByTagNameNS("*", "disassociate-time").length) {
          gone.add(id);
          left.push(names.get(id) || id);
        }
      }
    }
    return { ...v, joined, left };
  });
}

function changeText(v) {
  const parts = [];
  if (v.joined.length) parts.push(`${v.joined.join(", ")} joined`);
  if (v.left.length) parts.push(`${v.left.join(", ")} left`);
  return parts.join("; ");
}

function streamsTable(rec) {
  const stats = (rec.completeness && rec.completeness.streams) || {};
  const rows = (rec.streams || []).map((s) => {
    const st = stats[s.label] || s.stats || {};
    return [s.label, s.codec, s.packets_received ?? st.packets_received, s.packets_lost ?? st.packets_lost,
      st.packets_late, st.packets_duplicate,
      st.completeness !== undefined ? `${Math.round(st.completeness * 1000) / 10}%` : "–"];
  });
  return table("Streams", ["Label", "Codec", "Received", "Lost", "Late", "Duplicate", "Complete"], rows);
}

async function actions(rec, audio) {
  const out = h("div", { class: "actions" });
  const linkBox = h("input", { id: "signed-link", type: "text", readonly: true, value: "",
    "aria-label": "Signed link", class: "link-box" });
  const validity = h("select", { id: "link-validity" }, VALIDITIES.map(([m, label]) =>
    h("option", { value: m }, label)));
  const available = rec.state === "available";
  const download = h("button", { type: "button", id: "download", disabled: !available }, "Download");
  download.addEventListener("click", async () => {
    try {
      const made = await signedLink(rec.id, 5);
      const a = h("a", { href: `${made.link}&download=true`, download: "" });
      document.body.append(a); a.click(); a.remove();
    } catch (exc) { toast(exc.message); }
  });
  const copy = h("button", { type: "button", id: "copy-link", disabled: !available }, "Copy signed link");
  copy.addEventListener("click", async () => {
    try {
      const made = await signedLink(rec.id, validity.value);
      linkBox.value = made.link;
      linkBox.dataset.expires = made.expires_at;
      try { await navigator.clipboard.writeText(made.link); toast(`Link copied; valid until ${fmtTime(made.expires_at)}`); }
      catch { linkBox.select(); toast("Link made: copy it from the box."); }
    } catch (exc) { toast(exc.message); }
  });
  out.append(download, h("label", { for: "link-validity" }, "Valid for"), validity, copy, linkBox);
  if (isAdmin()) {
    const hold = h("button", { type: "button", id: "hold", "aria-pressed": String(rec.legal_hold) },
      rec.legal_hold ? "Release legal hold" : "Put on legal hold");
    hold.addEventListener("click", async () => {
      try {
        await request(`${API}/recordings/${encodeURIComponent(rec.id)}/hold`, { method: "POST",
          query: `on=${!rec.legal_hold}` });
        toast(rec.legal_hold ? "Legal hold released." : "On legal hold.");
        window.dispatchEvent(new HashChangeEvent("hashchange"));
      } catch (exc) { toast(exc.message); }
    });
    const dialog = h("dialog", { id: "confirm-delete", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, "Delete this recording?"),
      h("p", {}, "The audio, its metadata and any export holding it are removed for good. This is logged."),
      h("form", { method: "dialog", class: "actions" },
        h("button", { value: "cancel", class: "secondary", autofocus: true }, "Cancel"),
        h("button", { value: "delete", id: "confirm-delete-button", class: "danger" }, "Delete")));
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "delete") return;
      try {
        audio.removeAttribute("src");
        await request(`${API}/recordings/${encodeURIComponent(rec.id)}`, { method: "DELETE" });
        toast("Recording deleted.");
        location.hash = "#/search";
      } catch (exc) { toast(exc.message); }
    });
    const del = h("button", { type: "button", id: "delete", class: "danger",
      disabled: rec.legal_hold || !["available", "failed"].includes(rec.state) }, "Delete…");
    del.addEventListener("click", () => { dialog.returnValue = ""; dialog.showModal(); });
    out.append(hold, del, dialog);
  }
  return out;
}

export async function recordingView(root, { arg }) {
  const id = arg;
  const base = `${API}/recordings/${encodeURIComponent(id)}`;
  const [rec, meta] = await Promise.all([request(base), request(`${base}/metadata`)]);
  const total = Math.max(1, rec.duration_ms || 0);
  const title = rec.call_recording_id || rec.id;
  root.append(h("p", {}, h("a", { href: "#/search" }, "‹ Back to search")),
    h("h1", {}, "Recording ", h("span", { class: "mono" }, title)),
    h("p", { class: "summary" }, `${fmtTime(rec.started_at)} · ${fmtDuration(rec.duration_ms)} · `,
      h("span", { class: `state state-${rec.state}` }, rec.state),
      rec.incomplete ? h("span", { class: "flag warn" }, "incomplete") : null,
      rec.legal_hold ? h("span", { class: "flag hold" }, "legal hold") : null));

  const audio = h("audio", { id: "player", controls: true, preload: "auto", "aria-label": "Recording audio" });
  const canvas = h("canvas", { id: "waveform", "aria-label": "Waveform; use the marker buttons to seek",
    role: "img" });
  const markers = h("div", { class: "markers", id: "markers" });
  const playhead = h("div", { class: "playhead", "aria-hidden": "true" });
  const wave = h("div", { class: "wave" }, canvas, markers, playhead);
  const lanes = h("div", { class: "lanes", id: "lanes" });
  const clock = h("span", { class: "clock mono", id: "clock" }, "0:00.0");
  const seek = (ms) => {
    audio.currentTime = ms / 1000;
    audio.play().catch(() => {});
  };
  const left = h("div", { class: "main-col" }, section("Audio", audio, clock, wave, lanes,
    h("p", { class: "legend" }, h("span", { class: "key key-pause" }, "hold"), h("span", { class: "key key-gap" }, "gap/loss"),
      h("span", { class: "key key-dtmf" }, "DTMF"), h("span", { class: "key key-metadata" }, "metadata update"))));
  left.append(section("Actions", await actions(rec, audio)));
  const file = rec.file || {};
  const side = h("div", { class: "side-col" },
    section("Participants", table("Participants", ["Name", "AOR", "Sends", "Receives"],
      (rec.participants || []).map((p) => [p.name, p.aor, (p.send || []).join(", "), (p.recv || []).join(", ")]))),
    section("Streams", streamsTable(rec)),
    section("SIP", dl([["Call-ID", rec.sip_call_id], ["Source", rec.source], ["Recording id", rec.id],
      ["Call-recording-id", rec.call_recording_id],
      ["Sessions", (rec.sessions || []).map((s) => (s.sip_session_ids || []).join(", ") || s.id).join("; ")]])),
    section("File", dl([["Format", file.format], ["Size", fmtBytes(file.size)], ["SHA-256", h("code", { id: "sha256" }, file.sha256 || "–")],
      ["Ended", fmtTime(rec.ended_at)], ["End reason", (rec.completeness || {}).end_reason]])),
    section("Warnings", (rec.warnings || []).length ? h("ul", {}, rec.warnings.map((w) => h("li", {}, w)))
      : h("p", {}, "None."), rec.incomplete_reason ? h("p", {}, rec.incomplete_reason) : null),
    section("Metadata versions", h("ol", { class: "versions" }, metadataChanges(meta.versions).map((v) =>
      h("li", {}, h("details", {}, h("summary", {}, `#${v.seq} · ${fmtTime(v.received_at)}`,
        changeText(v) ? ` · ${changeText(v)}` : ""), h("pre", {}, v.xml || "(not kept)")))))));
  if (rec.extensions && Object.keys(rec.extensions).length) {
    side.append(section("Extensions", dl(Object.entries(rec.extensions).map(([k, v]) => [k, String(v)]))));
  }
  root.append(h("div", { class: "recording" }, left, side));

  // markers: holds, gaps and loss, DTMF, metadata updates (who joined)
  const comp = rec.completeness || {};
  for (const [at, length] of comp.pauses || []) {
    markers.append(marker({ kind: "pause", at, length, label: `Hold ${fmtDuration(length)}`, total, seek }));
  }
  for (const ev of rec.dtmf || []) {
    markers.append(marker({ kind: "dtmf", at: ev.offset_ms, label: ev.digit, total, seek }));
  }
  const started = Date.parse(rec.started_at);
  for (const v of metadataChanges(meta.versions).slice(1)) {
    const at = Math.max(0, Date.parse(v.received_at) - started);
    const change = changeText(v);
    const label = change ? `Metadata #${v.seq}: ${change}` : `Metadata #${v.seq}`;
    markers.append(marker({ kind: "metadata", at: Math.min(at, total), label, total, seek }));
  }
  for (const [label, stats] of Object.entries(comp.streams || {})) lanes.append(lane(label, stats, total, seek));

  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    seek(((event.clientX - box.left) / box.width) * total);
  });
  audio.addEventListener("timeupdate", () => {
    clock.textContent = fmtOffset(audio.currentTime * 1000);
    playhead.style.left = `${Math.min(100, (audio.currentTime * 1000 / total) * 100)}%`;
  });

  if (rec.state === "available" && rec.file) {
    const playerLink = () => signedLink(rec.id, PLAYER_LINK_MINUTES).catch(() => signedLink(rec.id));
    audio.src = (await playerLink()).link;
    // a link that expired while the page stayed open: make a new one, once a minute at most
    let renewed = 0;
    audio.addEventListener("error", async () => {
      if (!audio.getAttribute("src") || Date.now() - renewed < 60_000) return;
      renewed = Date.now();
      const at = audio.currentTime;
      audio.src = (await playerLink()).link;
      audio.currentTime = at;
    });
    const peaks = await request(`${base}/peaks`, { query: `width=${peaksWidth(canvas)}` });
    draw(canvas, peaks);
    canvas.dataset.drawn = "true";
  } else {
    wave.append(h("p", { class: "status" }, `No audio: the recording is ${rec.state}.`));
  }
  return () => { audio.pause(); audio.removeAttribute("src"); audio.load(); };
}
