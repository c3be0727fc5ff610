// acr-import's dashboard: plain JavaScript, no build step, no dependencies. It is a frontend
// like any other: it calls the ARM routes, follows the Azure-AsyncOperation URL an import
// answers with, reads the operations feed (/_acr-import/operations and its event stream) and
// browses through the registries' /v2 API. Text is always set with textContent (never parsed
// as HTML). The bearer token of --auth arm-rbac lives in sessionStorage only.
"use strict";

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = "acr-import.token";
const TOKEN_USER = "00000000-0000-0000-0000-000000000000";
const RG_API = "2022-09-01";

const state = {
  config: null,
  subscription: "",
  registries: [],
  ops: new Map(),      // id -> feed operation
  opsNext: null,       // nextLink of the list
  lastEventId: null,
  stream: null,        // AbortController of the event stream
};

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function bytes(n) {
  if (n === undefined || n === null) return "–";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0; let v = n;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return `${i ? v.toFixed(1) : v} ${u[i]}`;
}

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function notice(text, kind) {
  const n = $("#notice");
  n.textContent = text;
  n.className = kind || "error";
  n.hidden = !text;
}

/** An ARM error (or any failed answer) as one readable line: "Code: message". */
class ApiFailure extends Error {
  constructor(status, code, message) {
    super(code ? `${code}: ${message}` : message);
    this.status = status; this.code = code;
  }
}

async function failure(resp) {
  let code = ""; let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) { code = body.error.code || ""; message = body.error.message || message; }
    else if (body && body.errors && body.errors[0]) { code = body.errors[0].code || ""; message = body.errors[0].message || message; }
  } catch (_) { /* not JSON */ }
  return new ApiFailure(resp.status, code, message);
}

/** Calls the ARM API (same origin). Returns the Response; throws ApiFailure on 4xx/5xx. */
async function arm(method, path, body) {
  const headers = { "x-ms-client-request-id": uuid(), "Accept": "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) throw await failure(resp);
  return resp;
}

async function armJson(method, path, body) {
  const resp = await arm(method, path, body);
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

function api() { return state.config.apiVersion; }
function sub() { return encodeURIComponent(state.subscription); }

/** Follows an Azure-AsyncOperation URL until a terminal status, as azure-core does. */
async function follow(url, onStatus) {
  for (;;) {
    const resp = await arm("GET", url);
    const body = await resp.json();
    onStatus(body);
    if (["succeeded", "failed", "canceled"].includes(String(body.status).toLowerCase())) return body;
    const after = Number(resp.headers.get("Retry-After")) || 1;
    await new Promise((r) => setTimeout(r, Math.min(after, 5) * 1000));
  }
}

// ---------- views ----------

const VIEWS = ["registries", "import", "operations", "browse"];

function show() {
  const want = (location.hash || "#registries").slice(1).split("/")[0];
  const view = VIEWS.includes(want) ? want : "registries";
  for (const v of VIEWS) {
    $(`#view-${v}`).hidden = v !== view;
    const link = $(`#nav-${v}`);
    if (v === view) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
}

// ---------- registries ----------

async function loadRegistries() {
  const body = await armJson("GET", `/subscriptions/${sub()}/providers/Microsoft.ContainerRegistry/registries?api-version=${api()}`);
  state.registries = (body && body.value) || [];
  state.registries.sort((a, b) => a.name.localeCompare(b.name));
  renderRegistries();
}

function resourceGroupOf(r) {
  const m = /\/resourceGroups\/([^/]+)\//i.exec(r.id);
  return m ? m[1] : "";
}

function renderRegistries() {
  const tbody = $("#registries-table tbody");
  tbody.replaceChildren();
  const cmds = $("#pull-commands");
  cmds.replaceChildren();
  const ep = state.config.registryEndpoint ? new URL(state.config.registryEndpoint).host : null;
  for (const r of state.registries) {
    const p = r.properties;
    tbody.append(h("tr", { "data-registry": r.name },
      h("td", {}, h("strong", { text: r.name })),
      h("td", { text: resourceGroupOf(r) }),
      h("td", { text: r.sku.name }),
      h("td", {}, h("code", { text: p.loginServer })),
      h("td", { text: p.adminUserEnabled ? "enabled" : "disabled" }),
      h("td", { text: p.publicNetworkAccess }),
      h("td", { text: p.anonymousPullEnabled ? "yes" : "no" }),
      h("td", { text: p.provisioningState }),
      h("td", {}, h("button", { type: "button", class: "danger", "aria-label": `Delete ${r.name}`, onclick: () => deleteRegistry(r) }, "Delete"))));
    cmds.append(h("li", {},
      h("code", { text: `docker pull ${p.loginServer}/<repository>:<tag>` }),
      ep ? h("span", { class: "muted", text: " or, without DNS: " }) : null,
      ep ? h("code", { text: `docker pull ${ep}/${r.name.toLowerCase()}/<repository>:<tag>` }) : null));
  }
  $("#registries-empty").hidden = state.registries.length > 0;
  for (const sel of ["#import-target", "#import-source-registry", "#browse-registry"]) {
    const el = $(sel);
    const keep = el.value;
    el.replaceChildren(...state.registries.map((r) => h("option", { value: r.id, text: r.name })));
    if ([...el.options].some((o) => o.value === keep)) el.value = keep;
  }
}

async function createRegistry(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const name = f.get("name"); const rg = f.get("resourceGroup"); const loc = f.get("location");
  const button = $("#create-submit");
  button.disabled = true;
  try {
    await arm("PUT", `/subscriptions/${sub()}/resourcegroups/${encodeURIComponent(rg)}?api-version=${RG_API}`, { location: loc });
    await arm("PUT", `/subscriptions/${sub()}/resourceGroups/${encodeURIComponent(rg)}/providers/Microsoft.ContainerRegistry/registries/${encodeURIComponent(name)}?api-version=${api()}`, {
      location: loc,
      sku: { name: f.get("sku") },
      properties: {
        adminUserEnabled: f.get("adminUserEnabled") === "on",
        anonymousPullEnabled: f.get("anonymousPullEnabled") === "on",
        publicNetworkAccess: f.get("publicNetworkAccess"),
      },
    });
    notice(`Registry ${name} created.`, "ok");
    ev.target.elements.name.value = "";
    await loadRegistries();
  } catch (e) {
    notice(e.message);
  } finally {
    button.disabled = false;
  }
}

async function deleteRegistry(r) {
  if (!confirm(`Delete registry ${r.name} and everything in it?`)) return;
  try {
    const resp = await arm("DELETE", `${r.id}?api-version=${api()}`);
    const url = resp.headers.get("Azure-AsyncOperation");
    notice(`Deleting ${r.name}…`, "ok");
    if (url) {
      const end = await follow(url, () => {});
      if (end.status !== "Succeeded") throw new ApiFailure(0, end.error && end.error.code, (end.error && end.error.message) || end.status);
    }
    notice(`Registry ${r.name} deleted.`, "ok");
  } catch (e) {
    notice(e.message);
  }
  await loadRegistries().catch((e) => notice(e.message));
}

// ---------- import ----------

function lines(text) {
  return String(text || "").split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
}

function sourceKindChanged() {
  const kind = new FormData($("#import-form")).get("sourceKind");
  $("#source-uri-label").hidden = kind !== "uri";
  $("#source-registry-label").hidden = kind !== "registry";
}

async function startImport(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const source = { sourceImage: f.get("sourceImage").trim() };
  if (f.get("sourceKind") === "registry") source.resourceId = f.get("sourceRegistry");
  else source.registryUri = f.get("registryUri").trim();
  if (f.get("password")) {
    source.credentials = { password: f.get("password") };
    if (f.get("username")) source.credentials.username = f.get("username");
  }
  const body = { source, mode: f.get("mode") };
  const tags = lines(f.get("targetTags"));
  const untagged = lines(f.get("untagged"));
  if (tags.length) body.targetTags = tags;
  if (untagged.length) body.untaggedTargetRepositories = untagged;
  const target = f.get("target");
  const status = $("#import-status"); const detail = $("#import-detail"); const link = $("#import-status-link");
  $("#import-result").hidden = false;
  status.textContent = "Submitting"; status.className = "badge"; detail.textContent = ""; link.hidden = true;
  const button = $("#import-submit");
  button.disabled = true;
  try {
    const resp = await arm("POST", `${target}/importImage?api-version=${api()}`, body);
    if (resp.status === 200) {
      setBadge(status, "Succeeded");
      detail.textContent = "Finished at once: nothing needed copying.";
      return;
    }
    const url = resp.headers.get("Azure-AsyncOperation") || resp.headers.get("Location");
    link.hidden = false;
    link.onclick = (e) => { e.preventDefault(); showJson(url); };
    const end = await follow(url, (s) => {
      setBadge(status, s.status);
      detail.textContent = s.percentComplete !== undefined ? `${Math.round(s.percentComplete)} %` : "";
    });
    if (end.error) detail.textContent = `${end.error.code}: ${end.error.message}`;
  } catch (e) {
    setBadge(status, "Failed");
    detail.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

function setBadge(el, status) {
  el.textContent = status;
  el.className = `badge ${String(status).toLowerCase()}`;
}

async function showJson(url) {
  const dialog = $("#json-dialog");
  $("#json-title").textContent = "ARM status";
  $("#json-body").textContent = "";
  try {
    const body = await armJson("GET", url);
    $("#json-body").textContent = JSON.stringify(body, null, 2);
  } catch (e) {
    $("#json-body").textContent = e.message;
  }
  if (dialog.showModal) dialog.showModal(); else dialog.setAttribute("open", "");
}

// ---------- operations ----------

function opsQuery() {
  const q = new URLSearchParams();
  const reg = $("#ops-registry").value.trim();
  const st = $("#ops-state").value;
  if (reg) q.set("registry", reg);
  if (st) q.set("state", st);
  return q;
}

function matchesFilter(op) {
  const reg = $("#ops-registry").value.trim().toLowerCase();
  const st = $("#ops-state").value;
  return (!reg || op.registry.name.toLowerCase() === reg) && (!st || op.state === st);
}

async function feed(url) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const resp = await fetch(url, { headers });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

async function loadOperations(more) {
  const url = more ? state.opsNext : `/_acr-import/operations?top=50&${opsQuery()}`;
  if (!url) return;
  const page = await feed(url);
  if (!more) state.ops.clear();
  for (const op of page.value) state.ops.set(op.id, op);
  state.opsNext = page.nextLink || null;
  renderOperations();
  return page.value.reduce((m, op) => Math.max(m, op.changeSeq || 0), 0);
}

function progressText(op) {
  const p = op.progress || {};
  const parts = [`${Math.floor(op.percentComplete)} %`];
  if (p.bytesTotal !== undefined) parts.push(`${bytes((p.bytesCopied || 0) + (p.bytesSkipped || 0))} of ${bytes(p.bytesTotal)}`);
  if (p.blobsTotal !== undefined) parts.push(`blobs ${p.blobsDone}/${p.blobsTotal}`);
  if (p.manifestsTotal !== undefined) parts.push(`manifests ${p.manifestsDone}/${p.manifestsTotal}`);
  if (op.startedAt) {
    const end = op.endedAt ? Date.parse(op.endedAt) : Date.now();
    const ms = end - Date.parse(op.startedAt);
    if (p.bytesCopied && ms > 0) parts.push(`${bytes(p.bytesCopied / (ms / 1000))}/s`);
    parts.push(`elapsed ${duration(ms)}`);
  }
  return parts.join(" · ");
}

function opItem(op) {
  const src = op.source ? (op.source.registryUri ? `${op.source.registryUri}/${op.source.sourceImage}` : `${(op.source.resourceId || "").split("/").pop()}/${op.source.sourceImage}`) : op.kind;
  const targets = [...op.targetTags, ...op.untaggedTargetRepositories.map((r) => `${r} (untagged)`)];
  const badge = h("span", { class: `badge ${op.status.toLowerCase()}`, "data-status": op.status, text: op.status });
  const bar = h("progress", { max: 100, value: op.percentComplete, "aria-label": `Progress of ${op.id}` });
  const li = h("li", { class: "op", "data-op": op.id, "data-status": op.status },
    h("div", { class: "op-head" },
      badge,
      h("strong", { text: src }),
      h("span", { class: "muted", text: ` → ${op.registry.name}${targets.length ? ": " + targets.join(", ") : ""}` })),
    h("div", { class: "op-bar" }, bar, h("span", { class: "op-progress", text: progressText(op) })),
    op.error ? h("p", { class: "op-error" }, h("strong", { text: `${op.error.code}: ` }), op.error.message) : null,
    h("div", { class: "op-foot muted" },
      h("span", { text: `${op.id} · ${op.kind}${op.mode ? " · " + op.mode : ""} · created ${new Date(op.createdAt).toLocaleString()}` }),
      h("button", { type: "button", class: "link", onclick: () => showJson(op.statusUrl) }, "ARM status JSON")));
  return li;
}

function renderOperations() {
  const list = $("#ops-list");
  const ops = [...state.ops.values()].filter(matchesFilter)
    .sort((a, b) => (Date.parse(b.createdAt) - Date.parse(a.createdAt)) || b.id.localeCompare(a.id));
  list.replaceChildren(...ops.map(opItem));
  $("#ops-empty").hidden = ops.length > 0;
  $("#ops-more").hidden = !state.opsNext;
}

/** Reads the event stream with fetch (EventSource cannot send a bearer token). */
async function runStream() {
  let backoff = 500;
  for (;;) {
    const ctl = new AbortController();
    state.stream = ctl;
    try {
      // A reconnect re-lists first: nothing that happened while away is missed. A first
      // stream starts after the newest change the list shows.
      const listed = await loadOperations(false);
      if (state.lastEventId === null) state.lastEventId = String(listed);
      const headers = { Accept: "text/event-stream" };
      if (token()) headers.Authorization = `Bearer ${token()}`;
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const resp = await fetch("/_acr-import/operations/events", { headers, signal: ctl.signal });
      if (!resp.ok) throw await failure(resp);
      setLive(true);
      backoff = 500;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
          handleEvent(block);
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      if (e instanceof ApiFailure) notice(e.message);
    }
    setLive(false);
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}

function handleEvent(block) {
  let event = "message"; let data = ""; let id = null;
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "event") event = val;
    else if (field === "data") data += (data ? "\n" : "") + val;
    else if (field === "id") id = val;
  }
  if (id !== null) state.lastEventId = id;
  if (!data || !["created", "progress", "finished"].includes(event)) return;
  const op = JSON.parse(data);
  state.ops.set(op.id, op);
  const list = $("#ops-list");
  const old = list.querySelector(`li[data-op="${CSS.escape(op.id)}"]`);
  if (!matchesFilter(op)) { if (old) old.remove(); return; }
  if (old) old.replaceWith(opItem(op)); else renderOperations();
  $("#ops-empty").hidden = true;
}

function setLive(on) {
  const el = $("#live");
  el.textContent = on ? "live" : "offline";
  el.className = on ? "live on" : "live";
}

function restartStream() {
  if (state.stream) state.stream.abort();
  state.lastEventId = null;
  runStream();
}

// The elapsed time and rate of running imports move on between events.
setInterval(() => {
  for (const li of document.querySelectorAll('#ops-list li[data-status="InProgress"]')) {
    const op = state.ops.get(li.dataset.op);
    const span = li.querySelector(".op-progress");
    if (op && span) span.textContent = progressText(op);
  }
}, 1000);

// ---------- browse (through the data plane) ----------

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** GET on the registries' listener: anonymous first; on 401 with a token, the token as ACR
 * accepts an Entra token (Basic, user 00000000-…). */
async function registryGet(path, accept) {
  const base = state.config.registryEndpoint;
  if (!base) throw new ApiFailure(0, "", "The registries' listener is not known.");
  const headers = { Accept: accept || "application/json" };
  let resp = await fetch(base + path, { headers });
  if (resp.status === 401 && token()) {
    headers.Authorization = `Basic ${btoa(`${TOKEN_USER}:${token()}`)}`;
    resp = await fetch(base + path, { headers });
  }
  if (!resp.ok) throw await failure(resp);
  return resp;
}

function crumbs(parts) {
  const nav = $("#browse-path");
  nav.replaceChildren(...parts.flatMap(([label, fn], i) => [
    i ? h("span", { class: "sep", text: " / " }) : null,
    fn ? h("button", { type: "button", class: "link", onclick: fn }, label) : h("span", { "aria-current": "location", text: label }),
  ]).filter(Boolean));
}

function registryName() {
  const id = $("#browse-registry").value;
  const r = state.registries.find((x) => x.id === id);
  return r ? r.name.toLowerCase() : "";
}

async function browseRepositories(ev) {
  if (ev) ev.preventDefault();
  const reg = registryName();
  if (!reg) return;
  const body = $("#browse-body");
  crumbs([[reg, null]]);
  body.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  try {
    const cat = await (await registryGet("/v2/_catalog?n=10000")).json();
    const repos = (cat.repositories || []).filter((r) => r.startsWith(`${reg}/`)).map((r) => r.slice(reg.length + 1));
    body.replaceChildren(repos.length
      ? h("ul", { class: "browse-list", id: "browse-repos" }, repos.map((r) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => browseTags(reg, r) }, r))))
      : h("p", { class: "muted", text: "No repositories." }));
  } catch (e) {
    body.replaceChildren(h("p", { class: "op-error", text: e.message }));
  }
}

async function browseTags(reg, repo) {
  const body = $("#browse-body");
  crumbs([[reg, () => browseRepositories()], [repo, null]]);
  try {
    const list = await (await registryGet(`/v2/${reg}/${repo}/tags/list`)).json();
    const tags = list.tags || [];
    body.replaceChildren(tags.length
      ? h("ul", { class: "browse-list", id: "browse-tags" }, tags.map((t) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => browseManifest(reg, repo, t) }, t))))
      : h("p", { class: "muted", text: "No tags." }));
  } catch (e) {
    body.replaceChildren(h("p", { class: "op-error", text: e.message }));
  }
}

function imageSize(m) {
  return (m.config ? m.config.size : 0) + (m.layers || []).reduce((s, l) => s + (l.size || 0), 0);
}

async function browseManifest(reg, repo, ref) {
  const body = $("#browse-body");
  crumbs([[reg, () => browseRepositories()], [repo, () => browseTags(reg, repo)], [ref, null]]);
  try {
    const resp = await registryGet(`/v2/${reg}/${repo}/manifests/${ref}`, MANIFEST_TYPES);
    const digest = resp.headers.get("Docker-Content-Digest") || "";
    const type = (resp.headers.get("Content-Type") || "").split(";")[0];
    const text = await resp.text();
    const m = JSON.parse(text);
    const head = h("dl", { class: "facts" },
      h("dt", { text: "Digest" }), h("dd", {}, h("code", { text: digest })),
      h("dt", { text: "Media type" }), h("dd", { text: m.mediaType || type }),
      h("dt", { text: "Manifest size" }), h("dd", { text: bytes(new TextEncoder().encode(text).length) }));
    if (m.manifests) {
      const rows = await Promise.all(m.manifests.map(async (d) => {
        const p = d.platform || {};
        let size = null;
        try {
          const child = await (await registryGet(`/v2/${reg}/${repo}/manifests/${d.digest}`, d.mediaType || MANIFEST_TYPES)).json();
          size = imageSize(child);
        } catch (_) { /* shown as unknown */ }
        const plat = [p.os, p.architecture, p.variant].filter(Boolean).join("/") || "(no platform)";
        return h("tr", { "data-platform": plat },
          h("td", { text: plat }), h("td", {}, h("code", { text: d.digest })),
          h("td", { text: bytes(d.size) }), h("td", { text: size === null ? "unknown" : bytes(size) }));
      }));
      body.replaceChildren(head, h("h3", { text: `Platforms (${m.manifests.length})` }),
        h("div", { class: "scroll" }, h("table", { id: "browse-platforms" },
          h("thead", {}, h("tr", {}, h("th", { text: "Platform" }), h("th", { text: "Digest" }), h("th", { text: "Manifest" }), h("th", { text: "Image size" }))),
          h("tbody", {}, rows))));
    } else {
      const layers = (m.layers || []).map((l) => h("tr", {}, h("td", { text: l.mediaType }), h("td", {}, h("code", { text: l.digest })), h("td", { text: bytes(l.size) })));
      body.replaceChildren(head, h("p", { text: `Image size ${bytes(imageSize(m))}` }), h("h3", { text: "Layers" }),
        h("div", { class: "scroll" }, h("table", { id: "browse-layers" },
          h("thead", {}, h("tr", {}, h("th", { text: "Media type" }), h("th", { text: "Digest" }), h("th", { text: "Size" }))),
          h("tbody", {}, layers))));
    }
  } catch (e) {
    body.replaceChildren(h("p", { class: "op-error", text: e.message }));
  }
}

// ---------- start ----------

async function loadSubscriptions() {
  const sel = $("#subscription");
  let subs = state.config.subscriptions.slice();
  try {
    const body = await armJson("GET", "/subscriptions?api-version=2022-12-01");
    for (const s of (body && body.value) || []) if (!subs.includes(s.subscriptionId)) subs.push(s.subscriptionId);
  } catch (e) { notice(e.message); }
  const keep = sessionStorage.getItem("acr-import.subscription");
  sel.replaceChildren(...subs.map((s) => h("option", { value: s, text: s })));
  if (keep && subs.includes(keep)) sel.value = keep;
  state.subscription = sel.value;
}

async function refreshAll() {
  notice("");
  await loadSubscriptions();
  await loadRegistries().catch((e) => notice(e.message));
  restartStream();
}

function tokenState() {
  $("#token-state").textContent = token() ? "A token is set for this tab." : "No token: requests are refused.";
}

async function main() {
  state.config = await (await fetch("/_acr-import/portal/config")).json();
  if (state.config.auth === "arm-rbac") { $("#auth").hidden = false; tokenState(); }
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim().replace(/^Bearer\s+/i, "");
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $("#token").value = "";
    tokenState();
    refreshAll();
  });
  $("#token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); tokenState(); refreshAll(); });
  $("#subscription").addEventListener("change", (ev) => {
    state.subscription = ev.target.value;
    sessionStorage.setItem("acr-import.subscription", state.subscription);
    loadRegistries().catch((e) => notice(e.message));
  });
  $("#create-form").addEventListener("submit", createRegistry);
  $("#import-form").addEventListener("submit", startImport);
  for (const r of document.querySelectorAll('input[name="sourceKind"]')) r.addEventListener("change", sourceKindChanged);
  $("#ops-filter").addEventListener("submit", (ev) => { ev.preventDefault(); restartStream(); });
  $("#ops-more").addEventListener("click", () => loadOperations(true).catch((e) => notice(e.message)));
  $("#browse-form").addEventListener("submit", browseRepositories);
  $("#json-close").addEventListener("click", () => $("#json-dialog").close());
  window.addEventListener("hashchange", show);
  show();
  await refreshAll();
}

main().catch((e) => notice(`The dashboard could not start: ${e.message}`));
