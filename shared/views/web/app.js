/* authwatch dashboard: vanilla JavaScript, no build step, no library. Every value from the API is put in the page as
   text (textContent / SVG text nodes), never as HTML: tenant data is not trusted markup. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("authwatch-config").textContent);
  var apiBase = config.apiBase || "/api/";
  var key = new URLSearchParams(window.location.search).get("code");  // Azure Functions function key, if any
  var token = config.token || null;  // `authwatch serve`: this run's token, required on actions (POST)
  var CONTROLS = config.controls || [];
  var CONTROL_BY_ID = {};
  CONTROLS.forEach(function (c) { CONTROL_BY_ID[c.id] = c; });

  var STATUS_WORD = { pass: "PASS", fail: "FAIL", pending: "PENDING", unknown: "UNKNOWN", not_applicable: "N/A",
                      none: "—" };
  var STATUS_HELP = { pass: "the control holds", fail: "legacy authentication is open or in use",
                      pending: "inside the enforcement window", unknown: "could not be evaluated",
                      not_applicable: "does not apply (e.g. licence)", none: "never evaluated" };
  var CELL_RANK = { fail: 0, pending: 1, unknown: 2, none: 3, not_applicable: 4, pass: 5 };
  var TENANT_RANK = { unreachable: 0, failing: 1, pending: 2, unknown: 3, "never evaluated": 4, healthy: 5,
                      disabled: 6 };
  var DRIFT_TYPES = { "drift.weakened": "weakened", "drift.strengthened": "strengthened",
                      "basic_auth.reenabled": "weakened", "config.changed": "neutral" };

  var app = document.getElementById("app");
  var timers = [];
  var fleetState = { rows: null, sort: { key: "default", dir: 1 },
                     filter: { text: "", tenant: "all", control: "", cell: "any" } };

  if (config.source) { document.getElementById("source").textContent = config.source; }

  // --- small helpers ----------------------------------------------------------------------------------------------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    var props = attrs || {};
    Object.keys(props).forEach(function (name) {
      var value = props[name];
      if (value === null || value === undefined || value === false) { return; }
      if (name === "text") { node.textContent = String(value); }
      else if (name === "class") { node.className = value; }
      else if (name === "on") { Object.keys(value).forEach(function (ev) { node.addEventListener(ev, value[ev]); }); }
      else { node.setAttribute(name, value === true ? "" : String(value)); }
    });
    for (var i = 2; i < arguments.length; i++) { append(node, arguments[i]); }
    return node;
  }

  function append(node) {
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) { continue; }
      if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); continue; }
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function stopTimers() { timers.forEach(function (t) { clearInterval(t); }); timers = []; }

  function fmtTime(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return String(iso); }
    return d.toLocaleString("en-GB", { timeZone: "UTC", day: "2-digit", month: "short", year: "numeric",
                                       hour: "2-digit", minute: "2-digit" }) + " UTC";
  }

  function timeEl(iso) { return el("time", { datetime: iso || "", title: iso || "", text: fmtTime(iso) }); }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + "h " : "") + (h || m ? pad(m) + "m " : "") + pad(s) + "s";
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function humanise(name) {
    return String(name).replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/_/g, " ").replace(/^./, function (c) {
      return c.toUpperCase();
    });
  }

  function controlTitle(id) { return (CONTROL_BY_ID[id] && CONTROL_BY_ID[id].title) || id || "(whole tenant)"; }

  function tenantLink(id, extra) { return "#/tenants/" + encodeURIComponent(id) + (extra ? "/" + extra : ""); }

  function statusCellClass(status) { return "status-" + (STATUS_WORD[status] ? status : "none"); }

  function tenantBadge(status) {
    return el("span", { "class": "badge tstatus-" + String(status || "unknown").replace(/ /g, "-"),
                        "data-tenant-status": status, text: status });
  }

  function statusBadge(status) {
    return el("span", { "class": "badge " + statusCellClass(status), "data-status": status,
                        text: STATUS_WORD[status] || status });
  }

  // --- API ----------------------------------------------------------------------------------------------------------
  function ApiError(message, status, next) { this.message = message; this.status = status; this.next = next; }

  // api(path) reads; api(path, {method: "POST", body: {...}}) takes an action: the body goes as JSON, and the token
  // (or the function key) in a header, which is what the server requires of a state-changing request.
  function api(path, options) {
    var opts = options || {};
    var headers = { "Accept": "application/json" };
    if (key) { headers["x-functions-key"] = key; }
    if (token) { headers["X-Authwatch-Token"] = token; }
    var init = { method: opts.method || "GET", headers: headers, credentials: "same-origin" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    return fetch(apiBase + path, init).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (response.ok) { return body; }
        var message = (body && body.error) || ("HTTP " + response.status + " from " + apiBase + path);
        throw new ApiError(message, response.status, nextStep(response.status, message));
      });
    }, function () {
      throw new ApiError("Cannot reach the authwatch API at " + apiBase + ".", 0,
                         "Check that the function app (or `authwatch serve`) is running, then reload this page.");
    });
  }

  function nextStep(status, message) {
    if (status === 401 || status === 403) {
      return "Open the dashboard with the function key: …/api/dashboard?code=<key> (Azure portal › Function App › " +
             "App keys, or `az functionapp keys list`).";
    }
    if (status === 404) { return "The tenant may not be registered: go back to the fleet view."; }
    if (/not configured/.test(message)) {
      return "Set AUTHWATCH_STORAGE_CONNECTION_STRING in the app settings (or run `authwatch serve --demo`).";
    }
    return "Reload the page; if it persists, the function app's logs (Application Insights) say why.";
  }

  function showError(error, where) {
    clear(app);
    append(app, el("div", { "class": "error", role: "alert" },
                   el("b", { text: (where ? where + ": " : "") + (error.message || String(error)) }),
                   error.next ? el("span", { "class": "next", text: error.next }) : null));
    if (where !== "Fleet") { append(app, el("p", {}, el("a", { href: "#/", text: "← Back to the fleet" }))); }
  }

  // Run `work` over `items` with at most `limit` requests in flight.
  function pool(items, limit, work) {
    var results = new Array(items.length), next = 0;
    function worker() {
      if (next >= items.length) { return Promise.resolve(); }
      var index = next++;
      return work(items[index]).then(function (value) { results[index] = value; }, function (error) {
        results[index] = { error: error };
      }).then(worker);
    }
    var workers = [];
    for (var i = 0; i < Math.min(limit, items.length); i++) { workers.push(worker()); }
    return Promise.all(workers).then(function () { return results; });
  }

  // --- fleet view ---------------------------------------------------------------------------------------------------
  function loadFleet() {
    return api("tenants").then(function (body) {
      var tenants = (body && body.tenants) || [];
      return pool(tenants, 6, function (t) { return api("tenants/" + encodeURIComponent(t.tenantId) + "?history=1"); })
        .then(function (details) {
          return tenants.map(function (t, i) { return fleetRow(t, details[i]); });
        });
    });
  }

  function fleetRow(summary, detail) {
    var byControl = {};
    var failed = !detail || detail.error;
    var controls = failed ? [] : (detail.controls || []);
    controls.forEach(function (c) { byControl[c.control] = { status: c.status, summary: c.summary }; });
    var fallback = summary.status === "unreachable" ? "unknown" : "none";
    CONTROLS.forEach(function (c) {
      if (!byControl[c.id]) {
        byControl[c.id] = { status: fallback, summary: summary.status === "unreachable"
          ? "authwatch cannot read this tenant: " + (summary.lastError || "see the tenant view")
          : (failed ? "could not load this tenant's results" : "never evaluated") };
      }
    });
    return { id: summary.tenantId, name: summary.displayName || summary.tenantId, status: summary.status,
             openAlerts: failed ? 0 : (detail.openAlerts || []).length, byControl: byControl,
             lastCollectedAt: summary.lastCollectedAt, lastError: summary.lastError,
             window: failed ? null : detail.enforcementWindow };
  }

  function compareRows(a, b) {
    var s = fleetState.sort, k = s.key, d = s.dir;
    function byDefault() {
      return (b.openAlerts - a.openAlerts) || ((TENANT_RANK[a.status] || 9) - (TENANT_RANK[b.status] || 9)) ||
             a.name.localeCompare(b.name);
    }
    var r = 0;
    if (k === "name") { r = a.name.localeCompare(b.name); }
    else if (k === "status") { r = (TENANT_RANK[a.status] || 9) - (TENANT_RANK[b.status] || 9); }
    else if (k === "alerts") { r = b.openAlerts - a.openAlerts; }
    else if (CONTROL_BY_ID[k]) { r = CELL_RANK[a.byControl[k].status] - CELL_RANK[b.byControl[k].status]; }
    return r * d || byDefault();
  }

  function visible(row) {
    var f = fleetState.filter;
    var text = f.text.trim().toLowerCase();
    if (text && row.name.toLowerCase().indexOf(text) < 0 && row.id.indexOf(text) < 0) { return false; }
    if (f.tenant === "alerts" && !row.openAlerts) { return false; }
    if (f.tenant === "attention" && row.status === "healthy" && !row.openAlerts) { return false; }
    if (["alerts", "attention", "all"].indexOf(f.tenant) < 0 && row.status !== f.tenant) { return false; }
    if (f.cell !== "any") {
      var ids = f.control ? [f.control] : CONTROLS.map(function (c) { return c.id; });
      if (!ids.some(function (id) { return row.byControl[id].status === f.cell; })) { return false; }
    }
    return true;
  }

  function showFleet() {
    stopTimers();
    document.title = "authwatch — fleet";
    if (!fleetState.rows) { clear(app); append(app, el("p", { "class": "loading", text: "Loading the fleet…" })); }
    loadFleet().then(function (rows) {
      fleetState.rows = rows;
      renderFleet();
    }, function (error) { showError(error, "Fleet"); });
  }

  function renderFleet() {
    var rows = fleetState.rows;
    clear(app);
    var count = function (pred) { return rows.filter(pred).length; };
    var newest = rows.map(function (r) { return r.lastCollectedAt || ""; }).sort().pop();
    append(app, el("h1", { text: "Fleet" }),
           el("p", { "class": "sub" }, rows.length + " tenants · data as of ", timeEl(newest),
              " · tenants with open alerts first"));
    append(app, el("div", { "class": "totals" },
                   total(count(function (r) { return r.openAlerts > 0; }), "with open alerts"),
                   total(count(function (r) { return r.status === "failing"; }), "failing"),
                   total(count(function (r) { return r.status === "pending"; }), "in an enforcement window"),
                   total(count(function (r) { return r.status === "unreachable"; }), "unreachable"),
                   total(count(function (r) { return r.status === "healthy"; }), "healthy")));
    if (!rows.length) {
      append(app, el("p", { "class": "empty", text: "No tenants are registered yet. Onboard one with POST " +
        apiBase + "tenants (see the README), or try `authwatch serve --demo` for a scripted fleet." }));
      return;
    }
    append(app, legend(), toolbar());
    var table = el("table", { "class": "matrix", id: "matrix" });
    append(table, matrixHead());
    append(table, el("tbody", { id: "matrix-body" }));
    append(app, el("div", { "class": "matrix-wrap" }, table));
    renderMatrixBody();
  }

  function total(n, label) { return el("div", { "class": "total" }, el("b", { text: n }), el("span", { text: label })); }

  function legend() {
    var box = el("div", { "class": "legend", id: "legend" }, el("b", { text: "Legend:" }));
    ["pass", "fail", "pending", "unknown", "not_applicable"].forEach(function (s) {
      append(box, el("span", {}, el("span", { "class": "swatch " + statusCellClass(s), "data-legend": s,
                                              text: STATUS_WORD[s] }), " " + STATUS_HELP[s]));
    });
    return box;
  }

  function toolbar() {
    var f = fleetState.filter;
    var search = el("input", { type: "search", id: "filter-text", placeholder: "Filter by tenant name or id",
                               "aria-label": "Filter by tenant name or id", value: f.text });
    search.addEventListener("input", function () { f.text = search.value; renderMatrixBody(); });
    var tenantSel = select("filter-tenant", "Tenants", [["all", "all tenants"], ["attention", "needing attention"],
      ["alerts", "with open alerts"], ["failing", "failing"], ["pending", "pending (in a window)"],
      ["unreachable", "unreachable"], ["healthy", "healthy"], ["disabled", "disabled"]], f.tenant, function (v) {
        f.tenant = v; renderMatrixBody();
      });
    var controlSel = select("filter-control", "Control", [["", "any control"]].concat(CONTROLS.map(function (c) {
      return [c.id, c.label];
    })), f.control, function (v) { f.control = v; renderMatrixBody(); });
    var cellSel = select("filter-cell", "Status", [["any", "any status"], ["fail", "FAIL"], ["pending", "PENDING"],
      ["unknown", "UNKNOWN"], ["not_applicable", "N/A"], ["pass", "PASS"]], f.cell, function (v) {
        f.cell = v; renderMatrixBody();
      });
    return el("div", { "class": "toolbar" }, search, tenantSel, controlSel, "is", cellSel,
              el("span", { "class": "count", id: "matrix-count" }));
  }

  function select(id, label, options, value, onChange) {
    var node = el("select", { id: id, "aria-label": label });
    options.forEach(function (o) { append(node, el("option", { value: o[0], text: o[1], selected: o[0] === value })); });
    node.addEventListener("change", function () { onChange(node.value); });
    return node;
  }

  function matrixHead() {
    var s = fleetState.sort;
    function th(keyName, label, title, cls) {
      var arrow = s.key === keyName ? (s.dir > 0 ? "▲" : "▼") : "";
      return el("th", { "class": cls || null, "data-sort": keyName, title: title || null, scope: "col",
                        "aria-sort": s.key === keyName ? (s.dir > 0 ? "ascending" : "descending") : null,
                        on: { click: function () { sortBy(keyName); } } },
                label, el("span", { "class": "arrow", text: arrow }));
    }
    var row = el("tr", {}, th("name", "Tenant"), th("status", "Status"), th("alerts", "Open alerts"));
    CONTROLS.forEach(function (c) { append(row, th(c.id, c.label, c.title + " (" + c.id + ")", "control")); });
    return el("thead", {}, row);
  }

  function sortBy(keyName) {
    var s = fleetState.sort;
    s.dir = s.key === keyName ? -s.dir : 1;
    s.key = keyName;
    var table = document.getElementById("matrix");
    table.replaceChild(matrixHead(), table.tHead);
    renderMatrixBody();
  }

  function renderMatrixBody() {
    var body = document.getElementById("matrix-body");
    if (!body) { return; }
    clear(body);
    var rows = fleetState.rows.filter(visible).sort(compareRows);
    rows.forEach(function (r) {
      var tr = el("tr", { "data-tenant-id": r.id, "data-tenant-name": r.name, "data-open-alerts": r.openAlerts },
        el("td", { "class": "tenant" }, el("a", { href: tenantLink(r.id), text: r.name }),
           el("span", { "class": "tid mono", text: r.id })),
        el("td", { "class": "meta" }, tenantBadge(r.status)),
        el("td", { "class": "meta" }, r.openAlerts
          ? el("span", { "class": "alerts-count", text: r.openAlerts })
          : el("span", { "class": "alerts-none", text: "0" })));
      CONTROLS.forEach(function (c) {
        var cell = r.byControl[c.id];
        append(tr, el("td", { "class": "cell " + statusCellClass(cell.status), "data-control": c.id,
                              "data-status": cell.status, title: c.title + ": " + cell.summary,
                              on: { click: function () { window.location.hash = tenantLink(r.id, c.id); } } },
                      STATUS_WORD[cell.status] || cell.status));
      });
      append(body, tr);
    });
    var counter = document.getElementById("matrix-count");
    if (counter) { counter.textContent = rows.length + " of " + fleetState.rows.length + " tenants"; }
    if (!rows.length) {
      append(body, el("tr", {}, el("td", { colspan: 3 + CONTROLS.length, "class": "empty",
                                            text: "No tenant matches these filters." })));
    }
  }

  // --- tenant view --------------------------------------------------------------------------------------------------
  function showTenant(id, focus) {
    stopTimers();
    clear(app);
    append(app, el("p", { "class": "loading", text: "Loading the tenant…" }));
    api("tenants/" + encodeURIComponent(id) + "?history=200").then(function (detail) {
      renderTenant(detail, performance.now());
      if (focus) {
        var target = document.getElementById("control-" + focus);
        if (target) { target.scrollIntoView({ block: "start" }); }
      } else { window.scrollTo(0, 0); }
    }, function (error) { showError(error, "Tenant " + id); });
  }

  function renderTenant(t, loadedAt) {
    clear(app);
    document.title = "authwatch — " + (t.displayName || t.tenantId);
    append(app, el("div", { "class": "crumbs" }, el("a", { href: "#/", text: "← Fleet" })));
    append(app, el("h1", { id: "tenant-name" }, (t.displayName || t.tenantId) + " ", tenantBadge(t.status)));
    append(app, el("div", { "class": "facts" },
      el("span", {}, "Tenant ", el("b", { "class": "mono", text: t.tenantId })),
      el("span", {}, "Last evaluated ", el("b", {}, timeEl(t.lastCollectedAt))),
      el("span", {}, "Baseline ", el("b", { text: t.hasBaseline ? "captured" : "none yet" })),
      t.consecutiveFailures ? el("span", {}, "Failed runs in a row ", el("b", { text: t.consecutiveFailures })) : null,
      (t.tags || []).length ? el("span", {}, "Tags ", el("b", { text: t.tags.join(", ") })) : null));
    if (t.lastError) {
      append(app, el("div", { "class": "error", role: "alert" }, el("b", { text: t.lastError })));
    }
    var signins = (t.controls || []).filter(function (c) { return c.control === "entra_legacy_signins_blocked"; })[0];
    append(app, driftSection(t.history || []));
    append(app, el("div", { "class": "grid" }, windowCard(t.enforcementWindow, signins, loadedAt),
                   alertsCard(t.openAlerts || [])));
    append(app, el("h2", { text: "Controls" }));
    var byId = {};
    (t.controls || []).forEach(function (c) { byId[c.control] = c; });
    var ordered = CONTROLS.map(function (c) { return byId[c.id]; }).filter(Boolean);
    (t.controls || []).forEach(function (c) { if (!CONTROL_BY_ID[c.control]) { ordered.push(c); } });
    if (!ordered.length) {
      append(app, el("p", { "class": "empty", text: t.status === "unreachable"
        ? "No results: authwatch has never been able to read this tenant (see the error above)."
        : "No results stored yet: the tenant has not been evaluated." }));
    }
    ordered.forEach(function (c) { append(app, controlCard(c)); });
    append(app, historySection(t.history || []));
    if ((t.failedDeliveries || []).length) { append(app, failedDeliveriesSection(t.failedDeliveries)); }
  }

  // Alerts that could not be delivered after every retry: shown so nobody assumes they arrived.
  function failedDeliveriesSection(failed) {
    var section = el("section", { id: "failed-deliveries" },
      el("h2", { text: "Failed deliveries (" + failed.length + ")" }));
    var list = el("ul", { "class": "events" });
    failed.forEach(function (f) {
      append(list, el("li", { text: (f.at || "") + " · " + (f.type || "alert") + " → " + (f.channel || "?") +
        " failed after " + (f.tries || f.attempts || "?") + " tries: " + (f.error || "unknown error") }));
    });
    append(section, list);
    return section;
  }

  // The enforcement window: countdown and a timeline of legacy sign-ins against it.
  function windowCard(w, signins, loadedAt) {
    if (!w) {
      return el("section", { "class": "card", id: "window" }, el("h3", { text: "Enforcement window" }),
        el("p", { "class": "empty", text: "No enforcement window is tracked: legacy authentication is not blocked " +
          "in configuration, or the block is older than what authwatch has observed." }));
    }
    var closes = Date.parse(w.windowClosesAt);
    var serverNow = closes - w.secondsLeft * 1000;  // the API's clock at the time of the request
    var state = w.open ? "open" : (w.gapReported ? "gap" : "closed");
    var card = el("section", { "class": "card window" + (state === "open" ? "" : " " + state), id: "window",
                               "data-window-open": w.open ? "true" : "false" });
    append(card, el("h3", { text: "Enforcement window (" + w.windowHours + " hours)" }));
    if (w.open) {
      var counter = el("div", { "class": "countdown", id: "countdown", "data-seconds-left": w.secondsLeft,
                                text: duration(w.secondsLeft) + " left" });
      var tick = function () {
        var left = w.secondsLeft - (performance.now() - loadedAt) / 1000;
        counter.textContent = left > 0 ? duration(left) + " left"
          : "closed — the next evaluation confirms enforcement or reports a gap";
      };
      timers.push(setInterval(tick, 1000));
      append(card, counter, el("p", {}, "A new legacy-auth block can take up to " + w.windowHours +
        " hours to bite. Successful legacy sign-ins are expected until ", timeEl(w.windowClosesAt),
        "; after that each one is an enforcement gap."));
    } else {
      append(card, el("div", { "class": "countdown", id: "countdown", "data-seconds-left": 0,
                               text: w.gapReported ? "closed — enforcement gap" : "closed — enforcement confirmed" }));
    }
    append(card, el("p", { "class": "when" }, "Started ", timeEl(w.windowStartedAt), " · closes ",
                    timeEl(w.windowClosesAt)));
    append(card, timeline(w, signins, serverNow));
    return card;
  }

  function signinGroups(control) {
    var ev = (control && control.evidence) || {};
    var groups = [];
    [["successesInWindowDetail", "inside"], ["gaps", "gap"], ["signIns", "used"]].forEach(function (pair) {
      (ev[pair[0]] || []).forEach(function (g) { if (g && (g.firstAt || g.lastAt)) { groups.push(g); } });
    });
    return groups;
  }

  function timeline(w, signins, now) {
    var NS = "http://www.w3.org/2000/svg";
    function svg(tag, attrs, text) {
      var node = document.createElementNS(NS, tag);
      Object.keys(attrs || {}).forEach(function (a) { node.setAttribute(a, attrs[a]); });
      if (text !== undefined) { node.textContent = text; }
      return node;
    }
    var start = Date.parse(w.windowStartedAt), end = Date.parse(w.windowClosesAt);
    var groups = signinGroups(signins).slice(0, 8);
    var times = [start, end, now];
    groups.forEach(function (g) { times.push(Date.parse(g.firstAt || g.lastAt), Date.parse(g.lastAt || g.firstAt)); });
    var lo = Math.min.apply(null, times), hi = Math.max.apply(null, times);
    var padMs = (hi - lo) * 0.05 || 3600000;
    lo -= padMs; hi += padMs;
    var W = 720, left = 10, right = 10, top = 26, lane = 24;
    var H = top + 26 + Math.max(groups.length, 1) * lane + 26;
    var x = function (t) { return left + (t - lo) / (hi - lo) * (W - left - right); };
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", id: "timeline",
                            "aria-label": "Legacy sign-ins against the enforcement window" });
    root.appendChild(svg("rect", { x: x(start), y: top, width: Math.max(1, x(end) - x(start)), height: H - top - 22,
                                   fill: "#fff1c2", stroke: "#e3b341" }));
    root.appendChild(svg("text", { x: x(start) + 4, y: top + 14, "font-size": 11, fill: "#7d4e00" },
                         w.windowHours + "-hour enforcement window"));
    root.appendChild(svg("line", { x1: left, x2: W - right, y1: H - 22, y2: H - 22, stroke: "#8c959f" }));
    // hour ticks: every 2, 3, 6 or 12 hours, whichever gives about eight labels
    var hours = (hi - lo) / 3600000, step = [1, 2, 3, 6, 12, 24].filter(function (s) { return hours / s <= 9; })[0] || 48;
    var tick = Math.ceil(lo / (step * 3600000)) * step * 3600000;
    for (; tick < hi; tick += step * 3600000) {
      var d = new Date(tick);
      root.appendChild(svg("line", { x1: x(tick), x2: x(tick), y1: H - 22, y2: H - 17, stroke: "#8c959f" }));
      var label = pad(d.getUTCHours()) + ":00" + (d.getUTCHours() === 0 ? " " + d.getUTCDate() + "/" +
        (d.getUTCMonth() + 1) : "");
      root.appendChild(svg("text", { x: x(tick), y: H - 5, "font-size": 10, fill: "#59636e",
                                     "text-anchor": "middle" }, label));
    }
    groups.forEach(function (g, i) {
      var y = top + 34 + i * lane;
      var a = Date.parse(g.firstAt || g.lastAt), b = Date.parse(g.lastAt || g.firstAt);
      var colour = function (t) { return t >= end ? "#cf222e" : (t >= start ? "#bf8700" : "#8c959f"); };
      if (b > a) { root.appendChild(svg("line", { x1: x(a), x2: x(b), y1: y, y2: y, stroke: "#8c959f",
                                                  "stroke-width": 2 })); }
      root.appendChild(svg("circle", { cx: x(a), cy: y, r: 5, fill: colour(a) }));
      if (b > a) { root.appendChild(svg("circle", { cx: x(b), cy: y, r: 5, fill: colour(b) })); }
      var text = g.user + " · " + g.protocol + " × " + g.count;
      var anchorRight = x(b) + 9 + text.length * 6.6 > W - right;  // would overflow: put it left of the first
      root.appendChild(svg("text", { x: anchorRight ? x(a) - 9 : x(b) + 9, y: y + 4, "font-size": 12,
                                     fill: "#1f2328", "text-anchor": anchorRight ? "end" : "start",
                                     "class": "signin" }, text));
    });
    if (!groups.length) {
      root.appendChild(svg("text", { x: W / 2, y: top + 40, "font-size": 12, fill: "#59636e",
                                     "text-anchor": "middle" }, "No successful legacy sign-in collected"));
    }
    root.appendChild(svg("line", { x1: x(now), x2: x(now), y1: top - 6, y2: H - 22, stroke: "#0969da",
                                   "stroke-width": 2, "stroke-dasharray": "4 3" }));
    root.appendChild(svg("text", { x: x(now), y: top - 10, "font-size": 11, fill: "#0969da",
                                   "text-anchor": "middle" }, "now"));
    return el("div", { "class": "timeline" }, root,
              el("div", { "class": "caption", text: "Successful legacy sign-ins (from the sign-in control's " +
                "evidence), first and last of each user and protocol: amber inside the window, red after it " +
                "closed (a gap), grey before it started. Times in UTC." }));
  }

  function alertsCard(alerts) {
    var card = el("section", { "class": "card", id: "open-alerts" },
                  el("h3", { text: "Open alerts (" + alerts.length + ")" }));
    if (!alerts.length) { append(card, el("p", { "class": "empty", text: "No open alert." })); return card; }
    var list = el("ul", { "class": "alerts" });
    alerts.forEach(function (a) { append(list, eventItem(a)); });
    append(card, list);
    return card;
  }

  function eventItem(e) {
    return el("li", { "data-event-type": e.type, "data-event-id": e.id },
      el("span", { "class": "etype", text: e.type }), " ",
      el("span", { "class": "sev-" + e.severity, text: e.severity }), " ",
      el("span", { "class": "when" }, timeEl(e.at)),
      e.acknowledged || e.acknowledgedAt ? el("span", { "class": "flag",
        text: "acknowledged" + (e.acknowledgedBy ? " by " + e.acknowledgedBy : "") }) : null,
      e.snoozed ? el("span", { "class": "flag", text: "snoozed until " + fmtTime(e.snoozedUntil) }) : null,
      el("div", { text: e.summary }),
      e.control ? el("div", { "class": "when", text: controlTitle(e.control) }) : null);
  }

  function show(value) {
    if (value === null || value === undefined) { return "(none)"; }
    if (Array.isArray(value)) { return value.length ? value.join(", ") : "[]"; }
    if (typeof value === "object") { return JSON.stringify(value); }
    return String(value);
  }

  function driftSection(history) {
    var drifts = history.filter(function (e) { return DRIFT_TYPES[e.type] && e.details && e.details.changes; });
    var section = el("section", { id: "drift" }, el("h2", { text: "Drift (" + drifts.length + ")" }));
    if (!drifts.length) {
      append(section, el("p", { "class": "empty", text: "No configuration change since authwatch started " +
        "watching this tenant." }));
      return section;
    }
    drifts.forEach(function (e) {
      var d = e.details;
      var who = d.changedBy ? el("b", { "class": "who", text: d.changedBy })
        : el("span", { "class": "who", text: "someone (the audit log does not say who)" });
      var card = el("div", { "class": "card drift " + DRIFT_TYPES[e.type], "data-event-type": e.type },
        el("div", {}, el("span", { "class": "etype", text: e.type }), " ",
           el("span", { "class": "sev-" + e.severity, text: e.severity }), " ", el("b", { text: driftName(d, e.summary) })),
        el("div", { "class": "when" }, "Changed by ", who, " at ", timeEl(d.changedAt || e.at),
           d.changedAt ? "" : " (seen at this evaluation)", " · detected ", timeEl(e.at),
           d.activity ? " · " + d.activity : ""));
      d.changes.forEach(function (c) {
        append(card, el("div", { "class": "change", "data-field": c.field },
          el("span", { "class": "field", text: c.field }),
          el("span", { "class": "before", text: show(c.before) }),
          el("span", { "class": "arrow", text: "→", "aria-label": "changed to" }),
          el("span", { "class": "after", text: show(c.after) }),
          c.note ? el("span", { "class": "when", text: c.note }) : null,
          el("span", { "class": "flag", text: c.effect })));
      });
      append(card, el("div", { "class": "when", text: d.matchesBaseline
        ? "Back to the approved baseline."
        : "Differs from the approved baseline: revert it, or accept a new baseline if the change was deliberate "
          + "(authwatch baseline accept --tenant " + e.tenantId + ")." }));
      append(section, card);
    });
    return section;
  }

  function driftName(d, summary) {
    var named = /Conditional Access policy '([^']+)'/.exec(summary || "");
    if (d.section === "conditionalAccess" && named) { return "Conditional Access policy '" + named[1] + "'"; }
    var section = { conditionalAccess: "Conditional Access policy", securityDefaults: "Security defaults",
                    transport: "Exchange transport config", mailboxOverrides: "Mailbox SMTP AUTH overrides",
                    authenticationPolicies: "Exchange authentication policy", organization: "Exchange organization",
                    sharepoint: "SharePoint settings" }[d.section] || d.section;
    var item = String(d.item || "").replace(/^ca:|^authPolicy:/, "");
    return section + (item && item.indexOf(".") < 0 ? " " + item : "");
  }

  function controlCard(c) {
    var meta = CONTROL_BY_ID[c.control] || {};
    var card = el("article", { "class": "control c-" + c.status, id: "control-" + c.control,
                               "data-control": c.control, "data-status": c.status },
      el("header", {}, statusBadge(c.status), el("h3", { text: meta.title || c.control }),
         el("span", { "class": "sev-" + c.severity, text: c.severity + " severity" }),
         el("span", { "class": "when mono", text: c.control })),
      el("p", { "class": "summary", text: c.summary }));
    if (c.frameworks && c.frameworks.length) {
      append(card, el("div", { "class": "frameworks", text: "Frameworks: " + c.frameworks.join(", ") }));
    }
    var ev = c.evidence || {};
    if (Object.keys(ev).length) {
      append(card, el("details", { "class": "evidence" },
                      el("summary", { text: "Evidence" }), evidence(ev, 0)));
    }
    if (c.remediation && (c.status === "fail" || c.status === "pending")) { append(card, remedy(c.remediation)); }
    append(card, el("div", { "class": "when" }, "Evaluated ", timeEl(c.evaluatedAt)));
    return card;
  }

  function evidence(value, depth) {
    if (value === null || value === undefined) { return el("span", { "class": "empty", text: "none" }); }
    if (typeof value === "boolean") { return document.createTextNode(value ? "yes" : "no"); }
    if (typeof value !== "object") { return document.createTextNode(String(value)); }
    if (Array.isArray(value)) {
      if (!value.length) { return el("span", { "class": "empty", text: "none" }); }
      if (value.every(function (v) { return v === null || typeof v !== "object"; })) {
        return document.createTextNode(value.join(", "));
      }
      var columns = [];
      value.forEach(function (row) {
        Object.keys(row || {}).forEach(function (k) { if (columns.indexOf(k) < 0) { columns.push(k); } });
      });
      var table = el("table", { "class": "small" },
                     el("tr", {}, columns.map(function (k) { return el("th", { text: humanise(k) }); })));
      value.slice(0, 25).forEach(function (row) {
        append(table, el("tr", {}, columns.map(function (k) {
          return el("td", {}, depth > 2 ? show(row[k]) : evidence(row[k], depth + 1));
        })));
      });
      return value.length > 25 ? el("div", {}, table, el("span", { "class": "when",
        text: "… and " + (value.length - 25) + " more" })) : table;
    }
    var dl = el("dl", { "class": "kv" });
    Object.keys(value).forEach(function (k) {
      append(dl, el("dt", { text: humanise(k) }), el("dd", {}, depth > 3 ? show(value[k]) : evidence(value[k], depth + 1)));
    });
    return dl;
  }

  function remedy(text) {
    var pre = el("pre", { "class": "remediation", text: text });
    var button = el("button", { type: "button", "class": "copy", title: "Copy the remediation", text: "Copy" });
    button.addEventListener("click", function () {
      copyText(text).then(function () {
        button.textContent = "Copied"; button.classList.add("done");
        setTimeout(function () { button.textContent = "Copy"; button.classList.remove("done"); }, 2000);
      }, function () { button.textContent = "Select and copy"; });
    });
    return el("div", { "class": "remedy" }, el("div", { "class": "when", text: "Remediation" }), pre, button);
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }

  function legacyCopy(text) {
    return new Promise(function (resolve, reject) {
      var area = el("textarea", { readonly: true, "class": "offscreen" });
      area.value = text;
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function historySection(history) {
    var section = el("section", { id: "history" }, el("h2", { text: "Alert history (" + history.length + ")" }));
    if (!history.length) {
      append(section, el("p", { "class": "empty", text: "Nothing has happened yet." }));
      return section;
    }
    var list = el("ul", { "class": "events" });
    history.forEach(function (e) { append(list, eventItem(e)); });
    append(section, list);
    return section;
  }

  // --- routing ------------------------------------------------------------------------------------------------------
  function route() {
    var match = /^#\/tenants\/([^/]+)(?:\/([a-z_]+))?$/.exec(window.location.hash || "");
    if (match) { showTenant(decodeURIComponent(match[1]), match[2]); } else { showFleet(); }
  }

  window.addEventListener("hashchange", route);
  route();
})();
