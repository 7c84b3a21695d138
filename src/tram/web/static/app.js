// The page: sign-in, language, which views a key may see, and the key's own usage.

import { api, forgetKey, saveKey, savedKey } from "./api.js";
import { Batches } from "./batches.js";
import { drawDays } from "./chart.js";
import { Console } from "./console.js";
import { language, preferredLanguage, setLanguage, t } from "./i18n.js";
import { Playground } from "./playground.js";

const $ = (id) => document.getElementById(id);
let me = null;
const playground = new Playground();
const adminConsole = new Console();
const batches = new Batches();

const VIEWS = ["playground", "batches", "console"];

function show(view) {
  for (const name of VIEWS) {
    $(name).hidden = name !== view;
    $(`tab-${name}`).setAttribute("aria-pressed", String(name === view));
  }
  $("my-usage").hidden = view !== "playground" || !me;
  if (view === "console") adminConsole.open(); else adminConsole.close();
  if (view === "batches") batches.open(me); else batches.close();
}

async function signIn(key) {
  me = await api("/v1/me", { key });
  saveKey(key);
  $("signin").hidden = true;
  $("tabs").hidden = false;
  $("signout").hidden = false;
  $("who").hidden = false;
  $("who").textContent = t("signin.as", { name: me.name });
  $("tab-console").hidden = !me.is_admin;
  await playground.start(me);
  drawDays($("my-usage-chart"), me.usage_by_day);
  // The tabs were there while the playground loaded: a view chosen meanwhile stays.
  if (VIEWS.every((name) => $(name).hidden)) show("playground");
}

function signOut() {
  forgetKey();
  me = null;
  adminConsole.close();
  batches.close();
  playground.reset();
  for (const id of ["tabs", "signout", "who", "playground", "batches", "console", "my-usage"]) {
    $(id).hidden = true;
  }
  $("signin").hidden = false;
  $("signin-key").value = "";
  $("signin-key").focus();
}

function init() {
  setLanguage(preferredLanguage());
  $("lang").value = language();
  $("lang").addEventListener("change", (event) => setLanguage(event.target.value));
  document.addEventListener("tram:language", () => {
    if (me) $("who").textContent = t("signin.as", { name: me.name });
    if (me) drawDays($("my-usage-chart"), me.usage_by_day);
  });
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();  // the key never goes into a URL or a form post
    $("signin-error").textContent = "";
    try {
      await signIn($("signin-key").value.trim());
    } catch (error) {
      $("signin-error").textContent = t("signin.failed", { message: error.message });
    }
  });
  $("signout").addEventListener("click", signOut);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => show(tab.dataset.view));
  }
  const key = savedKey();
  if (key) signIn(key).catch(signOut);
}

init();
