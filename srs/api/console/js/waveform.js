// The waveform: peaks (min/max per slice, computed by the API) drawn on a canvas, with
// time-aligned marker buttons laid over it. A silent slice (a hold) draws nothing at all.

import { h, fmtOffset } from "./dom.js";

export const MIN_WIDTH = 16;
export const MAX_WIDTH = 8192;

export function peaksWidth(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const wanted = Math.round(canvas.clientWidth * ratio);
  return Math.max(MIN_WIDTH, Math.min(MAX_WIDTH, wanted));
}

export function draw(canvas, peaks) {
  canvas.width = peaks.min.length;
  canvas.height = Math.round(canvas.clientHeight * (window.devicePixelRatio || 1)) || 120;
  const ctx = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height;
  const mid = height / 2;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = getComputedStyle(canvas).color || "#1d4ed8";
  for (let x = 0; x < width; x += 1) {
    const lo = peaks.min[x];
    const hi = peaks.max[x];
    if (lo === 0 && hi === 0) continue;
    const top = mid - (hi / 32768) * mid;
    const bottom = mid - (lo / 32768) * mid;
    ctx.fillRect(x, Math.floor(top), 1, Math.max(1, Math.ceil(bottom - top)));
  }
}

function pct(ms, total) {
  return `${Math.max(0, Math.min(100, (ms / total) * 100))}%`;
}

// kind: pause | gap | dtmf | metadata; each marker is a button (keyboard-reachable) that seeks.
export function marker({ kind, at, length = 0, label, total, seek }) {
  const text = `${label} at ${fmtOffset(at)}`;
  const button = h("button", { type: "button", class: `marker marker-${kind}`, title: text,
    "aria-label": text, dataset: { kind, at: String(at) } }, kind === "dtmf" ? label : "");
  button.style.left = pct(at, total);
  if (length > 0) button.style.width = pct(length, total);
  button.addEventListener("click", () => seek(at));
  return button;
}

// One lane per stream: where it carried audio (its first audio through its last, minus gaps).
export function lane(label, stats, total, seek) {
  const row = h("div", { class: "lane", role: "group", "aria-label": `Stream ${label} activity` },
    h("span", { class: "lane-label" }, `stream ${label}`));
  const track = h("div", { class: "lane-track" });
  row.append(track);
  if (!stats || stats.first_audio_ms === null || stats.first_audio_ms === undefined) {
    track.append(h("span", { class: "lane-none" }, "no audio"));
    return row;
  }
  const gaps = (stats.gaps || []).map(([off, len]) => [off, off + len]).sort((a, b) => a[0] - b[0]);
  const span = gaps.reduce((n, [a, b]) => n + (b - a), 0);
  const end = Math.min(total, stats.first_audio_ms + (stats.expected_ms || 0) + span);
  let from = stats.first_audio_ms;
  const pieces = [];
  for (const [a, b] of gaps) {
    if (a > from) pieces.push([from, Math.min(a, end)]);
    from = Math.max(from, b);
  }
  if (end > from) pieces.push([from, end]);
  for (const [a, b] of pieces) {
    const seg = h("span", { class: "lane-on" });
    seg.style.left = pct(a, total);
    seg.style.width = pct(b - a, total);
    track.append(seg);
  }
  for (const [a, b] of gaps) {
    track.append(marker({ kind: "gap", at: a, length: b - a, label: `Stream ${label} gap ${b - a} ms`, total, seek }));
  }
  return row;
}
