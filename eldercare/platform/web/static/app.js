/* eldercare web consoles: one page, hash-routed, talking to the JSON API with a bearer token.
   The token lives in sessionStorage (gone when the tab closes); the language in localStorage
   before login and in the user's record (PUT /auth/me/locale) after. Labels come from /web/i18n.js,
   which the server builds from the message catalogue (eldercare/i18n/*.json);
   data (names, ids, times, numbers) is wrapped in class "data" so tests can tell them apart. */
"use strict";

const API = "/api/v1";
const S = {
  token: sessionStorage.getItem("token"),
  me: JSON.parse(sessionStorage.getItem("me") || "null"),
  lang: localStorage.getItem("lang") || browserLang(),
  alerts: new Map(),
  names: new Map(), // resident id -> name, for alerts that come without one
  residents: new Map(), // resident id -> record (phone, emergency contacts), for care workers' alerts
  ws: null,
  gen: 0, // render generation
  poll: null,
  live: "off",
};
const KINDS = ["fall", "sos", "inactivity", "night_wandering", "bed_exit_no_return", "device_offline",
  "low_battery", "vitals", "pipeline_stalled", "clock_skew", "work_failed",
  "wearable_not_worn"];
const SIM_KINDS = ["fall", "collapse", "no_wake", "night_wandering", "bathroom_too_long", "sos",
  "device_offline", "low_battery", "gateway_outage"];
const OUTCOMES = ["confirmed", "false_alarm", "no_action_needed"];
const POLL_MS = 4000;

/* The first of the browser's languages the catalogue speaks (zh-TW finds zh-CN), else English. */
function browserLang() {
  const base = (tag) => tag.toLowerCase().split("-")[0];
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const hit = LOCALES.find((l) => l.toLowerCase() === tag.toLowerCase()) || LOCALES.find((l) => base(l) === base(tag));
    if (hit) return hit;
  }
  return "en";
}

function t(key, vars) {
  let s = (I18N[S.lang] || {})[key];
  if (s === undefined) s = I18N.en[key];
  if (s === undefined) s = key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll("{" + k + "}", v);
  return s;
}

/* h("div", {class: "x", i18n: "key", on: {click: f}}, child, ...) */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "i18n") { el.dataset.i18n = v; el.textContent = t(v); }
    else if (k === "on") for (const [ev, f] of Object.entries(v)) el.addEventListener(ev, f);
    else if (k === "text") el.textContent = v;
    else if (k === "ph") el.placeholder = t(v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const L = (key, vars) => h("span", { "data-i18n": key }, t(key, vars));
const D = (v) => h("span", { class: "data" }, v === null || v === undefined || v === "" ? "—" : String(v));
function fmtTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(S.lang, { hour12: false, month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
const T = (iso) => D(fmtTime(iso));
/* When an alert happened by the wall clock, and by its simulated home's own clock (null for a real
   home). The engine dates a simulated home's alerts by the wall clock and keeps the home's time in
   summary.sim_detected_ms (its detector's decision) or summary.sim_event_ms (its gateway's event, a
   fall or an SOS). A simulated alert with neither was stored before that, dated by the home's clock
   (hours ahead of the wall at 60x): its wall-clock time is when the platform opened it. */
const simMs = (a) => a.summary && (a.summary.sim_detected_ms || a.summary.sim_event_ms);
const wallAt = (a) => (a.simulated && !simMs(a) && a.opened_at ? a.opened_at : a.detected_at);
const homeAt = (a) => (simMs(a) ? new Date(simMs(a)).toISOString() : a.simulated ? a.detected_at : null);
/* A time by the wall clock, then the simulated home's own, marked as such. */
const whenOf = (a) => [T(wallAt(a)), homeAt(a) ? h("span", { class: "sim-time" }, " (", L("alert.sim_time"), " ", T(homeAt(a)), ")") : null];
const who = (a) => a.resident_name || S.names.get(a.resident_id) || a.resident_id || a.site_id;
/* Common room names are labels; anything else a site calls a room is shown as written. */
const roomLabel = (room) => (room && I18N.en["room." + room.toLowerCase()] ? L("room." + room.toLowerCase()) : D(room));
/* A trail note: the platform's own (detail.message, a catalogue key) in the reader's language, a person's as written. */
const noteOf = (r) => (r.detail && r.detail.message && I18N.en[r.detail.message] ? L(r.detail.message, r.detail.fields) : D(r.note));
function enumLabel(group, v) { return v ? L(group + "." + v) : D(null); }

/* A notice shown for a moment and read out without moving the keyboard: politely (#toast,
   role=status) after what the reader is hearing, or, ``urgent`` (a new critical alert: a fall, an
   SOS), at once (#alarm, role=alert). Each message goes to one region only, so it is said once. */
function toast(msg, urgent = false) {
  const el = document.getElementById(urgent ? "alarm" : "toast");
  el.textContent = msg; // the region stays rendered (empty when idle): screen readers announce only a change inside a live region they already know
  clearTimeout(el.timer); el.timer = setTimeout(() => { el.textContent = ""; }, 3500);
}

class ApiError extends Error { constructor(status, detail, errors) { super(detail); this.status = status; this.errors = errors || []; } }

async function api(path, opts = {}) {
  const headers = { "Accept-Language": S.lang };
  if (S.token) headers.Authorization = "Bearer " + S.token;
  let body = opts.body;
  if (body !== undefined && !(body instanceof URLSearchParams)) {
    headers["Content-Type"] = "application/json"; body = JSON.stringify(body);
  }
  const res = await reach(API + path, { method: opts.method || (body ? "POST" : "GET"), headers, body });
  if (res.status === 401 && S.token && !opts.noLogout) {
    if (!opts.retried && await refreshToken()) return api(path, { ...opts, retried: true });
    logout(t("err.session")); throw new ApiError(401, t("err.session"));
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  // a proxy's page (502, 504) has no detail: said in the reader's words, not as "Bad Gateway"
  if (!res.ok) throw new ApiError(res.status, typeof data.detail === "string" ? data.detail : t("err.server", { status: res.status }), data.errors);
  return data;
}

/* fetch, its failure (no network, the server down) in the reader's words: the browser's own
   ("Failed to fetch") is English whatever the page's language. Status 0: nothing was answered. */
async function reach(url, init) {
  try { return await fetch(url, init); } catch (e) { throw new ApiError(0, t("err.network")); }
}

/* What a page says when it could not load what it shows: only a 404 is "not found", only a 403
   "not allowed"; no network or a server error says so (it is not the reader's access). */
const loadFailure = (e) => (e.status === 404 ? t("err.not_found") : e.status === 403 ? t("err.not_allowed") : e.message);

/* ---------- session and language ---------- */

/* Trade the refresh token for a new pair when the access token has expired (once per call). */
let refreshing = null; // one refresh at a time: a refresh token works once
function refreshToken() {
  if (!refreshing) refreshing = doRefresh().finally(() => { setTimeout(() => { refreshing = null; }, 1000); });
  return refreshing;
}

async function doRefresh() {
  const rt = sessionStorage.getItem("refresh");
  if (!rt) return false;
  const res = await reach(API + "/auth/refresh", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: rt }) });
  if (!res.ok) return false;
  const tok = await res.json();
  S.token = tok.access_token; sessionStorage.setItem("token", S.token); sessionStorage.setItem("refresh", tok.refresh_token);
  if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; startLive(); } // the socket was opened with the old token
  return true;
}

async function login(username, password) {
  const form = new URLSearchParams({ username, password, grant_type: "password" });
  const tok = await api("/auth/token", { body: form, noLogout: true });
  S.token = tok.access_token; sessionStorage.setItem("token", S.token); sessionStorage.setItem("refresh", tok.refresh_token);
  S.me = await api("/auth/me"); sessionStorage.setItem("me", JSON.stringify(S.me));
  S.lang = S.me.locale; localStorage.setItem("lang", S.lang);
  location.hash = home();
  render();
}

/* Sign out; ``why`` (the session ended) is said on the sign-in page, announced once it is shown. */
function logout(why) {
  if (S.token) api("/auth/logout", { method: "POST", noLogout: true }).catch(() => {});
  S.token = null; S.me = null; sessionStorage.removeItem("token"); sessionStorage.removeItem("me"); sessionStorage.removeItem("refresh");
  stopLive(); S.alerts.clear(); bandsSaid.clear();
  S.signedOut = typeof why === "string" ? why : null; // (a click on Sign out passes its event)
  if (location.hash !== "#/login") location.hash = "#/login"; // hashchange renders it, once
  else render();
}

async function switchLang() {
  document.body.dataset.ready = "0";
  for (const id of ["toast", "alarm"]) document.getElementById(id).textContent = "";
  S.gen++; // a render still loading (a live push's) was half built in the old language: never show it
  S.lang = LOCALES[(LOCALES.indexOf(S.lang) + 1) % LOCALES.length]; // the next language of the catalogue
  localStorage.setItem("lang", S.lang);
  if (S.token) {
    try { S.me = await api("/auth/me/locale", { method: "PUT", body: { locale: S.lang } });
      sessionStorage.setItem("me", JSON.stringify(S.me)); } catch (e) { toast(e.message); }
  }
  render();
}

function home() {
  const role = S.me && S.me.role;
  return { care_worker: "#/console", admin: "#/console", family: "#/family", tester: "#/tester" }[role] || "#/login";
}

const NAV = {
  care_worker: [["#/console", "nav.console"]],
  admin: [["#/console", "nav.console"], ["#/admin", "nav.admin"], ["#/tester", "nav.tester"]],
  family: [["#/family", "nav.family"]],
  tester: [["#/tester", "nav.tester"], ["#/console", "nav.console"]],
};

function chrome() {
  document.documentElement.lang = S.lang; // the title is the page's: placeFocus() sets it after each render
  document.querySelectorAll("header [data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  const lang = document.getElementById("lang");
  lang.textContent = t("lang.switch"); lang.dataset.i18n = "lang.switch";
  lang.lang = LOCALES[(LOCALES.indexOf(S.lang) + 1) % LOCALES.length]; // named in its own language: read with that voice
  document.getElementById("logout").hidden = !S.token;
  const nav = document.getElementById("nav"); nav.replaceChildren();
  const here = location.hash.split("/").slice(0, 2).join("/");
  for (const [href, key] of (S.me && NAV[S.me.role]) || []) {
    nav.append(h("a", { href, i18n: key, class: here === href ? "on" : null, "aria-current": here === href ? "page" : null }));
  }
  const live = document.getElementById("live");
  live.hidden = S.live === "off";
  live.className = "live" + (S.down ? " down" : S.live === "poll" ? " poll" : "");
  // a polite live region: said when it changes (the list stopped updating, or came back), so only
  // a change is written, not the same words on every render
  const said = t(S.down ? "live.down" : S.live === "ws" ? "live.ws" : "live.poll");
  if (live.textContent !== said) live.textContent = said;
}

/* The alerts could not be loaded (no network, the server down) or could again: the header says the
   list on screen is not being updated, rather than "Live" over a stale list. */
function stale(down) { if (S.down !== down) { S.down = down; chrome(); } }

/* ---------- live alerts: WebSocket, else polling ---------- */

function startLive() {
  if (!S.token || S.ws || S.poll) return;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let ws;
  // The token travels as a subprotocol, never in the URL (access logs keep URLs).
  try { ws = new WebSocket(`${proto}//${location.host}${API}/ws`, ["eldercare.v1", "bearer." + S.token]); }
  catch (e) { startPolling(); return; }
  S.ws = ws;
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "hello") { S.live = "ws"; chrome(); }
    if (msg.type === "alert") refreshAlert(msg.alert.id, msg.event);
  };
  ws.onclose = (ev) => {
    S.ws = null;
    if (!S.token) return;
    // 4401: the access token expired (or was revoked): refresh it and reconnect, else poll
    if (ev.code === 4401) refreshToken().then((ok) => (ok && !S.ws ? startLive() : startPolling()), () => startPolling());
    else startPolling();
  };
  ws.onerror = () => {};
  // Ask for the current list too: pushes only carry what changes from now on.
  loadAlerts();
  api("/residents?limit=1000").then((rs) => { rs.forEach((r) => { S.names.set(r.id, r.name); S.residents.set(r.id, r); }); onAlertsChanged(); }).catch(() => {});
}

function startPolling() {
  if (S.poll || !S.token) return;
  S.live = "poll"; chrome();
  S.poll = setInterval(loadAlerts, POLL_MS);
  loadAlerts();
}

function stopLive() {
  if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
  if (S.poll) { clearInterval(S.poll); S.poll = null; }
  S.live = "off"; S.down = false;
}

async function loadAlerts() {
  try {
    const list = await api("/alerts?limit=100");
    if (S.older === undefined) S.older = list.length === 100 ? list[99].cursor : null;  // keyset: older pages on demand
    const fresh = [];
    for (const a of list) { if (!S.alerts.has(a.id) && S.alerts.size && a.state === "open") fresh.push(a); S.alerts.set(a.id, a); }
    fresh.forEach(announce);
    stale(false);
    onAlertsChanged();
  } catch (e) { if (e.status === 0 || e.status >= 500) stale(true); /* else shown by the page on its own load */ }
}

async function refreshAlert(id, event) {
  try {
    const a = await api("/alerts/" + id);
    const isNew = !S.alerts.has(id) || event === "notified" || event === "escalated" || event === "reopened";
    S.alerts.set(id, a);
    if (isNew && a.state === "open") announce(a);
    onAlertsChanged(id);
  } catch (e) { /* not visible to us */ }
}

function announce(a) {
  beep(a.severity);
  const title = t("kind." + a.kind) + " · " + who(a);
  const main = document.getElementById("main");
  // the family portal says its resident's alerts itself, in a red band (role=alert): not twice
  if (!(main.saysAlert && main.saysAlert(a))) say(title, a.severity === "critical");
  systemNotice(a, title);
}

/* Many alerts at once (a poll's batch, pushes a moment apart): the first is said at once, the ones
   that follow within SAY_MS together in one notice ("2 more new alerts: Fall · A; SOS · B", three
   named and the rest counted), not one
   each: an assertive region written ten times in a row interrupts itself and is heard as its last. */
const SAY_MS = 1500;
let sayLater = null;
function say(title, urgent) {
  if (sayLater) { sayLater.titles.push(title); sayLater.urgent = sayLater.urgent || urgent; return; }
  toast(title, urgent);
  sayLater = { titles: [], urgent: false };
  setTimeout(() => {
    const { titles, urgent: any } = sayLater; sayLater = null;
    if (titles.length === 1) toast(titles[0], any);
    else if (titles.length) { // three named, the rest counted: a notice is heard to its end
      const named = titles.slice(0, 3).concat(titles.length > 3 ? [t("alert.and_more", { n: titles.length - 3 })] : []);
      toast(t("alert.more_new", { n: titles.length, list: named.join(t("alert.list_sep")) }), any);
    }
  }, SAY_MS);
}

/* ---------- notifications outside the page (web #21): service worker, permission ---------- */

/* The service worker shows notifications that stay while the tab is hidden and open the alert on a
   tap; without one (an old browser) a plain Notification does while the page is open. */
let swReady = null;
function serviceWorker() {
  if (!swReady && "serviceWorker" in navigator && window.isSecureContext) {
    swReady = navigator.serviceWorker.register("static/sw.js").then(() => navigator.serviceWorker.ready).catch(() => null);
    navigator.serviceWorker.addEventListener("message", (m) => { if (m.data && typeof m.data.open === "string") location.hash = m.data.open; });
  }
  return swReady || Promise.resolve(null);
}

async function systemNotice(a, title) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const fam = S.me && S.me.role === "family";
  const opts = { body: t(fam ? "push.body_family" : "notify.body"), tag: "alert-" + a.id, renotify: true,
    requireInteraction: a.severity === "critical", data: { hash: "#/alert/" + a.id }, icon: "static/favicon.svg" };
  const reg = await serviceWorker();
  try { if (reg) await reg.showNotification(title, opts); else new Notification(title, opts); } catch (e) { /* not allowed here */ }
}

/* The family portal's "alerts on this phone" card: whether this browser will show alerts while the
   page is in the background, a button to allow it, and where e-mails go. */
function pushCard() {
  const state = !("Notification" in window) ? "unsupported" : Notification.permission;
  const status = h("p", { id: "push-state", "data-state": state }, L("push." + state));
  const btn = state === "default" ? h("button", { class: "btn", type: "button", id: "push-on", i18n: "push.enable", on: { click: async () => {
    try { audioCtx = audioCtx || new (window.AudioContext || window.webkitAudioContext)(); await audioCtx.resume(); } catch (ex) { /* no audio */ }
    const got = await Notification.requestPermission();
    if (got === "granted") { await serviceWorker(); }
    render();
  } } }) : soundButton();
  if (state === "granted") serviceWorker(); // ready before the next alert comes
  const mail = S.me && S.me.email ? h("p", { id: "push-email" }, L("push.email"), " ", D(S.me.email)) : h("p", { class: "muted", id: "push-email", i18n: "push.no_email" });
  return h("div", { class: "card", id: "push-card" }, h("h2", { i18n: "push.title" }), status, btn, mail);
}

let audioCtx = null;
const soundOn = () => !!audioCtx && audioCtx.state === "running";

/* Browsers start audio only after a click on the page, so after every reload the console shows
   this button until sound really runs; it also asks for notifications when not yet decided. */
function soundButton() {
  if (soundOn()) return null;
  return h("button", { class: "btn sound", id: "sound-on", type: "button", i18n: "console.enable_notifications", on: { click: async (e) => {
    const btn = e.currentTarget; // (null once the handler has awaited)
    try { audioCtx = audioCtx || new (window.AudioContext || window.webkitAudioContext)(); await audioCtx.resume(); } catch (ex) { /* no audio */ }
    if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
    beep("low");
    if (!soundOn()) { toast(t("console.sound_blocked")); return; }
    const title = document.querySelector("main h1"); // the button goes: the keyboard stays on the page, not on <body>
    if (title && btn === document.activeElement) title.focus();
    btn.remove();
  } } });
}

function beep(severity) {
  try {
    audioCtx = audioCtx || new (window.AudioContext || window.webkitAudioContext)();
    const n = severity === "critical" ? 3 : 1;
    for (let i = 0; i < n; i++) {
      const o = audioCtx.createOscillator(); const g = audioCtx.createGain();
      o.frequency.value = 880; o.connect(g); g.connect(audioCtx.destination);
      const at = audioCtx.currentTime + i * 0.3;
      g.gain.setValueAtTime(0.2, at); g.gain.exponentialRampToValueAtTime(0.001, at + 0.25);
      o.start(at); o.stop(at + 0.25);
    }
  } catch (e) { /* no audio */ }
}

let onAlertsChanged = () => {};

/* ---------- pages ---------- */


function pageLogin(_, root) {
  // role=alert: a screen reader says why sign-in failed; aria-describedby/-invalid tie it to the fields
  const err = h("p", { class: "err", id: "login-error", role: "alert" });
  const user = h("input", { name: "username", id: "username", autocomplete: "username", required: true, "aria-describedby": "login-error", "data-focus": true });
  const pw = h("input", { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "login-error" });
  const form = h("form", { class: "card login", on: { submit: async (e) => {
    e.preventDefault(); err.textContent = "";
    try { await login(user.value.trim(), pw.value); } catch (ex) {
      err.textContent = ex.message;
      for (const el of [user, pw]) el.setAttribute("aria-invalid", "true");
      pw.select(); // most often the password was mistyped: ready to type again
    }
  } } },
  h("h1", { i18n: "login.title" }),
  h("label", { for: "username", i18n: "login.username" }), user,
  h("label", { for: "password", i18n: "login.password" }), pw,
  h("p", {}, h("button", { class: "btn", type: "submit", id: "login-submit", i18n: "login.submit" })), err);
  root.replaceChildren(form);
  // why the session ended, written once the page is shown: a change in a live region is announced
  root.shown = () => { if (S.signedOut) { err.textContent = S.signedOut; S.signedOut = null; } };
}

/* "12 min" / "2 h 5 min": how long something has waited, for people, not a timestamp. */
function waited(fromIso, now = Date.now()) {
  const min = Math.max(0, Math.round((now - new Date(fromIso).getTime()) / 60000));
  return min < 60 ? t("time.min", { n: min }) : t("time.h_min", { h: Math.floor(min / 60), n: min % 60 });
}

/* An open alert past its tier's deadline, or one with no tier left to ask, needs a person now. */
function urgency(a, now = Date.now()) {
  if (a.state !== "open") return null;
  if (!a.next_escalation_at) return "exhausted";
  return new Date(a.next_escalation_at).getTime() < now ? "overdue" : null;
}

function alertItem(a, opts = {}) {
  // A family member's acknowledgement says "seen, on my way"; escalation to the care team goes on.
  const fam = S.me && S.me.role === "family";
  const ack = a.state === "open" ? ackControl(a, fam) : null;
  const urgent = urgency(a);
  return h("li", { class: `alert sev-${a.severity} state-${a.state}` + (urgent ? " urgent" : ""), "data-alert": a.id, "data-state": a.state, "data-kind": a.kind },
    h("div", { class: "body" },
      h("div", { class: "title", id: "alert-title-" + a.id }, L("kind." + a.kind), " · ", D(who(a))),
      h("div", { class: "meta" },
        a.state !== "resolved" ? h("span", { class: "badge waited", "data-waited": a.id }, t("alert.waiting", { t: waited(wallAt(a)) })) : null,
        urgent ? h("span", { class: "badge urgent-" + urgent, i18n: "alert." + urgent }) : null,
        h("span", { class: "badge sev-" + a.severity }, t("sev." + a.severity)),
        h("span", { class: "badge state-" + a.state, "data-i18n": "state." + a.state }, t("state." + a.state)),
        a.outcome ? h("span", { class: "badge" }, t("outcome." + a.outcome)) : null,
        L("alert.tier"), " ", D(a.tier), " · ", whenOf(a),
        a.state === "open" && a.next_escalation_at ? [" · ", L("alert.next_short"), " ", T(a.next_escalation_at)] : null),
      fam ? null : residentContacts(a)),
    h("div", { class: "actions" }, ack, " ",
      opts.noDetail ? null : h("a", { class: "btn secondary", href: "#/alert/" + a.id, i18n: "alert.details", "aria-describedby": "alert-title-" + a.id })));
}

/* Care workers: the resident's phone and first emergency contact on the alert, one tap to call. */
function residentContacts(a) {
  const r = a.resident_id && S.residents.get(a.resident_id);
  if (!r) return null;
  const c = (r.emergency_contacts || []).find((x) => x.phone) || (r.emergency_contacts || [])[0];
  const tel = (num) => h("a", { href: "tel:" + num }, D(num));
  return h("div", { class: "contacts", "data-contacts": a.id },
    L("contact.resident_phone"), " ", r.phone ? tel(r.phone) : D(null),
    c ? [" · ", L("contact.emergency"), " ", D(c.name), c.relation ? [" (", D(c.relation), ")"] : null, " ", c.phone ? tel(c.phone) : null] : null);
}

/* Acknowledge, with a note in the same action for care workers (the note survives redraws). */
const ackNotes = new Map();
function ackControl(a, fam) {
  const send = async () => {
    const note = (ackNotes.get(a.id) || "").trim();
    const body = fam ? { on_my_way: true } : note ? { note } : undefined;
    try {
      const u = await api(`/alerts/${a.id}/ack`, { method: "POST", body });
      ackNotes.delete(a.id); S.alerts.set(a.id, { ...a, ...u }); onAlertsChanged(a.id); toast(t(fam ? "alert.seen_sent" : "alert.acked"));
    } catch (e) { const box = document.getElementById("ack-note-" + a.id); toast(refusal(e, box && box.parentElement)); }
  };
  // every alert has these controls: each is described by its alert ("Acknowledge, Fall · Wang Fang")
  const button = h("button", { class: "btn", type: "button", "data-ack": a.id, i18n: fam ? "alert.seen" : "alert.ack", on: { click: send }, "aria-describedby": "alert-title-" + a.id });
  if (fam) return button;
  const id = "ack-note-" + a.id;
  const input = h("input", { id, name: id, type: "text", maxlength: 2000, "data-ack-note": a.id, "data-api": "note", value: ackNotes.get(a.id) || "", "aria-describedby": "alert-title-" + a.id,
    on: { input: (e) => ackNotes.set(a.id, e.target.value), keydown: (e) => { if (e.key === "Enter") { e.preventDefault(); send(); } } } });
  return h("div", { class: "ack" }, h("label", { for: id, i18n: "alert.ack_note" }), input, button);
}

/* Redraw a list without losing what the worker is typing into one of its note fields. */
function keepFocus(list, draw) {
  const el = document.activeElement;
  const inside = !!el && list.contains(el);
  const id = inside && el.id ? el.id : null;
  const item = inside && el.closest("[data-alert]") ? el.closest("[data-alert]").dataset.alert : null;
  const caret = id ? el.selectionStart : null;
  draw();
  const again = id && document.getElementById(id);
  if (again) { again.focus(); if (caret !== null && again.setSelectionRange) again.setSelectionRange(caret, caret); return; }
  if (!inside || list.contains(document.activeElement)) return;
  // the focused control went with the redraw (an acknowledge button): keep the keyboard on that
  // alert (its next control), else on the page's heading, never dropped to the top of the page
  const li = item && list.querySelector(`[data-alert="${item}"]`);
  const next = (li && li.querySelector("button, a[href], input")) || document.querySelector("main h1");
  if (next) next.focus();
}

async function pageConsole(_, root) {
  const f = { tier: "", site: "", kind: "", state: "active" };
  const list = h("ul", { class: "alerts", id: "alert-list" });
  const sel = (name, options) => h("select", { name, id: "f-" + name, on: { change: (e) => { f[name] = e.target.value; draw(); } } },
    ...options.map(([v, label, data]) => h("option", { value: v, class: data ? "data" : null }, label)));
  let sites = [];
  try { sites = await api("/sites"); } catch (e) { /* filters still work without names */ }
  const filters = h("div", { class: "card row" },
    h("div", {}, h("label", { for: "f-state", i18n: "filter.state" }), sel("state", [["active", t("filter.active")], ["open", t("state.open")],
      ["acknowledged", t("state.acknowledged")], ["resolved", t("state.resolved")], ["", t("filter.all")]])),
    h("div", {}, h("label", { for: "f-tier", i18n: "filter.tier" }), sel("tier", [["", t("filter.all")], ["1", "1"], ["2", "2"], ["3", "3"]])),
    h("div", {}, h("label", { for: "f-site", i18n: "filter.site" }), sel("site", [["", t("filter.all")], ...sites.map((s) => [s.id, s.name, true])])),
    h("div", {}, h("label", { for: "f-kind", i18n: "filter.kind" }), sel("kind", [["", t("filter.all")], ...KINDS.map((k) => [k, t("kind." + k)])])));
  const soundBtn = soundButton();
  const more = h("button", { class: "btn secondary", id: "older", type: "button", i18n: "console.older", on: { click: async () => {
    try { const page = await api("/alerts?limit=100&before=" + encodeURIComponent(S.older));
      page.forEach((a) => S.alerts.set(a.id, a)); S.older = page.length === 100 ? page[99].cursor : null; draw(); } catch (e) { toast(e.message); } } } });
  function draw() {
    const rows = [...S.alerts.values()].filter((a) =>
      (f.state === "active" ? a.state !== "resolved" : !f.state || a.state === f.state)
      && (!f.tier || String(a.tier) === f.tier) && (!f.site || a.site_id === f.site) && (!f.kind || a.kind === f.kind))
      .sort((a, b) => (a.state === "open") - (b.state === "open") || new Date(wallAt(a)) - new Date(wallAt(b))).reverse();
    keepFocus(list, () => list.replaceChildren(...(rows.length ? rows.map((a) => alertItem(a)) : [h("li", { class: "muted", i18n: "console.empty" })])));
    more.hidden = !S.older;
  }
  root.onAlerts = draw;
  const devices = await deviceHealth();
  // a keyboard's way past a long list of alerts (each has three controls) to the homes and devices
  const skip = devices && h("a", { href: "#device-health", class: "skip", id: "skip-alerts", i18n: "console.skip_alerts", on: { click: (e) => {
    e.preventDefault(); // the hash is the page's route: focus the section instead
    const head = devices.querySelector("h2"); head.tabIndex = -1; head.focus(); } } });
  root.replaceChildren(...[h("h1", { i18n: "console.title" }), soundBtn, filters, skip, list, more, devices].filter(Boolean));
  draw();
  // waiting times move on by themselves
  const tick = setInterval(() => { if (!list.isConnected) clearInterval(tick); else draw(); }, 30000);
  startLive();
}

/* Device health per home (GET /gateways/health, homes needing attention first): each gateway's
   state and when it was last heard, its clock's skew, and its sensors' lowest battery. */
async function deviceHealth() {
  let homes = [];
  try { homes = await api("/gateways/health"); } catch (e) { return null; }
  if (!homes.length) return null;
  const skew = (ms) => (ms === null || ms === undefined ? D(null)
    : Math.abs(ms) < 1000 ? L("health.clock_ok") : D((ms > 0 ? "+" : "−") + fmtDuration(Math.abs(ms))));
  const battery = (g) => {
    const known = g.sensors.filter((s) => s.battery !== null && s.battery !== undefined).sort((a, b) => a.battery - b.battery);
    return known.length ? [D(Math.round(known[0].battery * 100) + "%"), " ", D(known[0].id)] : D(null);
  };
  const rows = homes.flatMap((home) => home.gateways.map((g, i) => h("tr", { "data-gateway": g.id, "data-site": home.site_id, class: g.problems.length ? "attention" : null },
    i === 0 ? h("td", { rowspan: home.gateways.length }, D(home.site_name), home.residents.length ? h("div", { class: "muted" }, D(home.residents.join(", "))) : null,
      h("div", {}, ...home.problems.map((p) => h("span", { class: "badge problem", "data-problem": p }, t("health." + p))))) : null,
    h("td", {}, D(g.id)),
    h("td", {}, h("span", { class: "badge gw-" + (g.state || "unknown") }, t("gw." + (g.state === "online" ? "online" : g.state === "offline" ? "offline" : "unknown")))),
    h("td", {}, T(g.state_at)), h("td", { "data-battery": g.id }, battery(g)), h("td", { "data-skew": g.id }, skew(g.clock_skew_ms)), h("td", {}, D(g.version)))));
  return h("div", { class: "card", id: "device-health" }, h("h2", { i18n: "console.devices" }),
    h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": t("console.devices") }, h("table", {}, h("tr", {}, ...["health.home", "f.gateway", "admin.status", "console.last_seen", "health.battery", "health.clock", "admin.version"].map((k) => h("th", { i18n: k }))), ...rows)));
}

/* "3 min" / "2 h 5 min" for a duration in ms (a clock's skew). */
function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return t("time.s", { n: s });
  const min = Math.round(s / 60);
  return min < 60 ? t("time.min", { n: min }) : t("time.h_min", { h: Math.floor(min / 60), n: min % 60 });
}

/* Draw a chart once its box is on screen (pages are built off-screen), as wide as the box. */
function whenShown(box, draw, tries = 120) {
  if (box.isConnected && box.clientWidth > 0) { draw(Math.min(box.clientWidth, 900)); return; }
  if (tries > 0) requestAnimationFrame(() => whenShown(box, draw, tries - 1));
}

function evidenceChart(ev) {
  const acc = ev.acc && !Array.isArray(ev.acc) ? ev.acc : ev;
  let x = acc.x, y = acc.y, z = acc.z, scale = acc.unit === "mg" ? 1000 : 1;
  if (!x && Array.isArray(ev.acc)) { x = ev.acc.map((r) => r[0]); y = ev.acc.map((r) => r[1]); z = ev.acc.map((r) => r[2]); scale = 1; }
  if (!x || !x.length) return h("p", { class: "muted", i18n: "alert.no_evidence" });
  const hz = Number(acc.hz || ev.hz || 50) || 50;
  const ts = x.map((_, i) => i / hz);
  const g = (arr) => arr.map((v) => v / scale);
  const mag = x.map((_, i) => Math.hypot(x[i], y[i], z[i]) / scale);
  const peak = Math.max(...mag);
  // a canvas says nothing to a screen reader: the box is an image named by what the chart shows
  const box = h("div", { class: "chart", id: "evidence-chart", role: "img",
    "aria-label": t("chart.fall_summary", { s: (x.length / hz).toFixed(1), peak: peak.toFixed(1) }) });
  whenShown(box, (width) => new uPlot({ width, height: 260,
    scales: { x: { time: false } },
    axes: [{ label: t("chart.seconds") }, { label: t("chart.g") }],
    series: [{ label: t("chart.time") }, { label: "x", stroke: "#1f77b4" }, { label: "y", stroke: "#2ca02c" },
      { label: "z", stroke: "#9467bd" }, { label: t("chart.magnitude"), stroke: "#c62828", width: 2 }] },
  [ts, g(x), g(y), g(z), mag], box));
  return box;
}

function hourlyChart(cells, id, bucketHours) {
  const per = new Map();
  for (const c of cells) {
    const b = Math.floor(new Date(c.bucket).getTime() / 1000 / 3600 / bucketHours) * 3600 * bucketHours;
    if (c.sensor_kind === "pir" || c.sensor_kind === "door" || c.sensor_kind === "plug" || c.sensor_kind === "bed") per.set(b, (per.get(b) || 0) + c.n);
  }
  if (!per.size) return h("p", { class: "muted", i18n: "chart.no_activity" });
  const xs = [...per.keys()].sort((a, b) => a - b);
  const iso = (sec) => new Date(sec * 1000).toISOString();
  const busiest = xs.reduce((m, k) => (per.get(k) > per.get(m) ? k : m), xs[0]);
  const box = h("div", { class: "chart", id, role: "img", "aria-label": t("chart.activity_summary", {
    from: fmtTime(iso(xs[0])), to: fmtTime(iso(xs[xs.length - 1])), n: xs.reduce((n, k) => n + per.get(k), 0),
    max: per.get(busiest), peak: fmtTime(iso(busiest)) }) });
  // uPlot writes times in English ("3pm"): the axis and the legend use the reader's language
  const tick = (sec) => { const d = new Date(sec * 1000);
    return d.getHours() === 0 && d.getMinutes() === 0 ? d.toLocaleDateString(S.lang, { month: "numeric", day: "numeric" })
      : d.toLocaleTimeString(S.lang, { hour: "2-digit", minute: "2-digit", hour12: false }); };
  whenShown(box, (width) => new uPlot({ width, height: 220,
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
    axes: [{ values: (u, splits) => splits.map(tick) }, { label: t("chart.events") }],
    series: [{ label: t("chart.time"), value: (u, v) => (v === null || v === undefined ? "—" : fmtTime(iso(v))) },
      { label: t("chart.events"), stroke: "#1f6feb", fill: "rgba(31,111,235,.25)",
      paths: uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8] }) : undefined }] },
  [xs, xs.map((k) => per.get(k))], box));
  return box;
}

async function pageAlert(id, root) {
  let a;
  try { a = await api("/alerts/" + id); } catch (e) { root.replaceChildren(h("p", { class: "err", id: "denied" }, loadFailure(e))); return; }
  S.alerts.set(a.id, a);
  const outcome = draft(h("select", { name: "outcome", id: "outcome" }, ...OUTCOMES.map((o) => h("option", { value: o }, t("outcome." + o)))), a.id);
  const note = draft(h("textarea", { name: "note", id: "note", rows: 2 }), a.id);
  const act = async (path, body, form) => { try { await api(`/alerts/${a.id}/${path}`, { body: body || {} }); drafts.clear(); toast(t("form.saved")); render(); } catch (e) { toast(refusal(e, form)); } };
  const canResolve = S.me && S.me.role !== "family" && a.state !== "resolved";
  const simAt = homeAt(a); // a simulated home's own clock, shown marked
  const facts = h("table", {},
    h("tr", {}, h("th", { i18n: "alert.state" }), h("td", {}, L("state." + a.state), a.outcome ? [" · ", L("outcome." + a.outcome)] : null)),
    h("tr", {}, h("th", { i18n: "alert.severity" }), h("td", {}, L("sev." + a.severity))),
    h("tr", {}, h("th", { i18n: "alert.resident" }), h("td", {}, a.resident_id ? h("a", { href: "#/resident/" + a.resident_id }, D(who(a))) : D(null))),
    h("tr", {}, h("th", { i18n: "alert.site" }), h("td", {}, D(a.site_id), " ", D(a.sensor_id))),
    h("tr", {}, h("th", { i18n: "alert.detected" }), h("td", {}, whenOf(a), " · ", L("alert.detections"), " ", D(a.detections))),
    h("tr", {}, h("th", { i18n: "alert.tier" }), h("td", {}, D(a.tier))),
    h("tr", {}, h("th", { i18n: "alert.next_tier" }), h("td", { id: "next-escalation" }, a.state === "open" && a.next_escalation_at ? T(a.next_escalation_at) : L("alert.no_next"))),
    h("tr", {}, h("th", { i18n: "alert.acknowledged" }), h("td", {}, T(a.acknowledged_at))),
    h("tr", {}, h("th", { i18n: "alert.resolved" }), h("td", {}, T(a.resolved_at))));
  let evidence = null, heading = "alert.evidence_device";
  if (a.kind === "fall") { evidence = evidenceChart(a.evidence || {}); heading = "alert.evidence_fall"; }
  else if (["inactivity", "night_wandering", "bed_exit_no_return"].includes(a.kind) && a.resident_id) {
    heading = "alert.evidence_activity";
    const end = new Date(simAt || a.detected_at); const start = new Date(end.getTime() - 24 * 3600e3);
    try {
      if (!await mayReadActivity(a.resident_id)) throw new Error("no consent");
      const tl = await api(`/residents/${a.resident_id}/timeline?start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`);
      evidence = hourlyChart(tl.cells, "evidence-chart", 1);
      // a simulated home's readings carry its own clock, hours ahead of the wall at 60x
      if (simAt && evidence.id === "evidence-chart") evidence = [evidence, h("p", { class: "muted sim-time", id: "chart-clock", i18n: "chart.sim_clock" })];
    } catch (e) { evidence = h("p", { class: "notice", i18n: "family.consent_notice" }); }
  } else {
    // what the engine wrote of it in the reader's language (it names devices: data), then what the
    // device sent, as sent
    const said = a.summary && typeof a.summary[S.lang] === "string" ? h("p", { class: "data", id: "alert-said" }, a.summary[S.lang]) : null;
    const sent = a.evidence && Object.keys(a.evidence).length ? h("pre", { class: "data" }, JSON.stringify(a.evidence, null, 1)) : null;
    evidence = said || sent ? [said, sent] : h("p", { class: "muted", i18n: "alert.no_details" });
  }
  const notified = h("table", { id: "notifications" }, h("tr", {}, ...["notif.tier", "notif.who", "notif.channel", "notif.status", "notif.at"].map((k) => h("th", { i18n: k }))),
    ...a.notifications.map((n) => h("tr", {}, h("td", {}, D(n.tier)), h("td", {}, D(n.display_name || n.username || n.target)),
      h("td", {}, L("channel." + n.channel)), h("td", {}, L("notif." + n.status)), h("td", {}, T(n.delivered_at || n.created_at)))));
  const trail = h("table", {}, h("tr", {}, h("th", { i18n: "trail.at" }), h("th", { i18n: "trail.action" }), h("th", { i18n: "trail.who" }), h("th", { i18n: "trail.note" })),
    ...a.trail.map((r) => h("tr", {}, h("td", {}, T(r.at)), h("td", {}, L("trail." + r.action)), h("td", {}, D(r.actor_name || r.actor)), h("td", {}, noteOf(r)))));
  const noteText = draft(h("textarea", { name: "add-note", id: "add-note", "data-api": "note", rows: 2, maxlength: 2000, required: true }), a.id);
  const noteForm = S.me && S.me.role !== "family" ? h("form", { class: "card", id: "note-form", on: { submit: (e) => {
    e.preventDefault(); if (noteText.value.trim()) act("notes", { note: noteText.value.trim() }, e.target); } } },
    h("h2", { i18n: "alert.add_note" }), h("label", { for: "add-note", i18n: "alert.note" }), noteText,
    h("p", {}, h("button", { class: "btn secondary", type: "submit", i18n: "alert.add_note" }))) : null;
  root.replaceChildren(
    h("h1", {}, L("kind." + a.kind), " · ", D(who(a))),
    h("ul", { class: "alerts" }, alertItem(a, { noDetail: true })),
    h("div", { class: "grid" }, h("div", { class: "card" }, facts),
      canResolve ? h("form", { class: "card", id: "resolve-form", on: { submit: (e) => { e.preventDefault(); act("resolve", { outcome: outcome.value, note: note.value || null }, e.target); } } },
        h("h2", { i18n: "alert.resolve" }), h("label", { for: "outcome", i18n: "alert.outcome" }), outcome,
        h("label", { for: "note", i18n: "alert.note" }), note, h("p", {}, h("button", { class: "btn", type: "submit", i18n: "alert.resolve" }))) : null,
      noteForm),
    h("div", { class: "card" }, h("h2", { i18n: heading }), evidence),
    h("div", { class: "card" }, h("h2", { i18n: "alert.notified" }), notified),
    h("div", { class: "card" }, h("h2", { i18n: "alert.trail" }), trail));
  root.onAlerts = (changed) => { if (changed === a.id) render(); };
  startLive();
}

/* What is typed into the alert page's fields survives the page being redrawn when the alert
   changes (a live push: escalated, acknowledged by someone else) until it is sent. */
const drafts = new Map();
function draft(el, alertId) {
  const key = `${alertId}:${el.id}`;
  if (drafts.has(key)) el.value = drafts.get(key);
  el.addEventListener(el.tagName === "SELECT" ? "change" : "input", () => drafts.set(key, el.value));
  return el;
}

/* Whether the timeline is worth asking for: always for staff, for a family member only when the
   resident's consent shares activity (a request sure to be refused is not made). */
async function mayReadActivity(residentId) {
  if (!S.me || S.me.role !== "family") return true;
  try { return ((await api(`/residents/${encodeURIComponent(residentId)}/summary`)).shared_streams || []).includes("activity"); }
  catch (e) { return false; }
}

async function sensorsByRoom(siteId) {
  const rooms = new Map();
  const gws = await api("/gateways?site_id=" + encodeURIComponent(siteId));
  for (const g of gws) for (const s of await api(`/gateways/${g.id}/sensors`)) {
    const room = s.room || (s.resident_id ? "@" + s.resident_id : "-");
    if (!rooms.has(room)) rooms.set(room, []); rooms.get(room).push(s);
  }
  return h("table", { id: "sensors" }, h("tr", {}, h("th", { i18n: "res.room" }), h("th", { i18n: "res.sensors" })),
    ...[...rooms.entries()].sort().map(([room, ss]) => h("tr", {}, h("td", {}, room.startsWith("@") ? L("res.worn") : roomLabel(room)),
      h("td", {}, ...ss.map((s) => h("span", { class: "badge" }, t("sensor." + s.kind), " ", D(s.id)))))));
}

async function pageResident(id, root) {
  let r;
  try { r = await api("/residents/" + id); } catch (e) { root.replaceChildren(h("p", { class: "err", id: "denied" }, loadFailure(e))); return; }
  const contacts = (r.emergency_contacts || []).map((c) => h("li", {}, D(c.name), " ", D(c.relation), " ",
    c.phone ? h("a", { href: "tel:" + c.phone }, D(c.phone)) : null));
  let team = null, sensors = null;
  try { team = (await api(`/residents/${id}/care-team`)).map((m) => h("li", {}, D(m.display_name), " ", D(m.provider_id))); } catch (e) { team = null; }
  try { sensors = await sensorsByRoom(r.home_site_id); } catch (e) { sensors = h("p", { class: "muted", i18n: "err.not_allowed" }); }
  let week;
  try {
    const end = new Date(); const start = new Date(end.getTime() - 7 * 86400e3);
    const tl = await api(`/residents/${id}/timeline?start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`);
    week = hourlyChart(tl.cells, "week-chart", 6);
  } catch (e) { week = h("p", { class: "notice", i18n: "family.consent_notice" }); }
  root.replaceChildren(h("h1", {}, L("res.card"), " · ", D(r.name)),
    h("div", { class: "grid" },
      h("div", { class: "card", id: "resident-card" }, h("table", {},
        h("tr", {}, h("th", { i18n: "res.care_level" }), h("td", {}, L("care." + r.care_level))),
        h("tr", {}, h("th", { i18n: "res.birth_year" }), h("td", {}, D(r.birth_year))),
        h("tr", {}, h("th", { i18n: "res.phone" }), h("td", {}, r.phone ? h("a", { href: "tel:" + r.phone }, D(r.phone)) : D(null))),
        h("tr", {}, h("th", { i18n: "res.home" }), h("td", {}, D(r.home_site_id))),
        h("tr", {}, h("th", { i18n: "res.station" }), h("td", {}, D(r.station_site_id))),
        h("tr", {}, h("th", { i18n: "res.provider" }), h("td", {}, providerCell(r))),
        h("tr", {}, h("th", { i18n: "res.notes" }), h("td", {}, D(r.notes))))),
      h("div", { class: "card" }, h("h2", { i18n: "res.contacts" }), contacts.length ? h("ul", {}, contacts) : h("p", { class: "muted", i18n: "res.no_contacts" }),
        team ? [h("h2", { i18n: "res.team" }), team.length ? h("ul", {}, team) : h("p", { class: "muted", id: "no-team", i18n: "res.no_team" })] : null)),
    h("div", { class: "card" }, h("h2", { i18n: "res.layout" }), sensors),
    h("div", { class: "card" }, h("h2", { i18n: "family.week" }), week),
    (await limitsCard(id)) || ""); // (replaceChildren writes null as "null")
}

/* The resident's inactivity limits (care team only): how far the detector has learned this home,
   the starting limit of each room (the population's, or one set here) and the one in effect now,
   and every change (feedback on an alert, a care worker's limit, an undo) with an undo button. */
const fmtSecs = (s) => {
  if (s === null || s === undefined) return "—";
  const min = Math.round(s / 60);
  return min < 60 ? t("time.min", { n: min }) : t("time.h_min", { h: Math.floor(min / 60), n: min % 60 });
};

async function limitsCard(id) {
  const card = h("div", { class: "card", id: "limits" });
  const path = `/residents/${id}/inactivity-limits`;
  async function draw(v) {
    const lr = v.learning;
    const pct = Math.round(lr.own_share * 100);
    const learning = lr.own_share >= 1 ? L("lim.own", { days: lr.days.toFixed(0) })
      : L("lim.learning", { days: lr.days.toFixed(1), grace: lr.grace_days, pct });
    const rows = v.rooms.map((r) => {
      const input = h("input", { type: "number", min: 5, max: 1440, step: 5, class: "lim-min", "data-room": r.room, name: "limits." + r.room,
        "aria-label": t("lim.change") + ": " + roomLabel(r.room).textContent,
        value: r.starting_s ? Math.round(r.starting_s / 60) : "" });
      const save = async (value) => {
        try { draw(await api(path, { method: "PUT", body: { limits: { [r.room]: value } } })); toast(t("form.saved")); }
        catch (e) { toast(refusal(e, card)); }
      };
      const start = r.starting_s ? [L("lim.set_here"), " ", D(fmtSecs(r.starting_s))]
        : [L("lim.population"), " ", D(r.population_s[0] === r.population_s[1] ? fmtSecs(r.population_s[0])
          : fmtSecs(r.population_s[0]) + "–" + fmtSecs(r.population_s[1]))];
      return h("tr", { "data-room": r.room }, h("td", {}, roomLabel(r.room)), h("td", {}, ...start),
        h("td", { class: "in-effect" }, D(fmtSecs(r.in_effect_s))),
        h("td", {}, input, " ", L("lim.minutes"), " ",
          h("button", { class: "btn secondary", type: "button", i18n: "admin.save", on: { click: () => input.value && save(Number(input.value) * 60) } }),
          r.starting_s ? [" ", h("button", { class: "btn secondary", type: "button", i18n: "lim.reset", on: { click: () => save(null) } })] : null));
    });
    card.replaceChildren(...[h("h2", { i18n: "lim.title" }), h("p", { id: "lim-learning" }, learning),
      v.learning.pending ? h("p", { class: "muted", i18n: "lim.pending" }) : null,
      v.sensitivity !== 1 ? h("p", {}, L("lim.factor", { f: (1 / v.sensitivity).toFixed(2) })) : null,
      h("table", { id: "lim-rooms" }, h("tr", {}, h("th", { i18n: "res.room" }), h("th", { i18n: "lim.start" }),
        h("th", { i18n: "lim.now" }), h("th", { i18n: "lim.change" })), ...rows),
      h("h3", { i18n: "lim.history" }), limitsHistory(v.changes, async (cid) => {
        try { draw(await api(`${path}/changes/${cid}/undo`, { method: "POST" })); } catch (e) { toast(e.message); }
      })].filter(Boolean)); // (replaceChildren would write a null as "null")
  }
  try { await draw(await api(path)); } catch (e) { return null; } // not the care team: no card
  return card;
}

function limitsHistory(changes, undo) {
  if (!changes.length) return h("p", { class: "muted", i18n: "lim.no_changes" });
  return h("ul", { id: "lim-history" }, ...changes.map((c) => {
    let what;
    if (c.source === "feedback") {
      const f = c.before.sensitivity / c.after.sensitivity;
      what = L("lim.feedback." + c.outcome, { alert: c.alert_id, f: f.toFixed(2) });
    } else if (c.source === "undo") what = L("lim.undid", { id: c.undoes });
    else {
      const rooms = [...new Set([...Object.keys(c.before.limits), ...Object.keys(c.after.limits)])]
        .filter((r) => c.before.limits[r] !== c.after.limits[r]);
      what = h("span", {}, ...rooms.map((r) => h("span", {}, roomLabel(r), " ",
        D(c.after.limits[r] ? fmtSecs(c.after.limits[r]) : t("lim.population")), " ")));
    }
    return h("li", { "data-change": c.id }, T(c.at), " ", D(c.actor), " · ", what,
      c.undone_by ? h("span", { class: "muted" }, " ", L("lim.undone")) : null,
      !c.undone_by && c.source !== "undo" ? [" ", h("button", { class: "btn secondary", type: "button", i18n: "lim.undo", on: { click: () => undo(c.id) } })] : null);
  }));
}

async function pageFamily(id, root) {
  if (!id) {
    let rs;
    try { rs = await api("/residents"); } catch (e) { root.replaceChildren(h("h1", { i18n: "family.title" }), h("p", { class: "err", id: "denied" }, loadFailure(e))); return; }
    if (rs.length === 1) { location.replace("#/family/" + rs[0].id); return; }
    // nobody linked yet: said, rather than a heading over nothing
    root.replaceChildren(h("h1", { i18n: "family.title" }), rs.length
      ? h("ul", {}, rs.map((r) => h("li", {}, h("a", { href: "#/family/" + r.id }, D(r.name)))))
      : h("p", { class: "muted", id: "no-relative", i18n: "family.none" }));
    return;
  }
  let s;
  try { s = await api(`/residents/${encodeURIComponent(id)}/summary`); } catch (e) {
    root.replaceChildren(h("h1", { i18n: "family.title" }), h("p", { class: "err", id: "denied" }, loadFailure(e)));
    return;
  }
  const sl = s.sleep_last_night;
  const today = h("div", { class: "card", id: "today" }, h("h2", { i18n: "family.today" }), h("table", {},
    h("tr", {}, h("th", { i18n: "family.last_activity" }), h("td", {}, T(s.last_activity_at), " ", roomLabel(s.last_activity_room))),
    h("tr", {}, h("th", { i18n: "family.presence" }), h("td", { id: "presence" }, L("presence." + s.presence), " ", s.presence_since ? [L("family.since"), " ", T(s.presence_since)] : null,
      s.presence === "unknown" ? h("div", { class: "muted", i18n: "family.presence_unknown" }) : null)),
    h("tr", {}, h("th", { i18n: "family.sleep" }), h("td", {}, sl && sl.hours_in_bed != null ? [D(sl.hours_in_bed.toFixed(1)), " ", L("family.hours"), " · ", L("family.bed_exits"), " ", D(sl.bed_exits)] : L("family.no_sleep"))),
    h("tr", {}, h("th", { i18n: "family.active_hours" }), h("td", {}, D(s.active_hours_today))),
    h("tr", {}, h("th", { i18n: "family.open_alerts" }), h("td", { id: "open-alerts" }, D(s.open_alerts.length)))));
  // ask for the week's activity only when consent covers it (a request sure to be refused is not made)
  let week = h("p", { class: "notice", id: "consent-notice", i18n: "family.consent_notice" });
  if ((s.shared_streams || []).includes("activity")) {
    try {
      const end = new Date(); const start = new Date(end.getTime() - 7 * 86400e3);
      const tl = await api(`/residents/${id}/timeline?start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`);
      if (!tl.hidden_streams.includes("activity")) week = hourlyChart(tl.cells, "week-chart", 6);
    } catch (e) { /* the notice stays */ }
  }
  let history = [];
  try { history = await api(`/alerts?resident=${encodeURIComponent(id)}&limit=30`); } catch (e) { /* shown empty */ }
  history.forEach((a) => S.alerts.set(a.id, a));
  let r = null;
  try { r = await api("/residents/" + id); } catch (e) { /* profile not shared */ }
  let duty = [];
  try { duty = await api(`/residents/${id}/on-duty`); } catch (e) { /* shown as nobody */ }
  const dutyRows = duty.length ? duty.map((p) => h("div", { class: "on-duty" }, L("duty." + p.role), ": ", D(p.display_name), " ",
    p.phone ? h("a", { href: "tel:" + p.phone }, D(p.phone)) : null)) : [h("span", { class: "muted", i18n: "family.nobody_on_duty" })];
  const hist = h("table", { id: "alert-history" }, h("tr", {}, ...["trail.at", "family.what", "alert.state", "alert.outcome"].map((k) => h("th", { i18n: k }))),
    ...history.map((a) => h("tr", { "data-alert": a.id, "data-state": a.state }, h("td", {}, whenOf(a)), h("td", {}, h("a", { href: "#/alert/" + a.id }, L("kind." + a.kind))),
      h("td", {}, h("span", { class: "badge state-" + a.state }, t("state." + a.state))), h("td", {}, a.outcome ? L("outcome." + a.outcome) : D(null)))));
  const open = history.filter((a) => a.state !== "resolved");
  const banners = await Promise.all(open.map((a) => familyBanner(a, duty, r)));
  // an open alert's red band comes before the heading: the page starts there (its call buttons next)
  if (banners.length) { banners[0].dataset.focus = ""; banners[0].tabIndex = -1; }
  // redrawn only when this resident's alerts change, not on every poll (every 4 s without a socket):
  // a redraw loses the reader's place and makes screen readers announce each red band again
  const mine = () => [...S.alerts.values()].filter((a) => a.resident_id === id).map((a) => `${a.id}:${a.state}:${a.tier}`).sort().join();
  const seen = mine();
  root.onAlerts = () => { if (mine() !== seen) render(); };
  root.saysAlert = (a) => a.resident_id === id && a.state !== "resolved"; // in its red band
  root.replaceChildren(...banners, h("h1", {}, L("family.title"), " · ", D(s.name)), pushCard(),
    h("div", { class: "grid" }, today,
      h("div", { class: "card" }, h("h2", { i18n: "family.care" }), r ? h("table", {},
        h("tr", {}, h("th", { i18n: "family.on_duty" }), h("td", { id: "on-duty" }, ...dutyRows)),
        h("tr", {}, h("th", { i18n: "res.provider" }), h("td", {}, providerCell(r))),
        h("tr", {}, h("th", { i18n: "res.care_level" }), h("td", {}, L("care." + r.care_level))),
        h("tr", {}, h("th", { i18n: "res.contacts" }), h("td", {}, ...(r.emergency_contacts || []).map((c) => h("div", {}, D(c.name), " ", c.phone ? h("a", { href: "tel:" + c.phone }, D(c.phone)) : null))))) : null,
        h("p", { class: "muted", i18n: "family.care_hint" }))),
    h("div", { class: "card" }, h("h2", { i18n: "family.week" }), week),
    h("div", { class: "card" }, h("h2", { i18n: "family.history" }), history.length ? hist : h("p", { class: "muted", i18n: "family.no_alerts" })));
  startLive();
}

/* A red band at the top of the portal for each open alert: what happened and when, in plain
   words, who (by name) has taken it on, and one tap to call the worker on duty or a contact. */
const bandsSaid = new Set(); // "<alert id>:<state>" of each red band already said
async function familyBanner(a, duty, r) {
  let acker = null;
  try {
    const d = await api("/alerts/" + a.id);
    const ack = d.trail.filter((x) => x.action === "acknowledged").pop();
    if (ack) acker = ack.actor_name || ack.actor;
  } catch (e) { /* the list entry is enough */ }
  const worker = duty.find((p) => p.phone);
  const contact = ((r && r.emergency_contacts) || []).find((c) => c.phone);
  // role=alert (said at once, when drawn) for a band not said before, or whose alert changed state
  // (someone took it on): the portal draws every band anew when any of them changes, and ten bands
  // all role=alert were all said again at each new alert or escalation
  const said = `${a.id}:${a.state}`; const fresh = !bandsSaid.has(said); bandsSaid.add(said);
  return h("section", { class: "banner", id: "alert-banner-" + a.id, role: fresh ? "alert" : null,
    "aria-labelledby": fresh ? null : "alert-banner-what-" + a.id, "data-alert": a.id },
    h("div", { class: "big", id: "alert-banner-what-" + a.id }, L("banner." + (a.kind in BANNER_KINDS ? a.kind : "other"), { kind: t("kind." + a.kind) })),
    h("div", {}, L("banner.when"), " ", whenOf(a), " (", t("alert.waiting", { t: waited(wallAt(a)) }), ")"),
    h("div", { class: "handled" }, a.state === "acknowledged" || acker
      ? [L("banner.handled_by"), " ", D(acker), " · ", T(a.acknowledged_at)] : L("banner.not_yet")),
    h("div", { class: "row calls" },
      worker ? h("a", { class: "btn call", href: "tel:" + worker.phone, id: "call-duty" }, L("banner.call"), " ", D(worker.display_name)) : null,
      contact ? h("a", { class: "btn call secondary", href: "tel:" + contact.phone, id: "call-contact" }, L("banner.call"), " ", D(contact.name || contact.relation || contact.phone)) : null,
      h("a", { class: "btn secondary", href: "#/alert/" + a.id, i18n: "alert.details" })));
}
const BANNER_KINDS = { fall: 1, sos: 1, inactivity: 1, night_wandering: 1, bed_exit_no_return: 1 };

/* A field the browser will not submit is explained by the browser in its own language ("Please
   fill out this field." on a Chinese page): every form's fields say it in the page's language
   instead (its custom validity, set when the field is found invalid and cleared once it is edited,
   so the browser checks it afresh). */
function validityText(el) {
  const v = el.validity;
  if (v.valueMissing) return t(el.tagName === "SELECT" ? "error.form.choose" : "error.form.required");
  if (v.badInput) return t(el.type === "number" ? "error.form.number" : el.type.startsWith("date") ? "error.form.datetime" : "error.form.invalid");
  if (v.typeMismatch) return t(el.type === "email" ? "error.form.email" : el.type === "url" ? "error.form.url" : "error.form.invalid");
  if (v.tooShort) return t("error.form.too_short", { n: el.minLength, now: el.value.length });
  if (v.tooLong) return t("error.form.too_long", { n: el.maxLength, now: el.value.length });
  if (v.rangeUnderflow) return t("error.form.min", { min: el.min });
  if (v.rangeOverflow) return t("error.form.max", { max: el.max });
  if (v.stepMismatch) return t(Number(el.step || 1) === 1 ? "error.form.whole" : "error.form.step", { step: el.step });
  return t("error.form.invalid");
}
function sayValidity(e) {
  const el = e.target;
  if (!el.setCustomValidity) return;
  el.setCustomValidity("");
  if (e.type === "invalid" && !el.validity.valid) el.setCustomValidity(validityText(el));
}

/* The control of ``scope`` an API error's field names: by its name or data-api, else the field it is
   part of ("sensors.0.kind" -> the Sensors field). */
function inputFor(scope, field) {
  const controls = scope ? [...scope.querySelectorAll("input, select, textarea")] : [];
  for (let f = String(field).replace(/^(query|path)\./, ""); f; f = f.includes(".") ? f.slice(0, f.lastIndexOf(".")) : "") {
    const el = controls.find((c) => c.name === f || c.dataset.api === f);
    if (el) return el;
  }
  return null;
}

/* A field as the reader knows it: its label on the form, else the console's name for it (field.*,
   indexes left out: "tiers.0.name" -> field.tiers.name), else the API's; none for the whole body. */
function fieldName(scope, field) {
  const el = inputFor(scope, field);
  const label = el && ((el.labels && el.labels[0] && el.labels[0].textContent) || el.getAttribute("aria-label"));
  if (label) return label;
  const key = "field." + String(field).replace(/\.\d+(?=\.|$)/g, "");
  if (I18N.en[key]) return t(key);
  return field === "body" ? null : field;
}

/* A refused request in the page's words: an invalid one names its fields as the form does
   ("编号：只能包含…", not "id: …"); any other refusal is the API's sentence. */
function refusal(ex, scope) {
  if (!ex.errors || !ex.errors.length) return ex.message;
  const said = ex.errors.map((x) => { const name = fieldName(scope, x.field); return name ? t("error.form.field", { field: name, message: x.message }) : x.message; });
  return t("error.validation", { errors: said.reduce((first, next) => t("error.form.fields", { first, next })) });
}

function formCard(titleKey, fields, submit, id) {
  const out = h("div", { class: "result" });
  const inputs = {};
  const form = h("form", { class: "card", id, on: { submit: async (e) => {
    e.preventDefault(); out.replaceChildren();
    form.querySelectorAll(".field-err").forEach((p) => p.remove());
    for (const el of Object.values(inputs)) { el.removeAttribute("aria-invalid"); describe(el); }
    const v = {}; for (const [k, el] of Object.entries(inputs)) v[k] = el.value.trim();
    try { const res = await submit(v); out.replaceChildren(res || h("p", { i18n: "form.saved" })); toast(t("form.saved"));
      if (!S.refocus) S.refocus = `#${id} button[type=submit]`; }
    catch (ex) {
      // each field the API names gets its own message under it (aria-invalid, aria-describedby) and
      // the first of them the keyboard; the sentence for the whole form is announced (role=alert)
      const bad = [];
      for (const x of ex.errors || []) {
        const el = inputFor(form, x.field); if (!el) continue;
        const mid = `${el.id}-err`; const said = form.querySelector("#" + CSS.escape(mid));
        if (said) { said.append("; ", D(x.message)); continue; } // a second error of one field (two sensors)
        el.setAttribute("aria-invalid", "true"); describe(el, mid); bad.push(el);
        el.after(h("p", { class: "err field-err", id: mid }, D(x.message)));
      }
      out.replaceChildren(h("p", { class: "err", role: "alert" }, refusal(ex, form)));
      if (bad.length) bad[0].focus();
    }
  } } }, h("h2", { i18n: titleKey }));
  for (const [name, spec] of Object.entries(fields)) {
    const el = spec.options ? h("select", { name, id: `${id}-${name}` }, ...spec.options.map(([v, lab, data]) => h("option", { value: v, class: data ? "data" : null }, lab)))
      : h("input", { name, id: `${id}-${name}`, type: spec.type || "text", required: spec.required, value: spec.value });
    if (spec.api) el.dataset.api = spec.api; // the API's name of the field, where the form's differs
    inputs[name] = el;
    form.append(h("label", { for: `${id}-${name}`, i18n: spec.label }), el);
    if (spec.type === "datetime-local") form.append(dateSaid(el));
  }
  form.append(h("p", {}, h("button", { class: "btn", type: "submit", i18n: "admin.create" })), out);
  return form;
}

/* A field's description (aria-describedby): its error, if any, then what is said under it. */
function describe(el, errorId) {
  const ids = [errorId, el.dataset.said].filter(Boolean).join(" ");
  if (ids) el.setAttribute("aria-describedby", ids); else el.removeAttribute("aria-describedby");
}

/* Under a date-and-time field, the choice in the page's language ("2026年12月7日星期一 19:00"),
   or what to choose while it is empty. Browsers draw the field itself in their own language,
   whatever the page's (<html lang> follows the language button, but Chromium ignores it here:
   crbug.com/263320), so a Chinese page showed "mm/dd/yyyy, --:-- PM" in an English browser. */
function dateSaid(input) {
  const said = h("p", { class: "muted field-said", id: input.id + "-said" });
  const say = () => { said.textContent = input.value ? t("date.chosen", { when: new Date(input.value).toLocaleString(S.lang,
    { weekday: "long", year: "numeric", month: "long", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false }) }) : t("date.choose"); };
  input.dataset.said = said.id; describe(input);
  input.addEventListener("input", say); say();
  return said;
}

/* Redraw the set-up page after a change; ``refocus``: a selector of the control to put the keyboard
   back on (the row's Edit or Disable button), so a long page is not left at its top. */
function refreshAdmin(refocus) { S.refocus = typeof refocus === "string" ? refocus : null; setTimeout(() => { render(); toast(t("form.saved")); }, 0); return null; }

async function pageAdmin(_, root) {
  const [sites, providers, policies, users] = await Promise.all(["/sites", "/providers", "/policies", "/users"].map((p) => api(p).catch(() => [])));
  const opt = (rows) => rows.map((r) => [String(r.id), `${r.name} (${r.id})`, true]);
  const none = [["", "—"]];
  const n = (v) => (v === "" ? null : v);
  const siteForm = formCard("admin.new_site", {
    id: { label: "f.id", required: true }, name: { label: "f.name", required: true },
    kind: { label: "f.kind", options: ["home", "station", "institution"].map((k) => [k, t("site." + k)]) },
    district: { label: "f.district" }, address: { label: "f.address" },
    provider_id: { label: "f.provider", options: [...none, ...opt(providers)] },
  }, (v) => api("/sites", { body: { ...v, district: n(v.district), address: n(v.address), provider_id: n(v.provider_id) } }).then(refreshAdmin), "site-form");
  const resForm = formCard("admin.new_resident", {
    id: { label: "f.id", required: true }, name: { label: "f.name", required: true },
    home_site_id: { label: "f.home_site", options: opt(sites) },
    care_level: { label: "res.care_level", options: ["independent", "partly_dependent", "dependent", "dementia"].map((k) => [k, t("care." + k)]) },
    birth_year: { label: "res.birth_year", type: "number" }, phone: { label: "res.phone" },
    home_care_provider_id: { label: "res.provider", options: [...none, ...opt(providers)] },
    escalation_policy_id: { label: "f.policy", options: [...none, ...opt(policies)] },
    contact_name: { label: "f.contact_name", api: "emergency_contacts.0.name" },
    contact_phone: { label: "f.contact_phone", api: "emergency_contacts.0.phone" },
  }, (v) => api("/residents", { body: { id: v.id, name: v.name, home_site_id: v.home_site_id, care_level: v.care_level,
    birth_year: v.birth_year ? Number(v.birth_year) : null, phone: n(v.phone), home_care_provider_id: n(v.home_care_provider_id),
    escalation_policy_id: v.escalation_policy_id ? Number(v.escalation_policy_id) : null,
    emergency_contacts: v.contact_name ? [{ name: v.contact_name, phone: v.contact_phone }] : [] } }).then(refreshAdmin), "resident-form");
  const gwForm = formCard("admin.new_gateway", {
    id: { label: "f.id", required: true }, site_id: { label: "f.site", options: opt(sites) }, description: { label: "f.description" },
    sensors: { label: "f.sensors" },
  }, async (v) => {
    // "pir-kitchen:pir:kitchen, wearable-1:wearable:@res-1" -> sensors (room, or @resident for a wearable)
    const sensors = v.sensors.split(/[,\n]/).map((x) => x.trim()).filter(Boolean).map((x) => {
      const [id, kind, place] = x.split(":").map((y) => y.trim());
      return place && place.startsWith("@") ? { id, kind, resident_id: place.slice(1) } : { id, kind, room: place || null };
    });
    const p = await api("/gateways", { body: { id: v.id, site_id: v.site_id, description: n(v.description), sensors } });
    return h("div", {}, h("p", { class: "notice", i18n: "admin.once" }), h("div", { class: "secret", id: "mqtt-credentials" },
      L("admin.mqtt_username"), " ", D(p.credentials.mqtt_username), h("br"), L("admin.mqtt_password"), " ", D(p.credentials.mqtt_password),
      h("br"), L("admin.mqtt_topic"), " ", D(p.credentials.topic_prefix)));
  }, "gateway-form");
  const staff = users.filter((u) => u.role === "care_worker" && u.provider_id);
  const shiftForm = formCard("admin.new_shift", {
    user_id: { label: "f.worker", options: staff.map((u) => [String(u.id), `${u.display_name} (${u.provider_id})`, true]) },
    starts_at: { label: "f.starts", type: "datetime-local", required: true }, ends_at: { label: "f.ends", type: "datetime-local", required: true },
  }, (v) => { const u = staff.find((x) => String(x.id) === v.user_id);
    return api(`/providers/${u.provider_id}/shifts`, { body: { user_id: Number(v.user_id), starts_at: new Date(v.starts_at).toISOString(), ends_at: new Date(v.ends_at).toISOString() } }).then(() => null); }, "shift-form");
  const tierFields = {};
  for (const i of [1, 2, 3]) {
    tierFields["targets" + i] = { label: "f.tier" + i, value: i === 1 ? "family,assigned_worker" : i === 2 ? "station_on_duty" : "institution_on_duty" };
    tierFields["timeout" + i] = { label: "f.timeout", type: "number", value: String(i * 300) };
  }
  const policyForm = formCard("admin.new_policy", { name: { label: "f.name", required: true }, ...tierFields }, (v) => {
    const tiers = [1, 2, 3].filter((i) => v["targets" + i]).map((i) => ({ tier: i, name: `tier ${i}`,
      targets: v["targets" + i].split(",").map((s) => s.trim()).filter(Boolean), ack_timeout_s: Number(v["timeout" + i]) || 300 }));
    for (const i of [1, 2, 3]) { // the API names a tier by its place in the list sent ("tiers.0.targets")
      const j = tiers.findIndex((ti) => ti.tier === i);
      document.getElementById("policy-form-targets" + i).dataset.api = j < 0 ? "" : `tiers.${j}.targets`;
      document.getElementById("policy-form-timeout" + i).dataset.api = j < 0 ? "" : `tiers.${j}.ack_timeout_s`;
    }
    return api("/policies", { body: { name: v.name, tiers } }).then(refreshAdmin);
  }, "policy-form");
  const residents = await api("/residents?limit=1000").catch(() => []);
  const fams = users.filter((u) => u.role === "family");
  const familyForm = formCard("admin.link_family", {
    resident_id: { label: "alert.resident", options: opt(residents) },
    user_id: { label: "f.family_user", options: fams.map((u) => [String(u.id), `${u.display_name} (${u.username})`, true]) },
    relation: { label: "f.relation", required: true },
    activity: { label: "f.consent_activity", api: "consent", options: [["", t("f.no")], ["1", t("f.yes")]] },
  }, (v) => api(`/residents/${encodeURIComponent(v.resident_id)}/family/${v.user_id}`, { method: "PUT",
    body: { user_id: Number(v.user_id), relation: v.relation, consent: v.activity ? { activity: true, bed: true } : {} } }).then(refreshAdmin), "family-form");
  const teamForm = formCard("admin.assign_worker", {
    resident_id: { label: "alert.resident", options: opt(residents) },
    user_id: { label: "f.worker", options: staff.map((u) => [String(u.id), `${u.display_name} (${u.provider_id})`, true]) },
  }, (v) => api(`/residents/${encodeURIComponent(v.resident_id)}/care-team`, { body: { user_id: Number(v.user_id) } }).then(refreshAdmin), "team-form");
  const siteList = h("table", {}, h("tr", {}, h("th", { i18n: "f.id" }), h("th", { i18n: "f.name" }), h("th", { i18n: "f.kind" })),
    ...sites.map((s) => h("tr", {}, h("td", {}, D(s.id)), h("td", {}, D(s.name)), h("td", {}, L("site." + s.kind)))));
  const polList = h("table", { id: "policies-list" }, h("tr", {}, h("th", { i18n: "f.name" }), h("th", { i18n: "admin.tiers" })),
    ...policies.map((p) => h("tr", {}, h("td", {}, D(p.name)), h("td", {}, ...p.tiers.map((ti) => h("div", { "data-tier": ti.tier },
      D(ti.tier), ": ", ti.targets.map((x, i) => [i ? t("list.sep") : "", targetLabel(x, providers)]),
      " / ", fmtDuration(ti.ack_timeout_s * 1000)))))));  // "5 min", not "300s"
  const gateways = await api("/gateways").catch(() => []);
  const failed = await api("/engine/failed-work").catch(() => []);
  root.replaceChildren(h("h1", { i18n: "admin.title" }), adminFailedWork(failed) || "", // (replaceChildren writes null as "null")
    adminUsers(users, providers), adminProviders(providers), adminGateways(gateways), await adminRosters(providers), adminPolicies(policies),
    h("div", { class: "grid" }, siteForm, resForm, gwForm, shiftForm, policyForm, familyForm, teamForm),
    h("div", { class: "grid" }, h("div", { class: "card" }, h("h2", { i18n: "admin.sites" }), rowFilter("site-search", siteList), siteList),
      h("div", { class: "card" }, h("h2", { i18n: "admin.policies" }), polList)),
    adminAudit());
}

/* Whom a tier asks, in words ("family", "驿站值班"), a provider by its name; its code as written when
   the catalogue has no words for it (the edit form takes the codes: "family, assigned_worker"). */
function targetLabel(target, providers) {
  if (I18N.en["target." + target]) return L("target." + target);
  const p = target.startsWith("provider:") && providers.find((x) => x.id === target.slice("provider:".length));
  return D(p ? p.name : target);
}

/* Engine work set aside after repeated failures: what it was, the error, and a retry. */
function adminFailedWork(rows) {
  if (!rows.length) return null;
  return h("div", { class: "card", id: "admin-failed-work" }, h("h2", { i18n: "admin.failed_work" }),
    h("p", { class: "muted", i18n: "admin.failed_work_hint" }),
    scrollBox("admin.failed_work", h("table", {}, h("tr", {}, ...["trail.at", "f.gateway", "f.kind", "admin.error", "admin.actions"].map((k) => h("th", { i18n: k }))),
      ...rows.map((w) => h("tr", { "data-failed-work": w.id }, h("td", {}, T(w.failed_at)), h("td", {}, D(w.gateway_id)),
        h("td", { "data-work-kind": w.kind }, workWhat(w)), h("td", {}, D(w.last_error)),
        h("td", {}, h("button", { class: "btn secondary", type: "button", i18n: "admin.retry", on: { click: async () => {
          try { await api(`/engine/failed-work/${w.id}/retry`, { method: "POST" }); refreshAdmin(); } catch (ex) { toast(ex.message); } } } })))))));
}

/* What a set-aside work item was, in words: a device's event ("Device event: Fall") or a gateway's
   status ("Gateway status: offline"); what the catalogue has no word for is shown as stored. */
function workWhat(w) {
  const p = w.payload || {};
  if (!I18N.en["work." + w.kind]) return D(w.kind);
  const known = w.kind === "event" ? (I18N.en["event." + p.kind] ? "event." + p.kind : null)
    : ["online", "offline"].includes(p.state) ? "gw." + p.state : null;
  return known ? L("work." + w.kind, { what: t(known) }) : [L("work." + w.kind, { what: "" }), D(p.kind || p.state)];
}

/* Edit opens the row's form below it (focus on its first field) and closes it again (one form per
   row, never a second copy with the same ids); Escape in the form closes it and returns to Edit. */
function toggleEdit(tr, btn, build) {
  const close = (row) => { row.remove(); btn.setAttribute("aria-expanded", "false"); };
  const open = tr.nextElementSibling && tr.nextElementSibling.classList.contains("edit-row") ? tr.nextElementSibling : null;
  if (open) { close(open); return; }
  const row = build(); row.classList.add("edit-row");
  row.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); close(row); btn.focus(); } });
  tr.after(row); btn.setAttribute("aria-expanded", "true");
  const first = row.querySelector("input, select, textarea");
  if (first) first.focus();
}

/* A wide table scrolls inside its own box on a narrow screen or with large text, never the whole
   page (WCAG 1.4.10); the box is a named region the keyboard can scroll. */
const scrollBox = (labelKey, table) => h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": t(labelKey) }, table);

/* A labelled field for the inline edit rows (every input has a label, for screen readers). */
function field(id, labelKey, el) { el.id = id; return h("div", {}, h("label", { for: id, i18n: labelKey }), el); }

/* Users: search, edit in place, disable or enable (PATCH /users/{id}). */
function adminUsers(users, providers) {
  const q = h("input", { id: "user-search", type: "search", ph: "admin.search" });
  const body = h("tbody", {});
  const editRow = (u) => {
    const name = h("input", { name: "display_name", value: u.display_name, required: true });
    const phone = h("input", { name: "phone", value: u.phone || "", type: "tel" });
    const email = h("input", { name: "email", value: u.email || "", type: "email" });
    const role = h("select", { name: "role" }, ...["admin", "care_worker", "family", "tester"].map((r) => h("option", { value: r, selected: r === u.role }, t("role." + r))));
    const prov = h("select", { name: "provider_id" }, h("option", { value: "" }, "—"), ...providers.map((p) => h("option", { value: p.id, selected: p.id === u.provider_id, class: "data" }, p.name)));
    const form = h("form", { class: "row edit", "data-edit-user": u.id, on: { submit: async (e) => {
      e.preventDefault();
      try { await api("/users/" + u.id, { method: "PATCH", body: { display_name: name.value.trim(), phone: phone.value.trim() || null,
        email: email.value.trim() || null, role: role.value, provider_id: prov.value || null } }); refreshAdmin(`[data-user-edit="${u.id}"]`); } catch (ex) { toast(refusal(ex, e.target)); }
    } } }, field(`u${u.id}-name`, "f.name", name), field(`u${u.id}-phone`, "res.phone", phone), field(`u${u.id}-email`, "f.email", email),
    field(`u${u.id}-role`, "f.role", role), field(`u${u.id}-prov`, "f.provider", prov), h("div", {}, h("button", { class: "btn", type: "submit", i18n: "admin.save" })));
    return h("tr", {}, h("td", { colspan: 5 }, form));
  };
  const draw = () => {
    const needle = q.value.trim().toLowerCase();
    const rows = users.filter((u) => !needle || `${u.username} ${u.display_name} ${u.provider_id || ""}`.toLowerCase().includes(needle));
    body.replaceChildren(...rows.map((u) => {
      const tr = h("tr", { "data-user": u.id, class: u.active ? null : "inactive" }, h("td", {}, D(u.username)), h("td", {}, D(u.display_name)),
        h("td", {}, L("role." + u.role), " ", D(u.provider_id)), h("td", {}, L(u.active ? "admin.active" : "admin.disabled")),
        h("td", {}, h("button", { class: "btn secondary", type: "button", "data-user-edit": u.id, i18n: "admin.edit", "aria-expanded": "false", on: { click: (e) => toggleEdit(tr, e.currentTarget, () => editRow(u)) } }), " ",
          h("button", { class: "btn secondary", type: "button", "data-toggle-user": u.id, i18n: u.active ? "admin.disable" : "admin.enable", on: { click: async () => {
            try { await api("/users/" + u.id, { method: "PATCH", body: { active: !u.active } }); refreshAdmin(`[data-toggle-user="${u.id}"]`); } catch (ex) { toast(ex.message); } } } })));
      return tr;
    }));
  };
  q.addEventListener("input", draw); draw();
  return h("div", { class: "card", id: "admin-users" }, h("h2", { i18n: "admin.users" }), h("label", { for: "user-search", i18n: "admin.search" }), q,
    scrollBox("admin.users", h("table", {}, h("thead", {}, h("tr", {}, ...["login.username", "f.name", "f.role", "admin.status", "admin.actions"].map((k) => h("th", { i18n: k })))), body)));
}

/* A search box over a table's rows (every row but the header), for the admin's lists. */
function rowFilter(id, table) {
  const q = h("input", { id, type: "search", class: "list-filter" });
  q.addEventListener("input", () => {
    const needle = q.value.trim().toLowerCase();
    table.querySelectorAll("tr").forEach((tr, i) => { if (i > 0 || tr.querySelector("td")) tr.hidden = !!needle && !tr.textContent.toLowerCase().includes(needle); });
  });
  return h("div", {}, h("label", { for: id, i18n: "admin.search" }), q);
}

/* Providers: list, search, edit in place (PUT /providers/{id}); the webhook secret is never shown,
   and left empty it is kept (the API replaces it only when the body names it). */
/* The home-care provider by name, with a tap-to-call number when the registry has one (never a raw id
   unless the provider's record is gone). */
function providerCell(r) {
  if (!r.home_care_provider_id) return D(null);
  const name = D(r.home_care_provider_name || r.home_care_provider_id);
  return r.home_care_provider_phone ? [name, " ", h("a", { href: "tel:" + r.home_care_provider_phone }, D(r.home_care_provider_phone))] : name;
}

function adminProviders(providers) {
  const kinds = ["home_care", "station", "institution"];
  const editRow = (p) => {
    const name = h("input", { name: "name", value: p.name, required: true });
    const kind = h("select", { name: "kind" }, ...kinds.map((k) => h("option", { value: k, selected: k === p.kind }, t("provider." + k))));
    const district = h("input", { name: "district", value: p.district || "" });
    const phone = h("input", { name: "phone", value: p.phone || "", type: "tel" });
    const hook = h("input", { name: "webhook_url", value: p.webhook_url || "", type: "url" });
    const secret = h("input", { name: "webhook_secret", value: "", type: "password", autocomplete: "new-password", minlength: 16 });
    const form = h("form", { class: "row edit", "data-edit-provider": p.id, on: { submit: async (e) => {
      e.preventDefault();
      const body = { id: p.id, name: name.value.trim(), kind: kind.value, district: district.value.trim() || null,
        phone: phone.value.trim() || null, webhook_url: hook.value.trim() || null };
      if (secret.value) body.webhook_secret = secret.value;
      try { await api("/providers/" + encodeURIComponent(p.id), { method: "PUT", body }); refreshAdmin(`[data-edit="${CSS.escape(p.id)}"]`); } catch (ex) { toast(refusal(ex, e.target)); }
    } } }, field(`pv-${p.id}-name`, "f.name", name), field(`pv-${p.id}-kind`, "f.kind", kind), field(`pv-${p.id}-district`, "f.district", district),
    field(`pv-${p.id}-phone`, "res.phone", phone), field(`pv-${p.id}-hook`, "provider.webhook", hook),
    field(`pv-${p.id}-secret`, p.webhook_secret_set ? "provider.secret_keep" : "provider.secret_new", secret),
    h("div", {}, h("button", { class: "btn", type: "submit", i18n: "admin.save" })));
    return h("tr", {}, h("td", { colspan: 5 }, form));
  };
  const table = h("table", { id: "providers-table" }, h("tr", {}, ...["f.name", "f.kind", "res.phone", "provider.webhook", "admin.actions"].map((k) => h("th", { i18n: k }))),
    ...providers.map((p) => {
      const tr = h("tr", { "data-provider": p.id }, h("td", {}, D(p.name), " ", D(p.id)), h("td", {}, L("provider." + p.kind)), h("td", {}, D(p.phone)),
        h("td", {}, D(p.webhook_url), p.webhook_url ? [" ", L(p.webhook_secret_set ? "provider.signed" : "provider.unsigned")] : null),
        h("td", {}, h("button", { class: "btn secondary", type: "button", "data-edit": p.id, i18n: "admin.edit", "aria-expanded": "false", on: { click: (e) => toggleEdit(tr, e.currentTarget, () => editRow(p)) } })));
      return tr;
    }));
  return h("div", { class: "card", id: "admin-providers" }, h("h2", { i18n: "admin.providers" }), rowFilter("provider-search", table), h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": t("admin.providers") }, table));
}

/* Gateways: state and last seen, new MQTT credentials (shown once), removal. */
function adminGateways(gateways) {
  const out = h("div", { class: "result", id: "reissued" });
  const rows = gateways.map((g) => h("tr", { "data-gateway": g.id }, h("td", {}, D(g.id)), h("td", {}, D(g.site_id)),
    h("td", {}, L("gw." + (g.state === "online" ? "online" : g.state === "offline" ? "offline" : "unknown")), " ", T(g.state_at)), h("td", {}, D(g.version)),
    h("td", {}, h("button", { class: "btn secondary", type: "button", "data-reissue": g.id, i18n: "admin.reissue", on: { click: async () => {
      try { const c = await api(`/gateways/${encodeURIComponent(g.id)}/credentials`, { method: "POST" });
        out.replaceChildren(h("p", { class: "notice", i18n: "admin.once" }), h("div", { class: "secret", id: "reissued-credentials" },
          L("admin.mqtt_username"), " ", D(c.mqtt_username), h("br"), L("admin.mqtt_password"), " ", D(c.mqtt_password))); } catch (ex) { toast(ex.message); } } } }), " ",
      h("button", { class: "btn danger", type: "button", i18n: "admin.delete", on: { click: async () => {
        if (!confirm(t("admin.confirm_delete", { id: g.id }))) return;
        try { await api(`/gateways/${encodeURIComponent(g.id)}`, { method: "DELETE" }); refreshAdmin(); } catch (ex) { toast(ex.message); } } } }))));
  const table = h("table", { id: "gateways-table" }, h("tr", {}, ...["f.id", "f.site", "admin.status", "admin.version", "admin.actions"].map((k) => h("th", { i18n: k }))), ...rows);
  return h("div", { class: "card", id: "admin-gateways" }, h("h2", { i18n: "admin.gateways" }), rowFilter("gateway-search", table), scrollBox("admin.gateways", table), out);
}

/* Rosters: every provider's shifts, each removable. */
async function adminRosters(providers) {
  const per = await Promise.all(providers.map((p) => api(`/providers/${encodeURIComponent(p.id)}/shifts`).catch(() => [])));
  const rows = providers.flatMap((p, i) => per[i].map((sh) => h("tr", { "data-shift": sh.id }, h("td", {}, D(p.name)), h("td", {}, D(sh.display_name)),
    h("td", {}, T(sh.starts_at), " – ", T(sh.ends_at)),
    h("td", {}, h("button", { class: "btn danger", type: "button", i18n: "admin.delete", on: { click: async () => {
      try { await api(`/providers/${encodeURIComponent(p.id)}/shifts/${sh.id}`, { method: "DELETE" }); refreshAdmin(); } catch (ex) { toast(ex.message); } } } })))));
  const table = h("table", { id: "shifts-table" }, h("tr", {}, ...["f.provider", "f.worker", "admin.when", "admin.actions"].map((k) => h("th", { i18n: k }))), ...rows);
  return h("div", { class: "card", id: "admin-rosters" }, h("h2", { i18n: "admin.rosters" }), rows.length
    ? [rowFilter("shift-search", table), scrollBox("admin.rosters", table)] : h("p", { class: "muted", i18n: "admin.no_shifts" }));
}

/* Policies: each tier's targets and deadline edited in place (PUT /policies/{id}). */
function adminPolicies(policies) {
  const rows = policies.map((p) => {
    const tiers = p.tiers.map((ti, j) => ({ ti, targets: h("input", { "data-api": `tiers.${j}.targets`, value: ti.targets.join(", ") }),
      timeout: h("input", { "data-api": `tiers.${j}.ack_timeout_s`, type: "number", min: 1, value: String(ti.ack_timeout_s) }) }));
    const form = h("form", { class: "edit", "data-policy": p.id, on: { submit: async (e) => {
      e.preventDefault();
      const body = { name: p.name, tiers: tiers.map((x) => ({ tier: x.ti.tier, name: x.ti.name || `tier ${x.ti.tier}`,
        targets: x.targets.value.split(",").map((v) => v.trim()).filter(Boolean), ack_timeout_s: Number(x.timeout.value) })) };
      try { await api("/policies/" + p.id, { method: "PUT", body }); refreshAdmin(); } catch (ex) { toast(refusal(ex, e.target)); }
    } } }, h("h3", {}, D(p.name)), ...tiers.map((x) => h("div", { class: "row" },
      field(`p${p.id}-t${x.ti.tier}`, "f.tier" + Math.min(x.ti.tier, 3), x.targets), field(`p${p.id}-s${x.ti.tier}`, "f.timeout", x.timeout))),
    h("p", {}, h("button", { class: "btn", type: "submit", i18n: "admin.save" })));
    return form;
  });
  return h("div", { class: "card", id: "admin-policies" }, h("h2", { i18n: "admin.edit_policies" }), ...rows);
}

/* An audit entry's action in the reader's words: the code as stored ("update:resident",
   "read:activity", "refused:403") names its label (audit.update.resident ...); a code the
   catalogue has no words for yet is shown as it is, marked as data. */
function auditAction(code) {
  const key = "audit." + String(code).toLowerCase().replace(/[^a-z0-9:]+/g, "_").replaceAll(":", ".");
  return I18N.en[key] ? L(key) : D(code);
}

/* The audit log, newest first, filtered by resident, user and time. */
function adminAudit() {
  const res = h("input", { name: "resident_id" }); const user = h("input", { name: "user_id", type: "number", min: 1 });
  const since = h("input", { name: "since", id: "audit-since", type: "datetime-local" });
  const table = h("table", { id: "audit-table" });
  const load = async (e) => {
    if (e) e.preventDefault();
    const q = new URLSearchParams({ limit: "100" });
    if (res.value.trim()) q.set("resident_id", res.value.trim());
    if (user.value) q.set("user_id", user.value);
    if (since.value) q.set("since", new Date(since.value).toISOString());
    try {
      const rows = await api("/audit?" + q);
      table.replaceChildren(h("tr", {}, ...["trail.at", "trail.who", "trail.action", "alert.resident", "admin.route"].map((k) => h("th", { i18n: k }))),
        ...rows.map((r) => h("tr", {}, h("td", {}, T(r.at)), h("td", {}, D(r.username)), h("td", { "data-action": r.action }, auditAction(r.action)), h("td", {}, D(r.resident_id)), h("td", {}, D(r.route)))));
    } catch (ex) { table.replaceChildren(h("tr", {}, h("td", { class: "err" }, refusal(ex, table.closest("form"))))); }
  };
  load();
  return h("form", { class: "card", id: "admin-audit", on: { submit: load } }, h("h2", { i18n: "admin.audit" }),
    h("div", { class: "row" }, field("audit-resident", "alert.resident", res), field("audit-user", "admin.user_id", user),
      h("div", {}, h("label", { for: "audit-since", i18n: "admin.since" }), since, dateSaid(since)),
      h("div", {}, h("button", { class: "btn", type: "submit", i18n: "admin.filter" }))), scrollBox("admin.audit", table));
}

function scoreTables(rep) {
  const kinds = Object.entries(rep.kinds || {});
  const fa = Object.entries(rep.false_alarms || {});
  const acks = Object.entries(rep.time_to_ack || {});
  const num = (v) => D(v === null || v === undefined ? null : v);
  return h("div", { id: "score-tables" },
    // two tables, each named (its box a region of its own name) and captioned: not two regions "Score"
    scrollBox("tester.by_kind", h("table", {}, h("caption", { i18n: "tester.by_kind" }), h("tr", {}, ...["tester.kind", "tester.incidents_n", "tester.caught", "tester.missed", "tester.under_way", "tester.delay_median", "tester.delay_p90"].map((k) => h("th", { i18n: k }))),
      ...kinds.map(([k, v]) => h("tr", { "data-kind": k }, h("td", {}, t("sim." + k) === "sim." + k ? L("kind." + k) : L("sim." + k)),
        ...["incidents", "caught", "missed", "under_way", "delay_median_s", "delay_p90_s"].map((f) => h("td", { "data-f": f }, num(v[f]))))))),
    h("p", {}, L("tester.false_alarms"), " ", ...fa.map(([k, n]) => h("span", { class: "badge", "data-false-alarms": k }, t("kind." + k), " ", D(n))),
      " · ", L("tester.per_week"), " ", h("span", { id: "per-week" }, num(rep.false_alarms_per_resident_week)), " · ", L("tester.resident_weeks"), " ", h("span", { id: "resident-weeks" }, num(rep.resident_weeks))),
    scrollBox("tester.time_to_ack", h("table", {}, h("caption", { i18n: "tester.time_to_ack" }), h("tr", {}, ...["alert.tier", "tester.acknowledged", "tester.delay_median", "tester.delay_p90"].map((k) => h("th", { i18n: k }))),
      ...acks.map(([tier, v]) => h("tr", {}, h("td", {}, D(tier)), h("td", {}, num(v.acknowledged)), h("td", {}, num(v.median_s)), h("td", {}, num(v.p90_s)))))));
}

async function pageTester(_, root) {
  let residents = [];
  try { residents = (await api("/residents?limit=1000")).filter((r) => r.simulated); } catch (e) { toast(e.message); }
  const score = h("div", { id: "score" });
  const loadScore = async () => {
    try { const sc = await api("/sim/score"); score.replaceChildren(h("p", {}, L("tester.incidents"), " ", D(sc.incidents)), scoreTables(sc.report)); }
    catch (e) { score.replaceChildren(h("p", { class: "muted" }, L("tester.no_score"), " ", D(e.message))); }
  };
  const table = h("table", { id: "sim-residents" }, h("tr", {}, h("th", { i18n: "f.id" }), h("th", { i18n: "f.name" }), h("th", { i18n: "f.home_site" }), h("th", { i18n: "tester.trigger" })),
    ...residents.map((r) => {
      const kind = h("select", { "data-kind-for": r.id, "aria-label": t("tester.kind_for", { name: r.name }) }, ...SIM_KINDS.map((k) => h("option", { value: k }, t("sim." + k))));
      return h("tr", {}, h("td", {}, D(r.id)), h("td", {}, D(r.name)), h("td", {}, D(r.home_site_id)),
        h("td", {}, h("div", { class: "row" }, kind, h("button", { class: "btn", "data-trigger": r.id, i18n: "tester.go", on: { click: async () => {
          try { await api("/sim/incidents", { body: { resident: r.id, kind: kind.value, wait_for_ack: true } }); toast(t("tester.sent")); }
          catch (e) { toast(e.message); } } } }))));
    }));
  const list = h("ul", { class: "alerts", id: "alert-list" });
  const draw = () => {
    const rows = [...S.alerts.values()].filter((a) => a.simulated).sort((a, b) => new Date(wallAt(b)) - new Date(wallAt(a))).slice(0, 30);
    list.replaceChildren(...(rows.length ? rows.map((a) => alertItem(a)) : [h("li", { class: "muted", i18n: "console.empty" })]));
  };
  root.onAlerts = draw;
  root.replaceChildren(h("h1", { i18n: "tester.title" }),
    h("div", { class: "card" }, h("h2", { i18n: "tester.residents" }), residents.length ? table : h("p", { class: "muted", i18n: "tester.none" })),
    h("div", { class: "card" }, h("h2", { i18n: "tester.alerts" }), list),
    h("div", { class: "card" }, h("h2", { i18n: "tester.score" }), h("button", { class: "btn secondary", id: "score-refresh", i18n: "tester.refresh", on: { click: loadScore } }), score));
  draw(); loadScore(); startLive();
}

/* ---------- router ---------- */

/* Who may open which page; the API refuses the rest anyway, but a page must not even render. */
const PAGE_ROLES = {
  console: ["care_worker", "admin", "tester"], admin: ["admin"], tester: ["tester", "admin"],
  family: ["family"], resident: ["care_worker", "admin"], alert: ["care_worker", "admin", "tester", "family"],
};
const mayOpen = (page) => !!(S.me && (PAGE_ROLES[page] || []).includes(S.me.role));

/* Each render builds its page in a detached element and shows it only if no newer render began
   meanwhile (a language switch while a page is still loading must not be undone by the old one). */
async function render() {
  const gen = ++S.gen;
  document.body.dataset.ready = "0";
  chrome();
  const [, page, arg] = (location.hash || "#/").split("/");
  onAlertsChanged = () => {};
  const root = h("main", { id: "main" });
  let fn = { console: pageConsole, alert: pageAlert, resident: pageResident, family: pageFamily, admin: pageAdmin, tester: pageTester }[page];
  if (!S.token) {
    if (page !== "login") history.replaceState(null, "", "#/login");
    fn = pageLogin;
  } else if (!fn || !mayOpen(page)) { location.replace(home()); return; }
  try { await fn(arg && decodeURIComponent(arg), root); } catch (e) { root.replaceChildren(h("p", { class: "err" }, e.message)); }
  if (gen !== S.gen) return;
  const old = document.getElementById("main");
  const had = old.contains(document.activeElement) ? document.activeElement : null; // the keyboard was on this page
  old.replaceWith(root);
  if (root.onAlerts) { onAlertsChanged = root.onAlerts; onAlertsChanged(); }
  document.body.dataset.page = S.token ? page : "login";
  chrome();
  placeFocus(root, had);
  if (root.shown) root.shown();
  document.body.dataset.ready = "1";
}

/* After a render: the tab's title names the page (screen readers read it, tabs and history show
   it); on a new route the keyboard and screen reader start at the page's heading, not on <body>;
   on a redraw of the same route focus goes back where it was (a field by id, or the control
   S.refocus names after a save), else to the heading rather than the top of the document. */
function placeFocus(root, had) {
  const title = root.querySelector("h1");
  if (title) title.tabIndex = -1; // focusable from script, not a Tab stop
  document.title = title ? `${title.textContent} · ${t("app.name")}` : t("app.name");
  const route = location.hash;
  const moved = S.shown !== undefined && S.shown !== route;
  S.shown = route;
  const want = S.refocus; S.refocus = null;
  if (!moved && !had && !want) return; // first load, or a live redraw while the keyboard is elsewhere
  const again = !moved && ((want && root.querySelector(want)) || (had && had.id && document.getElementById(had.id)));
  const target = again || root.querySelector("[data-focus]") || title || root;
  if (target === root) root.tabIndex = -1;
  target.focus();
}

for (const ev of ["invalid", "input", "change"]) document.addEventListener(ev, sayValidity, true); // (invalid does not bubble)
document.getElementById("lang").addEventListener("click", switchLang);
document.getElementById("logout").addEventListener("click", logout);
window.addEventListener("hashchange", render);
render();
