// The API client: the token lives in sessionStorage (this tab, this session only); any 401 sends
// the page back to the sign-in view, remembering where it was.

const KEY = "srs.console.token";
const NEXT = "srs.console.next";
export const API = "/api/v1";

export class SignInNeeded extends Error {}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() { return sessionStorage.getItem(KEY); }

let who = null;

export function signIn(value) { sessionStorage.setItem(KEY, value); who = null; }

export function signOut() { sessionStorage.removeItem(KEY); who = null; }

export function rememberNext(hash) { if (hash && !hash.startsWith("#/signin")) sessionStorage.setItem(NEXT, hash); }

export function takeNext() {
  const next = sessionStorage.getItem(NEXT);
  sessionStorage.removeItem(NEXT);
  return next || "#/search";
}

function toSignIn() {
  signOut();
  rememberNext(location.hash);
  location.hash = "#/signin";
}

export async function request(path, { method = "GET", body, query, raw = false } = {}) {
  const current = token();
  if (!current) { toSignIn(); throw new SignInNeeded("signed out"); }
  const headers = { Authorization: `Bearer ${current}` };
  let payload;
  if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const url = query ? `${path}?${query}` : path;
  const response = await fetch(url, { method, headers, body: payload, cache: "no-store" });
  if (response.status === 401) { toSignIn(); throw new SignInNeeded("token refused"); }
  if (!response.ok) {
    let code = "http_error";
    let message = `${response.status} ${response.statusText}`;
    try {
      const err = (await response.json()).error;
      if (err) { code = err.code || code; message = err.message || message; }
    } catch { /* not JSON */ }
    throw new ApiError(response.status, code, message);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export async function whoami() {
  if (!who) who = await request(`${API}/whoami`);
  return who;
}

export function isAdmin() { return who !== null && who.scope === "admin"; }

export async function signedLink(recordingId, minutes) {
  const query = minutes ? `validity=${encodeURIComponent(minutes)}` : "";
  return request(`${API}/recordings/${encodeURIComponent(recordingId)}/link`, { method: "POST", query });
}

// A file that needs the token (exports): fetched, then handed to the browser as a download.
export async function download(path, filename) {
  const response = await request(path, { raw: true });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
