// The router: the view and its query live in the location hash, so every search and every
// recording can be bookmarked and shared (the token never is: it stays in sessionStorage).

import { ApiError, SignInNeeded, rememberNext, signIn, signOut, takeNext, token, whoami } from "./api.js";
import { h, toast } from "./dom.js";
import { exportsView } from "./exports.js";
import { liveView } from "./live.js";
import { recordingView } from "./recording.js";
import { searchView } from "./search.js";

const main = document.getElementById("main");
let cleanup = null;

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const [name = "", ...rest] = path.split("/");
  return { name: name || "search", arg: rest.map(decodeURIComponent).join("/"), params: new URLSearchParams(query) };
}

function signInView(root) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true,
    spellcheck: "false", "aria-describedby": "token-help" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-help", class: "help" },
      "A read or admin token (srs token create). It is kept for this browser tab only."),
    h("button", { type: "submit" }, "Sign in"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    signIn(input.value.trim());
    try {
      await whoami();
      location.hash = takeNext();
    } catch (exc) {
      if (!(exc instanceof SignInNeeded)) error.textContent = exc.message;
      else error.textContent = "That token was refused.";
      input.focus();
    }
  });
  root.append(form);
  input.focus();
}

async function header() {
  const whoEl = document.getElementById("who");
  const out = document.getElementById("signout");
  if (!token()) { whoEl.textContent = ""; out.hidden = true; return null; }
  const me = await whoami();
  whoEl.textContent = `${me.name || me.token_id} · ${me.scope}`;
  whoEl.dataset.scope = me.scope;
  out.hidden = false;
  return me;
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const { name, arg, params } = parseHash();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  main.dataset.view = name;
  try {
    if (name === "signin" || !token()) {
      await header();
      if (name !== "signin") { rememberNext(location.hash); location.hash = "#/signin"; return; }
      signInView(main);
      return;
    }
    const me = await header();
    const views = { search: searchView, recording: recordingView, live: liveView, exports: exportsView };
    const view = views[name];
    if (!view) {
      main.append(h("h1", {}, "Nothing here"), h("p", {}, h("a", { href: "#/search" }, "Find recordings")));
      return;
    }
    cleanup = (await view(main, { arg, params, me })) || null;
  } catch (exc) {
    if (exc instanceof SignInNeeded) return;
    const message = exc instanceof ApiError ? exc.message : String(exc);
    main.append(h("p", { class: "error", role: "alert" }, message));
    toast(message);
  }
}

document.getElementById("signout").addEventListener("click", () => {
  signOut();
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();
