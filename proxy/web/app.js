/* app.js - smtptap's live web page: the sessions as they happen (GET /api/sessions, then
 * the summaries of the Server-Sent Events stream GET /api/events?view=sessions), one session
 * opened as a sequence diagram client - smtptap - server (GET /api/sessions/N, and while it
 * is live its own stream of events), and the fault panel (/api/faults).
 *
 * Everything from the wire is hostile text: it only ever reaches the page through
 * textContent and attribute setters, never innerHTML. The session list is reconciled at most
 * once per animation frame and shows at most `limit` rows; only the open session's events
 * are kept. With ?access_token=T in the page's address, every request carries
 * "Authorization: Bearer T" (the event stream and download links carry access_token=T,
 * since neither can set a header). */
"use strict";

(function () {
  const PAGE = 200; /* rows shown, and added by "show more" */
  const KEEP_ENDED = 5000; /* ended sessions kept by the page beyond this are forgotten */

  const params = new URLSearchParams(location.search);
  const token = params.get("access_token");

  const $ = (id) => document.getElementById(id);
  const ui = {
    conn: $("conn"), stats: $("stats"), count: $("count"), list: $("sessions"),
    more: $("more"), fClient: $("filter-client"), fVerdict: $("filter-verdict"),
    fErrors: $("filter-errors"), faults: $("faults"), faultInput: $("fault-input"),
    faultAdd: $("fault-add"), faultReset: $("fault-reset"), faultError: $("fault-error"),
    faultForm: $("fault-form"), empty: $("detail-empty"), detail: $("detail"),
    head: $("detail-head"), downloads: $("downloads"), diagram: $("diagram"),
  };

  /* ---- requests ------------------------------------------------------------------------ */

  function withToken(url) {
    if (!token) return url;
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "access_token=" + encodeURIComponent(token);
  }

  /* fetch() with the token; resolves to {status, body} (body parsed JSON, or null). */
  async function api(method, path, body) {
    const opts = { method: method, headers: {}, cache: "no-store" };
    if (token) opts.headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    let data = null;
    try {
      data = await r.json();
    } catch (e) {
      data = null;
    }
    return { status: r.status, body: data };
  }

  function errorText(res, what) {
    if (res.body && typeof res.body.error === "string") return res.body.error;
    return what + ": HTTP " + res.status;
  }

  /* ---- small DOM helpers (text only) ----------------------------------------------------- */

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /* The bytes of a base64 string as text: printable ASCII as is, the rest as \xNN. */
  function fromB64(b64) {
    let bin;
    try {
      bin = atob(b64);
    } catch (e) {
      return "[undecodable base64]";
    }
    let out = "";
    for (let i = 0; i < bin.length; i++) {
      const c = bin.charCodeAt(i);
      if (c === 13 && bin.charCodeAt(i + 1) === 10) {
        out += "\r";
      } else if (c === 10 || (c >= 32 && c < 127) || c === 9) {
        out += bin[i];
      } else {
        out += "\\x" + c.toString(16).padStart(2, "0");
      }
    }
    return out;
  }

  /* An event's line as shown: without its final line end; other control characters made
   * visible so that a hostile line cannot pose as two. */
  function lineOf(ev) {
    let s = ev.line !== undefined ? ev.line : ev.line_b64 !== undefined ? fromB64(ev.line_b64) : "";
    s = s.replace(/\r?\n$/, "");
    return s;
  }

  function visible(s) {
    return s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => {
      if (c === "\r") return "\\r";
      return "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0");
    });
  }

  /* The lines of a (multi-line) reply, each made visible. */
  function linesOf(ev) {
    return lineOf(ev).split(/\r?\n/).map(visible);
  }

  function textOf(ev) {
    if (ev.text !== undefined) return ev.text;
    if (ev.text_b64 !== undefined) return fromB64(ev.text_b64);
    return "";
  }

  function fmtMs(ms) {
    if (ms === undefined || ms === null) return "";
    if (ms < 0.1) return "<0.1 ms";
    if (ms < 10) return ms.toFixed(1) + " ms";
    return Math.round(ms) + " ms";
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    return d.toLocaleTimeString([], { hour12: false });
  }

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : 0;
  }

  /* ---- sessions ------------------------------------------------------------------------ */

  const sessions = new Map(); /* id -> summary (the API's, updated by events while live) */
  let order = []; /* ids, ascending */
  const rows = new Map(); /* id -> {li, ver}: rows in the list */
  let limit = PAGE;
  let renderQueued = false;
  let openId = null;
  let openLoading = false;
  let pending = []; /* events of the open session that came while it loaded */

  function addId(id) {
    const n = order.length;
    if (n === 0 || order[n - 1] < id) {
      order.push(id);
      return;
    }
    let lo = 0, hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (order[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    if (order[lo] !== id) order.splice(lo, 0, id);
  }

  /* Forgets the oldest ended sessions beyond KEEP_ENDED (the API's ring has them no more). */
  function trim() {
    if (order.length <= KEEP_ENDED) return;
    const keep = [];
    let drop = order.length - KEEP_ENDED;
    for (const id of order) {
      const s = sessions.get(id);
      if (drop > 0 && s && s.state !== "live" && id !== openId) {
        sessions.delete(id);
        drop--;
      } else {
        keep.push(id);
      }
    }
    order = keep;
  }

  function setSummary(sum) {
    if (!sum || typeof sum.id !== "number") return;
    const old = sessions.get(sum.id);
    if (old && old.state === "ended" && sum.state === "live") return; /* an older snapshot */
    sum._ver = old ? old._ver + 1 : 1;
    sessions.set(sum.id, sum);
    if (!old) addId(sum.id);
    trim();
    queueRender();
    if (old && num((sum.counts || {}).faults) > num((old.counts || {}).faults)) queueFaults();
    queueStats();
    if (sum.id === openId) {
      renderHead(sum);
      /* no stream of its own (refused: too many streams): the diagram is fetched again */
      if (!openSource && !openLoading && old && old.state === "live") openSession(sum.id);
    }
  }

  function hasErrors(s) {
    const c = s.counts || {}, k = s.codes || {};
    return num(c.errors) > 0 || num(k["4xx"]) > 0 || num(k["5xx"]) > 0;
  }

  /* The filters as set now (read once per render, not once per session). */
  function currentFilter() {
    return { q: ui.fClient.value.trim().toLowerCase(), v: ui.fVerdict.value, errors: ui.fErrors.checked };
  }

  function matches(s, f) {
    if (f.q) {
      const hay = [s.client, s.helo, s.auth && s.auth.user, "#" + s.id].join(" ").toLowerCase();
      if (hay.indexOf(f.q) < 0) return false;
    }
    if (f.v === "good" && !(s.verdict && s.verdict.good === true)) return false;
    if (f.v === "bad" && !(s.verdict && s.verdict.good === false)) return false;
    if (f.v === "none" && s.verdict) return false;
    if (f.errors && !hasErrors(s)) return false;
    return true;
  }

  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(renderList);
  }

  function fillRow(li, s) {
    li.textContent = "";
    li.classList.toggle("live", s.state === "live");
    li.classList.toggle("has-errors", hasErrors(s));
    li.classList.toggle("open", s.id === openId);
    li.classList.toggle("bad", !!(s.verdict && s.verdict.good === false));
    const c = s.counts || {};
    const top = el("div", "line1");
    top.appendChild(el("span", "sid", "#" + s.id));
    top.appendChild(el("span", "state", s.state === "live" ? "live" : "ended"));
    top.appendChild(el("span", "client", s.client || "?"));
    if (s.helo) top.appendChild(el("span", "helo", visible(String(s.helo))));
    top.appendChild(el("span", "when", fmtTime(s.started)));
    li.appendChild(top);
    const bottom = el("div", "line2");
    bottom.appendChild(el("span", "counts",
      num(c.commands) + " cmd, " + num(c.messages) + " msg"));
    if (s.tls && (s.tls.client || s.tls.upstream)) bottom.appendChild(el("span", "badge tls", "TLS"));
    if (s.auth) {
      const failed = s.auth.outcome && s.auth.outcome !== "accepted";
      bottom.appendChild(el("span", failed ? "badge auth err" : "badge auth",
        "AUTH " + visible(String(s.auth.user || s.auth.mech || "")) + (failed ? " " + s.auth.outcome : "")));
    }
    if (num(c.faults)) bottom.appendChild(el("span", "badge fault", "!! " + c.faults));
    if (num(c.lint)) bottom.appendChild(el("span", "badge lint", "** " + c.lint));
    if (hasErrors(s)) bottom.appendChild(el("span", "badge err", "errors"));
    if (s.verdict) bottom.appendChild(el("span", "badge verdict " + (s.verdict.good ? "good" : "bad"),
      s.verdict.good ? "good" : "bad"));
    if (s.last_reply) bottom.appendChild(el("span", "last", visible(String(s.last_reply)).slice(0, 80)));
    li.appendChild(bottom);
  }

  function rowFor(s) {
    let r = rows.get(s.id);
    if (!r) {
      const li = el("li", "session");
      li.dataset.id = String(s.id);
      li.tabIndex = 0;
      r = { li: li, ver: -1 };
      rows.set(s.id, r);
    }
    if (r.ver !== s._ver || r.open !== (s.id === openId)) {
      fillRow(r.li, s);
      r.ver = s._ver;
      r.open = s.id === openId;
    }
    return r.li;
  }

  /* The list reconciled with the sessions: rows reused, moved or removed, none rebuilt
   * unless its session changed. */
  function renderList() {
    renderQueued = false;
    const shown = [];
    const f = currentFilter();
    let total = 0;
    for (let i = order.length - 1; i >= 0; i--) {
      const s = sessions.get(order[i]);
      if (!s || !matches(s, f)) continue;
      total++;
      if (shown.length < limit) shown.push(s);
    }
    const keep = new Set();
    let cur = ui.list.firstChild;
    for (const s of shown) {
      const li = rowFor(s);
      keep.add(s.id);
      if (li !== cur) ui.list.insertBefore(li, cur);
      else cur = cur.nextSibling;
    }
    while (cur) {
      const next = cur.nextSibling;
      ui.list.removeChild(cur);
      cur = next;
    }
    for (const id of rows.keys()) if (!keep.has(id)) rows.delete(id);
    let live = 0;
    for (const s of sessions.values()) if (s.state === "live") live++;
    ui.count.textContent = total + " session" + (total === 1 ? "" : "s") +
      (total > shown.length ? " (newest " + shown.length + " shown)" : "") + ", " + live + " live";
    ui.more.hidden = total <= shown.length;
  }

  async function loadSessions() {
    const res = await api("GET", "api/sessions");
    if (res.status !== 200 || !res.body || !Array.isArray(res.body.sessions)) {
      ui.count.textContent = errorText(res, "GET /api/sessions");
      return;
    }
    for (const s of res.body.sessions) setSummary(s);
  }

  /* ---- one session: the diagram ----------------------------------------------------------- */

  let msgBlock = null; /* the open message's content block in the diagram */
  let unanswered = []; /* the open session's command arrows still waiting for their reply */

  function renderHead(s) {
    ui.head.textContent = "";
    const h = el("h2", null, "Session #" + s.id + " ");
    h.appendChild(el("span", "state " + (s.state === "live" ? "live" : "ended"), s.state));
    ui.head.appendChild(h);
    const dl = el("dl", "facts");
    const fact = (name, value, cls) => {
      if (value === undefined || value === null || value === "") return;
      dl.appendChild(el("dt", null, name));
      dl.appendChild(el("dd", cls || null, value));
    };
    fact("client", s.client);
    fact("listener", s.listener);
    fact("upstream", s.upstream || "built-in sink");
    fact("HELO", s.helo && visible(String(s.helo)));
    fact("started", s.started);
    fact("ended", s.ended);
    if (typeof s.duration_s === "number") fact("duration", s.duration_s.toFixed(3) + " s");
    const t = s.tls || {};
    if (t.client) fact("client TLS", [t.client.version, t.client.cipher, t.client.sni ? "SNI " + t.client.sni : "no SNI"].filter(Boolean).join(", "), "tls-fact");
    if (t.upstream) fact("upstream TLS", [t.upstream.version, t.upstream.cipher, t.upstream.verify].filter(Boolean).join(", "), "tls-fact");
    if (s.auth) fact("AUTH", (s.auth.mech || "") + (s.auth.user ? " as " + visible(String(s.auth.user)) : "") +
      (s.auth.outcome ? ": " + s.auth.outcome + (s.auth.code ? " (" + s.auth.code + ")" : "") : ""), "auth-fact");
    const c = s.counts || {};
    fact("counts", num(c.commands) + " commands, " + num(c.replies) + " replies, " + num(c.messages) +
      " messages, " + num(c.faults) + " faults, " + num(c.lint) + " lint, " + num(c.errors) + " errors");
    const k = s.codes || {};
    fact("codes", ["2xx", "3xx", "4xx", "5xx"].map((x) => x + " " + num(k[x])).join(", "));
    const l = s.latency_ms || {};
    if (l.server_wait !== undefined) fact("latency", "server wait " + fmtMs(l.server_wait) + ", max " + fmtMs(l.max) + ", last " + fmtMs(l.last));
    const b = s.bytes || {};
    if (b.up !== undefined) fact("bytes", num(b.up) + " up, " + num(b.down) + " down");
    if (s.verdict) fact("verdict", (s.verdict.good ? "good" : "bad") + (s.verdict.action ? ": " + s.verdict.action : ""), s.verdict.good ? "good" : "bad");
    if (num(s.events_dropped)) fact("events dropped", String(s.events_dropped), "err");
    ui.head.appendChild(dl);

    ui.downloads.textContent = "";
    const caps = Array.isArray(s.captures) ? s.captures : [];
    if (caps.length) ui.downloads.appendChild(el("span", "label", "captures: "));
    for (const f of caps) {
      if (!/^[a-z0-9]+$/.test(f)) continue;
      const base = "api/sessions/" + s.id + "/capture." + f;
      const msgs = num(c.messages);
      if (f === "eml" && msgs > 1) {
        for (let m = 1; m <= msgs; m++) addDownload(base + "?message=" + m, "eml " + m, f);
      } else {
        addDownload(base, f, f);
      }
    }
  }

  function addDownload(url, label, fmt) {
    const a = el("a", "download", label);
    a.href = withToken(url);
    a.dataset.format = fmt;
    a.setAttribute("download", "");
    ui.downloads.appendChild(a);
  }

  /* One row of the diagram: time, the lanes (an arrow or a note), latency. */
  function row(cls, ev) {
    const r = el("div", "row " + cls);
    r.appendChild(el("span", "t", typeof ev.t === "number" ? "+" + ev.t.toFixed(3) : ""));
    const lanes = el("div", "lanes-body");
    r.appendChild(lanes);
    r.appendChild(el("span", "lat", ""));
    if (ev.tls) r.classList.add("in-tls");
    return { r: r, lanes: lanes, lat: r.lastChild };
  }

  function arrow(lanes, span, lines, extraCls) {
    const a = el("div", "arrow " + span + (extraCls ? " " + extraCls : ""));
    const label = el("div", "label");
    if (lines.length > 4) {
      /* a long reply (EHLO's): its first and last lines, the others folded */
      label.appendChild(el("div", "ln", lines[0]));
      const more = el("details", "more-lines");
      more.appendChild(el("summary", null, (lines.length - 2) + " more lines"));
      for (const ln of lines.slice(1, -1)) more.appendChild(el("div", "ln", ln));
      label.appendChild(more);
      label.appendChild(el("div", "ln", lines[lines.length - 1]));
    } else {
      for (const ln of lines) label.appendChild(el("div", "ln", ln));
    }
    a.appendChild(label);
    a.appendChild(el("div", "shaft"));
    lanes.appendChild(a);
    return a;
  }

  function note(lanes, cls, text) {
    const n = el("div", "note note-" + cls, text);
    lanes.appendChild(n);
    return n;
  }

  function codeClass(code) {
    if (code >= 500) return "c5";
    if (code >= 400) return "c4";
    if (code >= 300) return "c3";
    return "c2";
  }

  function closeMessage() {
    msgBlock = null;
  }

  /* The content lines of a message gather into one block, closed by its "message" event. */
  function contentRow(ev) {
    if (!msgBlock) {
      const x = row("content", ev);
      const a = arrow(x.lanes, "c2s", ["message content"], "data");
      const pre = el("pre", "message-lines");
      a.appendChild(pre);
      msgBlock = { row: x.r, label: a.firstChild, pre: pre, headers: true, n: 0 };
      ui.diagram.appendChild(x.r);
    }
    const text = visible(lineOf(ev));
    if (msgBlock.headers && text === "") msgBlock.headers = false;
    msgBlock.pre.appendChild(el("span", msgBlock.headers ? "hdr" : "body", text + "\n"));
    msgBlock.n++;
  }

  function addEvent(ev) {
    const kind = ev.kind;
    if (kind === "content") {
      contentRow(ev);
      return;
    }
    if (kind === "message" && msgBlock) {
      msgBlock.row.classList.add("message");
      msgBlock.label.textContent = "";
      msgBlock.label.appendChild(el("div", "ln", textOf(ev) || "message"));
      closeMessage();
      return;
    }
    closeMessage();
    let x;
    switch (kind) {
      case "command": {
        x = row("cmd", ev);
        const a = arrow(x.lanes, ev.to_smtptap ? "c2t" : "c2s", [visible(lineOf(ev))]);
        unanswered.push(a);
        if (unanswered.length > 1000) unanswered.shift();
        break;
      }
      case "reply":
      case "edited_reply": {
        const code = ev.reply ? ev.reply.code : 0;
        const edited = kind === "edited_reply";
        x = row("reply " + codeClass(code) + (ev.local ? " local" : "") + (edited ? " edited" : "") +
          (code >= 400 ? " err" : ""), ev);
        const span = ev.local || edited ? "t2c" : "s2c";
        if (!edited) {
          /* replies answer commands in order: one smtptap wrote itself means that command
           * ended at smtptap (a fault's reply, its own STARTTLS, a hello it answered) */
          const cmd = unanswered.shift();
          if (cmd && ev.local && cmd.classList.contains("c2s")) {
            cmd.classList.replace("c2s", "c2t");
            cmd.closest(".row").classList.add("to-smtptap");
          }
        }
        const a = arrow(x.lanes, span, linesOf(ev));
        if (ev.local) a.appendChild(el("div", "tag", "[smtptap]"));
        if (edited && ev.reply && ev.reply.edit) {
          const e = ev.reply.edit;
          const parts = [];
          if (Array.isArray(e.added) && e.added.length) parts.push("added " + e.added.join(", "));
          if (Array.isArray(e.removed) && e.removed.length) parts.push("removed " + e.removed.join(", "));
          a.appendChild(el("div", "tag", "edited by smtptap" + (parts.length ? ": " + parts.join("; ") : "")));
        }
        if (ev.reply && typeof ev.reply.latency_ms === "number") x.lat.textContent = fmtMs(ev.reply.latency_ms);
        break;
      }
      case "auth":
        x = row("auth", ev);
        note(x.lanes, "auth", "## " + visible(textOf(ev)));
        break;
      case "fault":
        x = row("fault", ev);
        note(x.lanes, "fault", "!! " + visible(textOf(ev)));
        break;
      case "lint":
        x = row("lint", ev);
        note(x.lanes, "lint", "** " + visible(textOf(ev) || (ev.lint && ev.lint.id) || "lint"));
        break;
      case "error":
        x = row("error err", ev);
        note(x.lanes, "error", (ev.dir === "s2c" ? "<** " : ev.dir === "c2s" ? "**> " : "") + visible(textOf(ev)));
        break;
      case "info":
        if (ev.handshake) {
          x = row("tls", ev);
          note(x.lanes, "tls", "== " + visible(textOf(ev)));
        } else {
          x = row("info", ev);
          note(x.lanes, "info", "== " + visible(textOf(ev)));
        }
        break;
      case "client_tls":
        x = row("tls", ev);
        note(x.lanes, "tls", "== client TLS handshake");
        break;
      case "message":
        x = row("message", ev);
        note(x.lanes, "info", "== " + visible(textOf(ev)));
        break;
      case "delivery": {
        const d = ev.delivery || {};
        x = row("delivery", ev);
        note(x.lanes, "info", "== message " + (d.message || "?") + " delivered: " + visible(lineOf({ line: d.reply || "" })));
        break;
      }
      case "verdict": {
        const v = ev.verdict || {};
        x = row("verdict " + (v.good ? "good" : "bad"), ev);
        note(x.lanes, "verdict", "== " + (textOf(ev) ? visible(textOf(ev)) : "verdict: " + (v.good ? "good" : "bad")));
        break;
      }
      case "raw":
        x = row("raw", ev);
        note(x.lanes, "raw", visible(lineOf(ev)));
        break;
      case "start":
      case "upstream":
      case "end":
        return; /* their facts are in the head; their text comes as "info" */
      default:
        x = row("other", ev);
        note(x.lanes, "info", kind + " " + visible(textOf(ev) || lineOf(ev)));
    }
    x.r.dataset.kind = kind;
    ui.diagram.appendChild(x.r);
  }

  function eventKey(ev) {
    return [ev.t, ev.kind, ev.dir, ev.line || ev.line_b64 || "", ev.text || ""].join("\u0001");
  }

  async function openSession(id) {
    if (!(id >= 1)) return;
    const prev = openId;
    openId = id;
    openLoading = true;
    pending = [];
    msgBlock = null;
    unanswered = [];
    ui.diagram.textContent = "";
    ui.head.textContent = "";
    ui.downloads.textContent = "";
    ui.empty.hidden = true;
    ui.detail.hidden = false;
    ui.detail.dataset.id = String(id);
    delete ui.detail.dataset.error;
    ui.detail.classList.add("loading");
    if (prev !== id) queueRender();
    if (location.hash !== "#session=" + id) history.replaceState(null, "", "#session=" + id);
    const known = sessions.get(id);
    if (!known || known.state === "live") await openStream(id);
    else closeOpenStream();
    if (openId !== id) return; /* another one was opened meanwhile */
    const res = await api("GET", "api/sessions/" + id);
    if (openId !== id) return;
    openLoading = false;
    ui.detail.classList.remove("loading");
    if (res.status !== 200 || !res.body || !res.body.session) {
      let why = errorText(res, "GET /api/sessions/" + id);
      if (res.status === 404) why += " (smtptap keeps the most recent ended sessions only: --control-recent)";
      ui.head.appendChild(el("h2", "err", "Session #" + id + ": " + why));
      ui.detail.dataset.error = String(res.status);
      pending = [];
      closeOpenStream();
      return;
    }
    const sum = res.body.session;
    if (!known || known.state === "live" || sum.state === "ended") setSummary(sum);
    renderHead(sessions.get(id) || sum);
    const seen = new Map();
    const evs = Array.isArray(res.body.events) ? res.body.events : [];
    const frag = document.createDocumentFragment();
    const real = ui.diagram;
    ui.diagram = frag; /* built off the page, attached once */
    for (const ev of evs) {
      const k = eventKey(ev);
      seen.set(k, (seen.get(k) || 0) + 1);
      addEvent(ev);
    }
    ui.diagram = real;
    real.appendChild(frag);
    for (const ev of pending) {
      const k = eventKey(ev);
      const n = seen.get(k) || 0;
      if (n > 0) seen.set(k, n - 1);
      else addEvent(ev);
    }
    pending = [];
    ui.detail.dataset.loaded = String(id);
    if (sum.state === "ended") closeOpenStream(); /* it has all there will be */
  }

  /* The open session's events as they come, on a stream of its own with the message lines
   * (content=1, which the stream of every session leaves out). Resolves once the stream is
   * open (or could not be), so that nothing falls between it and GET /api/sessions/N. */
  let openSource = null;

  function closeOpenStream() {
    if (openSource) openSource.close();
    openSource = null;
  }

  function openStream(id) {
    closeOpenStream();
    return new Promise((resolve) => {
      const src = new EventSource(withToken("api/events?session=" + id + "&content=1"));
      openSource = src;
      const timer = setTimeout(resolve, 2000);
      src.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      src.onerror = () => {
        if (src.readyState === EventSource.CLOSED) {
          if (openSource === src) openSource = null; /* refused (503: too many streams) */
          clearTimeout(timer);
          resolve();
        }
      };
      src.onmessage = (m) => {
        if (openSource !== src) return;
        let ev;
        try {
          ev = JSON.parse(m.data);
        } catch (e) {
          return;
        }
        if (!ev || ev.session !== openId) return;
        showOpenEvent(ev);
        if (ev.kind === "end") closeOpenStream();
      };
    });
  }

  /* An event of the open session: kept for after its load, or drawn now. */
  function showOpenEvent(ev) {
    if (openLoading) {
      pending.push(ev);
      return;
    }
    const pane = ui.detail.parentNode;
    const following = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
    addEvent(ev);
    if (following) pane.scrollTop = pane.scrollHeight;
  }

  /* ---- the event stream ---------------------------------------------------------------- */

  let source = null;
  let everOpen = false;
  let serverStart = null; /* when the smtptap the page talks to started (ms since 1970) */

  /* When it started, from GET /api/health's uptime; null when unknown. */
  async function whenStarted() {
    try {
      const res = await api("GET", "api/health");
      if (res.status === 200 && res.body && typeof res.body.uptime_s === "number")
        return Date.now() - res.body.uptime_s * 1000;
    } catch (e) {
      /* unknown */
    }
    return null;
  }

  /* After a reconnect: a restarted smtptap numbers its sessions from 1 again, so what the
   * page knew is dropped first; then the list is fetched again. */
  async function resync() {
    const started = await whenStarted();
    if (started !== null && serverStart !== null && Math.abs(started - serverStart) > 1000) {
      sessions.clear();
      order = [];
      for (const r of rows.values()) r.li.remove();
      rows.clear();
      if (openId !== null) {
        closeOpenStream();
        openId = null;
        ui.detail.hidden = true;
        ui.empty.hidden = false;
        ui.empty.textContent = "smtptap was restarted: click a session to see its dialog.";
      }
      loadFaults();
    }
    if (started !== null) serverStart = started;
    await loadSessions();
    queueRender();
  }

  function connect() {
    /* the list's stream: summaries only (when a session starts, about once a second while
     * it changes, when it ends); the open session has a stream of its own */
    source = new EventSource(withToken("api/events?view=sessions"));
    source.onopen = () => {
      ui.conn.textContent = "live";
      ui.conn.className = "conn up";
      if (everOpen) resync(); /* after a reconnect: what happened meanwhile */
      everOpen = true;
    };
    source.onerror = () => {
      ui.conn.textContent = "reconnecting";
      ui.conn.className = "conn down";
    };
    source.addEventListener("session", (m) => {
      try {
        setSummary(JSON.parse(m.data));
      } catch (e) {
        /* not JSON: ignored */
      }
    });
  }

  /* ---- faults -------------------------------------------------------------------------- */

  let faultsQueued = null;

  function queueFaults() {
    if (faultsQueued) return;
    faultsQueued = setTimeout(() => {
      faultsQueued = null;
      loadFaults();
    }, 500);
  }

  async function loadFaults() {
    const res = await api("GET", "api/faults");
    if (res.status !== 200 || !res.body || !Array.isArray(res.body.rules)) {
      ui.faultError.textContent = errorText(res, "GET /api/faults");
      return;
    }
    ui.faults.textContent = "";
    for (const r of res.body.rules) {
      const li = el("li", "rule origin-" + String(r.origin).replace(/[^a-z]/g, ""));
      li.dataset.name = String(r.name);
      li.dataset.origin = String(r.origin);
      li.appendChild(el("span", "name", r.name));
      li.appendChild(el("span", "origin", r.origin));
      li.appendChild(el("code", "text", r.rule));
      li.appendChild(el("span", "fired", "fired " + num(r.fired)));
      const b = el("button", "remove", "remove");
      b.type = "button";
      if (r.origin === "api") {
        b.title = "DELETE /api/faults/" + r.name;
        b.addEventListener("click", () => removeFault(String(r.name)));
      } else {
        b.disabled = true; /* the API removes its own rules only */
        b.title = "a rule of the " + (r.origin === "flag" ? "command line" : "configuration file") +
          ": edit it, then SIGHUP";
      }
      li.appendChild(b);
      ui.faults.appendChild(li);
    }
    if (!res.body.rules.length) ui.faults.appendChild(el("li", "none", "no fault rules"));
  }

  async function addFault() {
    const text = ui.faultInput.value.trim();
    ui.faultError.textContent = "";
    if (!text) return;
    ui.faultAdd.disabled = true;
    try {
      const res = await api("POST", "api/faults", { rule: text });
      if (res.status === 201 || res.status === 200) {
        ui.faultInput.value = "";
      } else {
        ui.faultError.textContent = errorText(res, "POST /api/faults");
      }
    } catch (e) {
      ui.faultError.textContent = String(e);
    } finally {
      ui.faultAdd.disabled = false;
    }
    await loadFaults();
  }

  async function removeFault(name) {
    ui.faultError.textContent = "";
    const res = await api("DELETE", "api/faults/" + encodeURIComponent(name));
    if (res.status !== 200) ui.faultError.textContent = errorText(res, "DELETE /api/faults/" + name);
    await loadFaults();
  }

  async function resetFaults() {
    ui.faultError.textContent = "";
    const res = await api("POST", "api/faults/reset");
    if (res.status !== 200) ui.faultError.textContent = errorText(res, "POST /api/faults/reset");
    await loadFaults();
  }

  /* ---- stats --------------------------------------------------------------------------- */

  let statsQueued = null;

  function queueStats() {
    if (statsQueued) return;
    statsQueued = setTimeout(() => {
      statsQueued = null;
      loadStats();
    }, 300);
  }

  async function loadStats() {
    if (document.hidden) return;
    let res;
    try {
      res = await api("GET", "api/stats");
    } catch (e) {
      return;
    }
    const s = res.body;
    if (res.status !== 200 || !s || !s.sessions) return;
    const b = s.bytes || {};
    ui.stats.textContent = num(s.sessions.total) + " sessions (" + num(s.sessions.live) + " live), " +
      num(s.commands) + " commands, " + num(s.messages) + " messages, " + num(b.up) + " B up, " +
      num(b.down) + " B down, " + num(s.faults_fired) + " faults fired" +
      (s.sse && num(s.sse.dropped) ? ", " + s.sse.dropped + " slow viewers dropped" : "");
  }

  /* ---- wiring -------------------------------------------------------------------------- */

  ui.list.addEventListener("click", (e) => {
    const li = e.target.closest(".session");
    if (li) openSession(Number(li.dataset.id));
  });
  ui.list.addEventListener("keydown", (e) => {
    const li = e.target.closest(".session");
    if (li && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      openSession(Number(li.dataset.id));
    }
  });
  ui.more.addEventListener("click", () => {
    limit += PAGE;
    queueRender();
  });
  const refilter = () => {
    limit = PAGE;
    queueRender();
  };
  ui.fClient.addEventListener("input", refilter);
  ui.fVerdict.addEventListener("change", refilter);
  ui.fErrors.addEventListener("change", refilter);
  ui.faultForm.addEventListener("submit", (e) => {
    e.preventDefault();
    addFault();
  });
  ui.faultReset.addEventListener("click", resetFaults);
  $("filters").addEventListener("submit", (e) => e.preventDefault());

  connect();
  whenStarted().then((t) => {
    serverStart = t;
  });
  loadSessions().then(() => {
    const m = /^#session=(\d+)$/.exec(location.hash);
    if (m) openSession(Number(m[1]));
  });
  loadFaults();
  loadStats();
  setInterval(loadStats, 2000);
})();
