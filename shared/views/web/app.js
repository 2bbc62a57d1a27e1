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
  var fleetState = { rows: null, sort: { key: "default", dir: 1 }, page: 1, size: 50, rendered: false,
                     filter: { text: "", tenant: "all", control: "", cell: "any", tag: "" } };
  var lastFleetHash = "#/";
  // Which view the address shows ("fleet", "tenant", "onboarding"): an answer that arrives after the reader moved on
  // to another view is dropped, never drawn over it.
  var currentView = "";
  var onPage = {};  // ids of the tenants on the fleet's current page
  var PAGE_SIZES = [25, 50, 100, 200];
  var COUNT_ALL_UP_TO = 100;  // fleets up to this size: every tenant's open alerts are counted, so they sort first
  // Auto-refresh (seconds): ?refresh=N on the page's URL overrides the default of 60 (at least 1).
  var REFRESH_SECONDS = Math.max(1, parseInt(new URLSearchParams(window.location.search).get("refresh"), 10) ||
                                    config.refreshSeconds || 60);

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

  // `timers`: the view's (auto-refresh); `renderTimers`: one rendering's (a countdown), stopped when it is redrawn.
  var renderTimers = [];
  function stopTimers(renderingOnly) {
    renderTimers.forEach(function (t) { clearInterval(t); });
    renderTimers = [];
    if (!renderingOnly) { timers.forEach(function (t) { clearInterval(t); }); timers = []; }
  }

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
    if (status === 404) {
      return "No tenant with this id is registered (removed, or a typo in the address): pick it from the fleet.";
    }
    if (/not configured/.test(message)) {
      return "Set AUTHWATCH_STORAGE_CONNECTION_STRING in the app settings (or run `authwatch serve --demo`).";
    }
    if (status === 400) { return "The request was refused as written: check the address, or go back to the fleet."; }
    return "Reload the page; if it persists, the server's log says why (the terminal running `authwatch serve`, or " +
           "the function app's Application Insights).";
  }

  function showError(error, where) {
    clear(app);
    append(app, el("div", { "class": "error", role: "alert" },
                   el("b", { text: (where ? where + ": " : "") + (error.message || String(error)) }),
                   error.next ? el("span", { "class": "next", text: error.next }) : null));
    if (where !== "Fleet") { append(app, el("p", {}, el("a", { href: "#/", text: "← Back to the fleet", on: { click: backToFleet } }))); }
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
  // One request (GET tenants: every tenant with each control's last verdict) draws the whole matrix, however large
  // the fleet. Open alerts are counted per tenant (one request each): for every tenant when the fleet is small, for
  // the rows on the current page when it is not.
  function loadFleet() {
    return api("tenants").then(function (body) {
      var rows = ((body && body.tenants) || []).map(fleetRow);
      var known = {};
      (fleetState.rows || []).forEach(function (r) { known[r.id] = r.openAlerts; });
      rows.forEach(function (r) { r.openAlerts = known[r.id] === undefined ? null : known[r.id]; });
      if (rows.length > COUNT_ALL_UP_TO) { return rows; }
      return countAlerts(rows, true).then(function () { return rows; });
    });
  }

  // Fill in open-alert counts (`all`: every row again, else only those not counted yet); resolves when done.
  function countAlerts(rows, all) {
    var todo = rows.filter(function (r) { return all || r.openAlerts === null; });
    return pool(todo, 6, function (r) {
      if (!all && !onPage[r.id]) { return Promise.resolve(); }  // paged away meanwhile: counted when shown again
      return api("tenants/" + encodeURIComponent(r.id) + "?history=1").then(function (detail) {
        r.openAlerts = ((detail && detail.openAlerts) || []).length;
      });
    });
  }

  function fleetRow(summary) {
    var statuses = summary.controlStatus || {};
    var unreachable = summary.status === "unreachable";
    var byControl = {};
    CONTROLS.forEach(function (c) {
      byControl[c.id] = { status: unreachable ? "unknown" : (STATUS_WORD[statuses[c.id]] ? statuses[c.id] : "none") };
    });
    return { id: summary.tenantId, name: summary.displayName || summary.tenantId, status: summary.status,
             openAlerts: null, byControl: byControl, tags: summary.tags || [],
             lastCollectedAt: summary.lastCollectedAt, lastSuccessAt: summary.lastSuccessAt,
             reason: summary.unreachableReason || summary.lastError || null };
  }

  function tenantRank(r) { return r.status in TENANT_RANK ? TENANT_RANK[r.status] : 9; }  // unreachable is 0

  // Links carry the tenant's address (tenantLink); a click goes on to one control, or to the open alerts.
  function goTo(id, part) {
    return function (event) { event.preventDefault(); window.location.hash = tenantLink(id, part); };
  }

  function backToFleet(event) { event.preventDefault(); window.location.hash = lastFleetHash; }

  function alertCount(r) { return r.openAlerts === null ? -1 : r.openAlerts; }

  function compareRows(a, b) {
    var s = fleetState.sort, k = s.key, d = s.dir;
    function byDefault() {
      return (alertCount(b) - alertCount(a)) || (tenantRank(a) - tenantRank(b)) ||
             a.name.localeCompare(b.name);
    }
    var r = 0;
    if (k === "name") { r = a.name.localeCompare(b.name); }
    else if (k === "status") { r = tenantRank(a) - tenantRank(b); }
    else if (k === "alerts") { r = alertCount(b) - alertCount(a); }
    else if (CONTROL_BY_ID[k]) { r = CELL_RANK[a.byControl[k].status] - CELL_RANK[b.byControl[k].status]; }
    return r * d || byDefault();
  }

  function visible(row) {
    var f = fleetState.filter;
    var text = f.text.trim().toLowerCase();
    if (text && row.name.toLowerCase().indexOf(text) < 0 && row.id.indexOf(text) < 0) { return false; }
    if (f.tag && row.tags.indexOf(f.tag) < 0) { return false; }
    if (f.tenant === "alerts" && !(row.openAlerts > 0)) { return false; }
    if (f.tenant === "attention" && row.status === "healthy" && !(row.openAlerts > 0)) { return false; }
    if (["alerts", "attention", "all"].indexOf(f.tenant) < 0 && row.status !== f.tenant) { return false; }
    if (f.cell !== "any") {
      var ids = f.control ? [f.control] : CONTROLS.map(function (c) { return c.id; });
      if (!ids.some(function (id) { return row.byControl[id].status === f.cell; })) { return false; }
    }
    return true;
  }

  function shownRows() { return fleetState.rows.filter(visible).sort(compareRows); }

  // Filters, sort and page live in the URL (#/?q=…&sort=…): a reload or a shared link shows the same view.
  var URL_KEYS = { q: "text", tenants: "tenant", control: "control", cell: "cell", tag: "tag" };
  var FILTER_DEFAULTS = { text: "", tenant: "all", control: "", cell: "any", tag: "" };

  function readFleetUrl(query) {
    var p = new URLSearchParams(query || "");
    var f = fleetState.filter;
    Object.keys(URL_KEYS).forEach(function (k) { f[URL_KEYS[k]] = p.get(k) || FILTER_DEFAULTS[URL_KEYS[k]]; });
    var sortKey = p.get("sort");
    fleetState.sort = { key: sortKey && (sortKey === "name" || sortKey === "status" || sortKey === "alerts" ||
                                         CONTROL_BY_ID[sortKey]) ? sortKey : "default",
                        dir: p.get("dir") === "desc" ? -1 : 1 };
    var size = parseInt(p.get("size"), 10);
    fleetState.size = PAGE_SIZES.indexOf(size) >= 0 ? size : PAGE_SIZES[1];
    fleetState.page = Math.max(1, parseInt(p.get("page"), 10) || 1);
  }

  function fleetHash() {
    var p = new URLSearchParams(), f = fleetState.filter, s = fleetState.sort;
    Object.keys(URL_KEYS).forEach(function (k) {
      if (f[URL_KEYS[k]] !== FILTER_DEFAULTS[URL_KEYS[k]]) { p.set(k, f[URL_KEYS[k]]); }
    });
    if (s.key !== "default") { p.set("sort", s.key); if (s.dir < 0) { p.set("dir", "desc"); } }
    if (fleetState.size !== PAGE_SIZES[1]) { p.set("size", fleetState.size); }
    if (fleetState.page > 1) { p.set("page", fleetState.page); }
    var query = p.toString();
    return "#/" + (query ? "?" + query : "");
  }

  function writeFleetUrl() {
    lastFleetHash = fleetHash();
    if (window.location.hash !== lastFleetHash) {
      history.replaceState(null, "", window.location.pathname + window.location.search + lastFleetHash);
    }
  }

  function showFleet(query) {
    stopTimers();
    readFleetUrl(query);
    document.title = "authwatch — fleet";
    fleetState.rendered = false;
    clear(app);
    append(app, el("p", { "class": "loading", text: "Loading the fleet…" }));
    refreshFleet();
    timers.push(setInterval(refreshFleet, REFRESH_SECONDS * 1000));
    timers.push(setInterval(tickUpdated, 1000));
  }

  function refreshFleet() {
    var started = performance.now();
    return loadFleet().then(function (rows) {
      if (currentView !== "fleet") { return; }
      var read = performance.now();
      fleetState.rows = rows;
      fleetState.updatedAt = Date.now();
      fleetState.refreshError = null;
      if (fleetState.rendered) { updateFleet(); } else { renderFleet(); }
      // read by the browser test (1,000 tenants): the API's answer, then drawing the page from it
      window.authwatchTimings = { apiMs: read - started, renderMs: performance.now() - read };
    }, function (error) {
      if (currentView !== "fleet") { return; }
      if (!fleetState.rendered) { showError(error, "Fleet"); return; }
      fleetState.refreshError = error;  // keep what is shown, and say the refresh failed
      tickUpdated();
    });
  }

  function tickUpdated() {
    var node = document.getElementById("updated");
    if (!node || !fleetState.updatedAt) { return; }
    var ago = Math.round((Date.now() - fleetState.updatedAt) / 1000);
    node.textContent = "updated " + ago + " s ago" + (fleetState.refreshError
      ? " · the last refresh failed: " + fleetState.refreshError.message : " · refreshes every " + REFRESH_SECONDS + " s");
    node.className = fleetState.refreshError ? "updated stale" : "updated";
  }

  function renderFleet() {
    var rows = fleetState.rows;
    fleetState.rendered = true;
    clear(app);
    append(app, el("h1", { text: "Fleet" }),
           el("p", { "class": "sub", id: "fleet-sub" }),
           el("div", { "class": "totals", id: "totals" }));
    if (!rows.length) {
      append(app, el("p", { "class": "empty", text: "No tenants are registered yet. Onboard one with POST " +
        apiBase + "tenants (see the README), or try `authwatch serve --demo` for a scripted fleet." }));
      updateFleet();
      return;
    }
    append(app, legend(), toolbar());
    var table = el("table", { "class": "matrix", id: "matrix" },
                   el("caption", { "class": "sr-only", text: "Tenants and the verdict of each control" }));
    append(table, matrixHead());
    append(table, el("tbody", { id: "matrix-body" }));
    append(app, el("div", { "class": "matrix-wrap" }, table), pager());
    updateFleet();
  }

  function updateFleet() {
    var rows = fleetState.rows;
    var count = function (pred) { return rows.filter(pred).length; };
    var newest = rows.map(function (r) { return r.lastCollectedAt || ""; }).sort().pop();
    var sub = document.getElementById("fleet-sub");
    clear(sub);
    append(sub, rows.length + " tenants · data as of ", timeEl(newest), " · ",
           el("span", { "class": "updated", id: "updated" }), " ",
           el("button", { type: "button", "class": "link", id: "refresh-now", text: "Refresh now",
                          on: { click: function () { refreshFleet(); } } }));
    var totals = document.getElementById("totals");
    clear(totals);
    append(totals, total(rows.length > COUNT_ALL_UP_TO ? "—" : count(function (r) { return r.openAlerts > 0; }),
                         rows.length > COUNT_ALL_UP_TO ? "open alerts: counted per page" : "with open alerts"),
           total(count(function (r) { return r.status === "failing"; }), "failing"),
           total(count(function (r) { return r.status === "pending"; }), "in an enforcement window"),
           total(count(function (r) { return r.status === "unreachable"; }), "unreachable"),
           total(count(function (r) { return r.status === "healthy"; }), "healthy"));
    tickUpdated();
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

  function filtersChanged() { fleetState.page = 1; renderMatrixBody(); }

  function toolbar() {
    var f = fleetState.filter;
    var search = el("input", { type: "search", id: "filter-text", placeholder: "Tenant name or id", value: f.text });
    search.addEventListener("input", function () { f.text = search.value; filtersChanged(); });
    var tenantSel = select("filter-tenant", [["all", "all tenants"], ["attention", "needing attention"],
      ["alerts", "with open alerts"], ["failing", "failing"], ["pending", "pending (in a window)"],
      ["unreachable", "unreachable"], ["healthy", "healthy"], ["disabled", "disabled"]], f.tenant, function (v) {
        f.tenant = v; filtersChanged();
      });
    var controlSel = select("filter-control", [["", "any control"]].concat(CONTROLS.map(function (c) {
      return [c.id, c.label];
    })), f.control, function (v) { f.control = v; filtersChanged(); });
    var cellSel = select("filter-cell", [["any", "any status"], ["fail", "FAIL"], ["pending", "PENDING"],
      ["unknown", "UNKNOWN"], ["not_applicable", "N/A"], ["pass", "PASS"]], f.cell, function (v) {
        f.cell = v; filtersChanged();
      });
    var tags = {};
    fleetState.rows.forEach(function (r) { r.tags.forEach(function (t) { tags[t] = true; }); });
    if (f.tag) { tags[f.tag] = true; }
    var tagSel = select("filter-tag", [["", "any tag"]].concat(Object.keys(tags).sort().map(function (t) {
      return [t, t];
    })), f.tag, function (v) { f.tag = v; filtersChanged(); });
    return el("div", { "class": "toolbar", role: "search", "aria-label": "Filter the tenants" },
              field("filter-text", "Find", search), field("filter-tenant", "Tenants", tenantSel),
              field("filter-tag", "Tag", tagSel), field("filter-control", "Control", controlSel),
              field("filter-cell", "is", cellSel),
              el("span", { "class": "count", id: "matrix-count", "aria-live": "polite" }),
              el("span", { "class": "export" },
                 el("button", { type: "button", id: "export-csv", text: "Export CSV",
                                title: "Download the tenants matching these filters (every page) as CSV",
                                on: { click: exportCsv } }),
                 el("button", { type: "button", id: "export-report", text: "HTML report",
                                title: "Open the printable report of these filters (the API's /report)",
                                on: { click: openReport } })));
  }

  function field(id, label, control) {
    return el("span", { "class": "field" }, el("label", { "for": id, text: label }), control);
  }

  function select(id, options, value, onChange) {
    var node = el("select", { id: id });
    options.forEach(function (o) { append(node, el("option", { value: o[0], text: o[1], selected: o[0] === value })); });
    node.addEventListener("change", function () { onChange(node.value); });
    return node;
  }

  // Sort headers are buttons (Tab reaches them, Enter/Space sort); the sorted column says so in aria-sort.
  function matrixHead() {
    var s = fleetState.sort;
    function th(keyName, label, title, cls) {
      var sorted = s.key === keyName;
      return el("th", { "class": cls || null, "data-sort": keyName, scope: "col",
                        "aria-sort": sorted ? (s.dir > 0 ? "ascending" : "descending") : "none",
                        on: { click: function () { sortBy(keyName); } } },  // the button's click, or the cell's
                el("button", { type: "button", "class": "sort", title: (title || label) + ": sort by this column" },
                   label, el("span", { "class": "arrow", "aria-hidden": "true",
                                       text: sorted ? (s.dir > 0 ? "▲" : "▼") : "" })));
    }
    var row = el("tr", {}, th("name", "Tenant", null, "tenant"), th("status", "Status"), th("alerts", "Open alerts"));
    CONTROLS.forEach(function (c) { append(row, th(c.id, c.label, c.title + " (" + c.id + ")", "control")); });
    return el("thead", {}, row);
  }

  function sortBy(keyName) {
    var s = fleetState.sort;
    s.dir = s.key === keyName ? -s.dir : 1;
    s.key = keyName;
    fleetState.page = 1;
    var table = document.getElementById("matrix");
    table.replaceChild(matrixHead(), table.tHead);
    var button = table.querySelector('th[data-sort="' + keyName + '"] button');
    if (button) { button.focus(); }  // a keyboard user stays on the header they sorted by
    renderMatrixBody();
  }

  function pager() {
    var size = select("page-size", PAGE_SIZES.map(function (n) { return [String(n), n + " per page"]; }),
                      String(fleetState.size), function (v) {
                        fleetState.size = parseInt(v, 10); fleetState.page = 1; renderMatrixBody();
                      });
    return el("nav", { "class": "pager", "aria-label": "Pages of tenants" },
      el("button", { type: "button", id: "page-prev", text: "← Previous",
                     on: { click: function () { fleetState.page -= 1; renderMatrixBody(); } } }),
      el("span", { id: "page-info", "aria-live": "polite" }),
      el("button", { type: "button", id: "page-next", text: "Next →",
                     on: { click: function () { fleetState.page += 1; renderMatrixBody(); } } }),
      field("page-size", "Show", size));
  }

  function renderMatrixBody() {
    var body = document.getElementById("matrix-body");
    if (!body) { writeFleetUrl(); return; }
    var rows = shownRows();
    var pages = Math.max(1, Math.ceil(rows.length / fleetState.size));
    fleetState.page = Math.min(Math.max(1, fleetState.page), pages);
    var first = (fleetState.page - 1) * fleetState.size;
    var pageRows = rows.slice(first, first + fleetState.size);
    onPage = {};
    pageRows.forEach(function (r) { onPage[r.id] = true; });
    var fragment = document.createDocumentFragment();
    pageRows.forEach(function (r) { fragment.appendChild(matrixRow(r)); });
    if (!rows.length) {
      fragment.appendChild(el("tr", {}, el("td", { colspan: 3 + CONTROLS.length, "class": "empty",
                                                   text: "No tenant matches these filters." })));
    }
    clear(body);
    body.appendChild(fragment);
    document.getElementById("matrix-count").textContent = rows.length + " of " + fleetState.rows.length + " tenants";
    document.getElementById("page-info").textContent = rows.length
      ? "Page " + fleetState.page + " of " + pages + " (" + (first + 1) + "–" + (first + pageRows.length) + ")" : "";
    document.getElementById("page-prev").disabled = fleetState.page <= 1;
    document.getElementById("page-next").disabled = fleetState.page >= pages;
    writeFleetUrl();
    var uncounted = pageRows.filter(function (r) { return r.openAlerts === null; });
    if (uncounted.length) {
      countAlerts(uncounted, false).then(function () {
        uncounted.forEach(function (r) {
          var tr = body.querySelector('tr[data-tenant-id="' + r.id + '"]');
          if (tr) { tr.replaceWith(matrixRow(r)); }
        });
      });
    }
  }

  function matrixRow(r) {
    var tr = el("tr", { "data-tenant-id": r.id, "data-tenant-name": r.name,
                        "data-open-alerts": r.openAlerts === null ? "" : r.openAlerts },
      el("th", { "class": "tenant", scope: "row" }, el("a", { href: tenantLink(r.id), text: r.name }),
         el("span", { "class": "tid mono", text: r.id }),
         r.tags.length ? el("span", { "class": "tags", text: r.tags.join(" · ") }) : null),
      el("td", { "class": "meta" }, tenantBadge(r.status)),
      el("td", { "class": "meta" }, r.openAlerts === null ? el("span", { "class": "alerts-none", text: "…",
                                                                         title: "counting" })
        : r.openAlerts ? el("a", { "class": "alerts-count", href: tenantLink(r.id), text: r.openAlerts,
                                   "aria-label": r.openAlerts + " open alerts", on: { click: goTo(r.id, "alerts") } })
        : el("span", { "class": "alerts-none", text: "0" })));
    if (r.status === "unreachable") {
      append(tr, el("td", { "class": "cell unreachable", colspan: CONTROLS.length, "data-status": "unreachable" },
        el("b", { text: "Cannot read this tenant: " }), r.reason || "no error recorded",
        r.lastSuccessAt ? el("span", { "class": "when" }, " · last read ", timeEl(r.lastSuccessAt)) : null));
      return tr;
    }
    CONTROLS.forEach(function (c) {
      var status = r.byControl[c.id].status;
      append(tr, el("td", { "class": "cell " + statusCellClass(status), "data-control": c.id, "data-status": status },
                    el("a", { href: tenantLink(r.id), on: { click: goTo(r.id, c.id) },
                              title: c.title + ": " + (STATUS_HELP[status] || status),
                              "aria-label": c.label + ": " + (STATUS_WORD[status] || status),
                              text: STATUS_WORD[status] || status })));
    });
    return tr;
  }

  // The printable report of what the filters ask for, from the API (GET report: same protections as any read).
  // Built from the page's own selects (fixed values, the catalogue's ids), never from tenant data.
  function reportUrl() {
    var f = fleetState.filter;
    var query = ["format=html"];
    if (f.tenant === "failing" || f.tenant === "attention") { query.push("failingOnly=true"); }
    if (f.control) { query.push("control=" + encodeURIComponent(f.control)); }
    if (f.cell && f.cell !== "any") { query.push("status=" + encodeURIComponent(f.cell)); }
    if (key) { query.push("code=" + encodeURIComponent(key)); }
    return apiBase + "report?" + query.join("&");
  }

  function openReport() { window.open(reportUrl(), "_blank", "noopener"); }

  // Export: the tenants matching the filters (every page, in the order shown), built here from what is shown.
  function exportCsv() {
    var header = ["tenantId", "tenant", "status", "openAlerts", "tags"].concat(CONTROLS.map(function (c) {
      return c.id;
    })).concat(["lastCollectedAt", "unreachableReason"]);
    var lines = [header.map(csvCell).join(",")];
    shownRows().forEach(function (r) {
      lines.push([r.id, r.name, r.status, r.openAlerts === null ? "" : r.openAlerts, r.tags.join(" ")]
        .concat(CONTROLS.map(function (c) { return r.status === "unreachable" ? "unreachable" : r.byControl[c.id].status; }))
        .concat([r.lastCollectedAt || "", r.status === "unreachable" ? (r.reason || "") : ""]).map(csvCell).join(","));
    });
    var blob = new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
    var link = el("a", { download: "authwatch-fleet-" + new Date().toISOString().slice(0, 16).replace(/[-:T]/g, "") +
                         ".csv", "class": "offscreen" });
    link.href = URL.createObjectURL(blob);  // the page's own text, never a URL from the data
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  }

  // RFC 4180 quoting; a cell a spreadsheet would run as a formula (=, +, -, @) is prefixed with '.
  function csvCell(value) {
    var text = String(value === null || value === undefined ? "" : value);
    if (/^[=+\-@\t\r]/.test(text)) { text = "'" + text; }
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  // --- tenant view --------------------------------------------------------------------------------------------------
  var GUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
  var flash = null;  // what the last action did, shown once on the next rendering of the tenant

  function showTenant(id, focus) {
    stopTimers();
    clear(app);
    if (!GUID.test(id)) {
      showError({ message: "“" + id + "” is not a tenant id",
                  next: "Tenant ids are GUIDs such as 8c1d0f4e-1a2b-4c3d-8e9f-000000000001: check the address, or " +
                        "pick the tenant from the fleet." }, "Tenant");
      return;
    }
    append(app, el("p", { "class": "loading", text: "Loading the tenant…" }));
    loadTenant(id).then(function () {
      if (focus) {
        var target = document.getElementById(focus === "alerts" ? "open-alerts" : "control-" + focus);
        var folded = target && target.closest("details");
        if (folded) { folded.open = true; }
        if (target) { target.scrollIntoView({ block: "start" }); }
      } else { window.scrollTo(0, 0); }
      timers.push(setInterval(function () {  // auto-refresh, keeping the reader's place
        var y = window.scrollY;
        loadTenant(id).then(function () { window.scrollTo(0, y); }, function () {});
      }, REFRESH_SECONDS * 1000));
    }, function (error) { showError(error, "Tenant " + id); });
  }

  function loadTenant(id) {
    var path = "tenants/" + encodeURIComponent(id);
    // The timeline is its own request: when it fails, the rest of the tenant page still shows (and says so).
    var timeline = api(path + "/timeline?limit=100").then(null, function (error) { return { error: error }; });
    return Promise.all([api(path + "?history=200"), timeline]).then(function (answers) {
      if (currentView !== "tenant") { return; }
      renderTenant(answers[0], performance.now(), answers[1]);
    });
  }

  // An action from the page: POST through api() (JSON body, the run's token or the function key: what the server's
  // guard requires), then the tenant is read again and the page says what happened; on failure it says why.
  function act(button, path, body, done) {
    var tenantId = currentTenant;
    button.disabled = true;
    return api(path, { method: "POST", body: body }).then(function (answer) {
      flash = { ok: true, text: done(answer || {}) };
      return loadTenant(tenantId);
    }, function (error) {
      button.disabled = false;
      say({ ok: false, text: "Not done: " + error.message + (error.next ? " " + error.next : "") });
    });
  }

  function say(message) {
    var box = document.getElementById("action-status");
    if (!box) { return; }
    box.className = message ? (message.ok ? "notice ok" : "notice error") : "";
    box.textContent = message ? message.text : "";
  }

  var currentTenant = null;

  function renderTenant(t, loadedAt, timelineAnswer) {
    stopTimers(true);
    clear(app);
    currentTenant = t.tenantId;
    document.title = "authwatch — " + (t.displayName || t.tenantId);
    append(app, el("div", { "class": "crumbs" }, el("a", { href: "#/", text: "← Fleet", on: { click: backToFleet } }),
                   el("span", { "class": "when", id: "updated" })));
    var updatedAt = Date.now();
    var tick = function () {
      var node = document.getElementById("updated");
      if (node) { node.textContent = " · updated " + Math.round((Date.now() - updatedAt) / 1000) + " s ago · refreshes " +
                                     "every " + REFRESH_SECONDS + " s"; }
    };
    renderTimers.push(setInterval(tick, 1000));
    setTimeout(tick, 0);
    var status = el("div", { id: "action-status", role: "status", "aria-live": "polite" });
    append(app, status);
    append(app, el("h1", { id: "tenant-name" }, (t.displayName || t.tenantId) + " ", tenantBadge(t.status)));
    append(app, el("div", { "class": "facts" },
      el("span", {}, "Tenant ", el("b", { "class": "mono", text: t.tenantId })),
      el("span", {}, "Last evaluated ", el("b", {}, timeEl(t.lastCollectedAt))),
      el("span", {}, "Baseline ", el("b", { text: t.hasBaseline ? "captured" : "none yet" })),
      t.consecutiveFailures ? el("span", {}, "Failed runs in a row ", el("b", { text: t.consecutiveFailures })) : null,
      (t.tags || []).length ? el("span", {}, "Tags ", el("b", { text: t.tags.join(", ") })) : null),
      baselineAction(t));
    if (flash) { say(flash); flash = null; }
    if (t.lastError) {
      append(app, el("div", { "class": "error", role: "alert" }, el("b", { text: t.lastError })));
    }
    var signins = (t.controls || []).filter(function (c) { return c.control === "entra_legacy_signins_blocked"; })[0];
    append(app, driftSection(t.history || []));
    append(app, el("div", { "class": "grid" }, windowCard(t.enforcementWindow, signins, loadedAt),
                   alertsCard(t.openAlerts || [])));
    append(app, exceptionsSection(t.exceptions || []));
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
    // Failing first (then pending, unknown), in catalogue order within each; what holds is folded away below.
    var rank = function (c) { return CELL_RANK[c.status] === undefined ? 3 : CELL_RANK[c.status]; };
    var sorted = ordered.map(function (c, i) { return [c, i]; }).sort(function (a, b) {
      return (rank(a[0]) - rank(b[0])) || (a[1] - b[1]);
    }).map(function (pair) { return pair[0]; });
    var open = sorted.filter(function (c) { return c.status !== "pass" && c.status !== "not_applicable"; });
    var fine = sorted.filter(function (c) { return c.status === "pass" || c.status === "not_applicable"; });
    if (ordered.length && !open.length) { append(app, el("p", { "class": "empty", text: "Every control holds." })); }
    open.forEach(function (c) { append(app, controlCard(c)); });
    if (fine.length) {
      var folded = el("details", { id: "passing-controls", "class": "passing" },
                      el("summary", { text: "Passing or not applicable (" + fine.length + ")" }));
      fine.forEach(function (c) { append(folded, controlCard(c)); });
      append(app, folded);
    }
    var openIds = {};
    (t.openAlerts || []).forEach(function (a) { openIds[a.id] = true; });
    append(app, timelineSection(timelineAnswer));
    append(app, historySection((t.history || []).filter(function (e) { return !openIds[e.id]; }),
                               (t.openAlerts || []).length));
    if ((t.failedDeliveries || []).length) { append(app, failedDeliveriesSection(t.failedDeliveries)); }
  }

  // The tenant's exceptions (GET tenants/{id} › exceptions): accepted deviations, each with an owner and an expiry,
  // soonest end first; "expiring soon" within the tenant's reminder days; its legacy approvedExclusions last.
  function exceptionsSection(items) {
    var section = el("section", { id: "exceptions" }, el("h2", { text: "Exceptions (" + items.length + ")" }));
    if (!items.length) {
      append(section, el("p", { "class": "empty", text: "No exceptions: every control is judged as it stands." }));
      return section;
    }
    var head = el("tr", {}, ["Id", "Control", "Scope", "Owner", "Reason", "Expires", "Days left"].map(function (h) {
      return el("th", { text: h });
    }));
    var body = el("tbody");
    items.forEach(function (x) {
      var scope = Object.keys(x.scope || {}).map(function (k) { return k + ": " + (x.scope[k] || []).join(", "); });
      append(body, el("tr", { "data-exception-id": x.id, "data-exception-status": x.status },
        el("td", {}, el("code", { text: x.id }), x.legacy ? el("span", { "class": "flag", text: "legacy" }) : null),
        el("td", { title: x.control, text: controlTitle(x.control) }),
        el("td", { text: scope.join("; ") || "(whole control)" }),
        el("td", { text: x.owner || "(none)" }),
        el("td", { text: x.reason || "" }),
        el("td", {}, x.expiresAt ? timeEl(x.expiresAt) : "never"),
        el("td", {}, x.legacy ? "—" : x.expired ? el("span", { "class": "flag expired", text: "expired" })
                                                : String(x.daysLeft),
           x.expiringSoon ? el("span", { "class": "flag soon", text: "expiring soon" }) : null)));
    });
    append(section, el("table", { "class": "small exceptions" }, el("thead", {}, head), body));
    return section;
  }

  // A result an exception covers passes with evidence.exception naming it: shown as "PASS (exception <id>)".
  function resultBadge(c) {
    var covered = c.evidence && c.evidence.exception;
    var ids = covered && Array.isArray(covered.ids) ? covered.ids : [];
    var badge = statusBadge(c.status);
    if (c.status === "pass" && ids.length) {
      badge.textContent = STATUS_WORD.pass + " (exception " + ids.join(", ") + ")";
      badge.setAttribute("data-exception", ids.join(" "));
    }
    return badge;
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
      renderTimers.push(setInterval(tick, 1000));
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
    var by = el("input", { type: "text", id: "ack-by", autocomplete: "name", maxlength: 200,
                           placeholder: "e.g. you@msp.example", value: remembered("authwatch.ackBy") });
    by.addEventListener("change", function () { remember("authwatch.ackBy", by.value.trim()); });
    append(card, el("p", { "class": "field" }, el("label", { "for": "ack-by", text: "Acknowledge as (optional) " }),
                    by));
    var list = el("ul", { "class": "alerts" });
    alerts.forEach(function (a) { append(list, eventItem(a, alertActions(a, by))); });
    append(card, list);
    return card;
  }

  function remembered(name) { try { return localStorage.getItem(name) || ""; } catch (e) { return ""; } }
  function remember(name, value) { try { localStorage.setItem(name, value); } catch (e) { /* private mode */ } }

  var SNOOZES = [["1", "1 hour"], ["4", "4 hours"], ["24", "1 day"], ["168", "7 days"]];

  function alertActions(a, by) {
    var base = "tenants/" + encodeURIComponent(a.tenantId || currentTenant) + "/alerts/" + encodeURIComponent(a.id);
    var what = a.type + " (" + a.id + ")";
    var done = Boolean(a.acknowledged || a.acknowledgedAt);
    var ack = el("button", { type: "button", "class": "action", "data-action": "ack",
                             "aria-label": (done ? "Acknowledge again " : "Acknowledge ") + "alert " + what,
                             text: done ? "Acknowledge again" : "Acknowledge" });
    ack.addEventListener("click", function () {
      var who = by.value.trim();
      act(ack, base + "/ack", who ? { by: who } : {}, function () {
        return "Alert " + a.id + " acknowledged" + (who ? " by " + who : "") + ": it stays open until resolved, " +
               "without reminders.";
      });
    });
    var hours = el("select", { id: "snooze-for-" + a.id, "aria-label": "Snooze alert " + what + " for" },
                   SNOOZES.map(function (o) { return el("option", { value: o[0], text: o[1], selected: o[0] === "24" }); }));
    var snooze = el("button", { type: "button", "class": "action", "data-action": "snooze",
                                "aria-label": "Snooze alert " + what, text: "Snooze" });
    snooze.addEventListener("click", function () {
      var until = new Date(Date.now() + parseInt(hours.value, 10) * 3600000).toISOString().replace(/\.\d+Z$/, "Z");
      act(snooze, base + "/snooze", { until: until }, function (answer) {
        return "Alert " + a.id + " snoozed until " + fmtTime(answer.snoozedUntil || until) + ".";
      });
    });
    return el("div", { "class": "actions" }, ack, " ", snooze, " ", el("span", { "class": "when", text: "for" }), " ",
              hours);
  }

  // Accept the tenant's current configuration as its approved baseline: two steps, it changes what drift means.
  function baselineAction(t) {
    var box = el("span", { "class": "baseline-action" });
    var start = el("button", { type: "button", id: "accept-baseline", "class": "action",
                               text: t.hasBaseline ? "Accept current configuration as baseline…" : "Capture baseline…" });
    start.addEventListener("click", function () {
      clear(box);
      var confirm = el("button", { type: "button", id: "accept-baseline-confirm", "class": "action primary",
                                   text: "Accept as baseline" });
      var cancel = el("button", { type: "button", "class": "action", text: "Cancel",
                                  on: { click: function () { clear(box); append(box, start); start.focus(); } } });
      confirm.addEventListener("click", function () {
        act(confirm, "tenants/" + encodeURIComponent(t.tenantId) + "/baseline/accept", {}, function (answer) {
          return "Baseline accepted (" + (answer.items === undefined ? "?" : answer.items) + " items): drift is now " +
                 "measured from this tenant's current configuration.";
        });
      });
      append(box, el("span", { text: "Drift will be measured from the configuration as it is now. " }), confirm, " ",
             cancel);
      confirm.focus();
    });
    append(box, start);
    return box;
  }

  function eventItem(e, actions) {
    return el("li", { "data-event-type": e.type, "data-event-id": e.id },
      el("span", { "class": "etype", text: e.type }), " ",
      el("span", { "class": "sev-" + e.severity, text: e.severity }), " ",
      el("span", { "class": "when" }, timeEl(e.at)),
      e.acknowledged || e.acknowledgedAt ? el("span", { "class": "flag",
        text: "acknowledged" + (e.acknowledgedBy ? " by " + e.acknowledgedBy : "") }) : null,
      e.snoozed ? el("span", { "class": "flag", text: "snoozed until " + fmtTime(e.snoozedUntil) }) : null,
      el("div", { text: e.summary }),
      e.control ? el("div", { "class": "when", text: controlTitle(e.control) }) : null,
      e.id ? el("div", { "class": "when" }, "Alert id ", el("code", { "class": "alert-id", text: e.id })) : null,
      actions || null);
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
      el("header", {}, resultBadge(c), el("h3", { text: meta.title || c.control }),
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

  // The tenant's timeline (GET …/timeline): protection changes, when each is in force by, what the evidence said,
  // and Microsoft's own dates; newest first. Every value is text; a source is shown as text, never as a link.
  var TIMELINE_KINDS = { change: "change", window_opened: "window opened", in_force: "in force by",
                         confirmed: "confirmed", gap: "gap", platform: "Microsoft date",
                         managed_policy: "Microsoft-managed policy" };

  function timelineSection(answer) {
    var section = el("section", { id: "protection-timeline" });
    if (!answer || answer.error) {
      append(section, el("h2", { text: "Timeline" }), el("p", { "class": "error", role: "alert",
        text: "The timeline could not be read: " + ((answer && answer.error && answer.error.message) || "no answer") }));
      return section;
    }
    var entries = answer.entries || [];
    append(section, el("h2", { text: "Timeline (" + entries.length + (answer.omitted ? " of " +
      (entries.length + answer.omitted) : "") + ")" }));
    append(section, el("p", { "class": "when", text: "Protection changes, when each is in force by and what the " +
      "sign-in evidence said, next to Microsoft's own dates; newest first, as of " + fmtTime(answer.at) + "." }));
    var list = el("ol", { "class": "tl" });
    entries.forEach(function (e) { append(list, timelineItem(e)); });
    append(section, list);
    if (answer.historyTruncated) {
      append(section, el("p", { "class": "when", text: "Older history was not read: earlier changes are not shown." }));
    }
    return section;
  }

  function timelineItem(e) {
    var item = el("li", { "class": "tl-" + e.kind + (e.effect ? " " + e.effect : "") + (e.status ? " s-" + e.status : ""),
                          "data-kind": e.kind, "data-status": e.status || "", "data-at": e.at || "" },
      el("div", {}, el("span", { "class": "when" }, timeEl(e.at)), " ",
         el("span", { "class": "etype", text: TIMELINE_KINDS[e.kind] || e.kind }),
         e.status ? el("span", { "class": "flag", text: e.status }) : null),
      el("div", { "class": "tl-title", text: e.title }));
    if (e.by) { append(item, el("div", { "class": "when" }, "by ", el("b", { "class": "who", text: e.by }))); }
    (e.changes || []).forEach(function (c) {
      append(item, el("div", { "class": "change", "data-field": c.field },
        el("span", { "class": "field", text: c.field }), el("span", { "class": "before", text: show(c.before) }),
        el("span", { "class": "arrow", text: "→", "aria-label": "changed to" }),
        el("span", { "class": "after", text: show(c.after) }), c.note ? el("span", { "class": "when", text: c.note }) : null));
    });
    if (e.inForce) { append(item, el("div", { "class": "tl-force" }, "In force: ", el("b", { text: e.inForce }))); }
    if (e.scope && (e.scope.everyone || (e.scope.count !== null && e.scope.count !== undefined))) {
      append(item, el("div", { "class": "when tl-scope", text: e.scope.everyone ? "In scope: every user"
        : "In scope: " + e.scope.count + " user(s)" + ((e.scope.sample || []).length ? " (" + e.scope.sample.join(", ") +
          (e.scope.count > e.scope.sample.length ? ", …" : "") + ")" : "") }));
    }
    if (e.detail) { append(item, el("div", { text: e.detail })); }
    if (e.source) {
      append(item, el("div", { "class": "when tl-source" }, "Source: ", el("span", { text: e.source.id }), " — ",
                      el("code", { text: e.source.url })));
    }
    return item;
  }

  function historySection(history, openCount) {
    var section = el("section", { id: "history" }, el("h2", { text: "Alert history (" + history.length +
      (openCount ? "; the " + openCount + " open alert" + (openCount > 1 ? "s are" : " is") + " above)" : ")") }));
    if (!history.length) {
      append(section, el("p", { "class": "empty", text: openCount ? "Nothing else has happened yet."
                                                                   : "Nothing has happened yet." }));
      return section;
    }
    var list = el("ul", { "class": "events" });
    history.forEach(function (e) { append(list, eventItem(e)); });
    append(section, list);
    return section;
  }

  // --- onboarding view ----------------------------------------------------------------------------------------------
  // GET onboarding (shared/views/onboarding_view.py): every GDAP customer's onboarding state and its one fix, those
  // needing a fix first (the API's order, kept). States and their words are the report's (report_onboarding.py).
  var ONBOARDING_ORDER = ["failed", "lacks_role", "missing_exchange_role", "relationship_ended", "in_progress", "ready",
                          "removed"];
  var ONBOARDING_LABEL = { ready: "Ready", missing_exchange_role: "Needs the Exchange role",
                           lacks_role: "Relationship lacks a role", failed: "Failed", in_progress: "In progress",
                           relationship_ended: "Relationship ended", removed: "Removed (not watched)" };
  var ONBOARDING_COLOUR = { ready: "pass", in_progress: "pending", relationship_ended: "unknown", failed: "fail",
                            lacks_role: "fail", missing_exchange_role: "fail", removed: "unknown" };
  var onboardingShown = false;

  function showOnboarding() {
    stopTimers();
    document.title = "authwatch — onboarding";
    onboardingShown = false;
    clear(app);
    append(app, el("p", { "class": "loading", text: "Loading the onboarding…" }));
    refreshOnboarding();
    timers.push(setInterval(refreshOnboarding, REFRESH_SECONDS * 1000));
  }

  function refreshOnboarding() {
    return api("onboarding").then(function (body) {
      if (currentView !== "onboarding") { return; }
      var y = window.scrollY;
      renderOnboarding(body || {});
      if (onboardingShown) { window.scrollTo(0, y); }  // a refresh keeps the reader's place
      onboardingShown = true;
    }, function (error) {
      if (currentView !== "onboarding") { return; }
      if (!onboardingShown) { showError(error, "Onboarding"); }  // else keep what is shown; the next refresh retries
    });
  }

  function renderOnboarding(body) {
    var customers = body.customers || [];
    var counts = body.counts || {};
    clear(app);
    append(app, el("h1", { text: "Onboarding" }));
    if (!customers.length) {
      append(app, el("p", { "class": "empty", id: "onboarding-empty",
                            text: "No GDAP onboarding yet: run `authwatch tenants discover`." }));
      return;
    }
    append(app, el("p", { "class": "sub", id: "onboarding-sub", text: customers.length + " GDAP customers · " +
      (body.needsFix || 0) + " needing a fix, listed first · refreshes every " + REFRESH_SECONDS + " s" }));
    var totals = el("div", { "class": "totals", id: "onboarding-totals" });
    ONBOARDING_ORDER.forEach(function (state) {
      append(totals, el("div", { "class": "total", "data-state": state },
                        el("b", { text: counts[state] || 0 }), el("span", { text: ONBOARDING_LABEL[state] })));
    });
    append(app, totals);
    if (body.truncated) {
      append(app, el("p", { "class": "error", role: "alert", text: "Only the first customers read are listed: more " +
        "onboarding records exist than the page reads." }));
    }
    var head = el("tr", {}, ["State", "Customer", "The fix", "Why", "Updated"].map(function (h) {
      return el("th", { scope: "col", text: h });
    }));
    var rows = el("tbody", { id: "onboarding-body" });
    customers.forEach(function (c) { append(rows, onboardingRow(c)); });
    append(app, el("div", { "class": "matrix-wrap" },
                   el("table", { "class": "onboarding", id: "onboarding" },
                      el("caption", { "class": "sr-only", text: "GDAP customers, their onboarding state and the fix" }),
                      el("thead", {}, head), rows)));
  }

  function onboardingRow(c) {
    var label = ONBOARDING_LABEL[c.state] || c.label || c.state;
    // A ready customer is watched: its name leads to its tenant page (the fleet's link: the id encoded, never raw
    // data in an href). Others may not be registered (yet, or again).
    var r = { id: c.tenantId, name: c.name || c.tenantId };
    var name = c.state === "ready" ? el("a", { href: tenantLink(r.id), text: r.name }) : el("b", { text: r.name });
    return el("tr", { "data-tenant-id": c.tenantId, "data-state": c.state },
      el("td", {}, el("span", { "class": "badge status-" + (ONBOARDING_COLOUR[c.state] || "unknown"),
                                "data-onboarding-state": c.state, text: label })),
      el("th", { scope: "row", "class": "customer" }, name, el("span", { "class": "tid", text: c.tenantId })),
      el("td", { "class": "fix", text: c.fix || "Nothing to do: watched." }),
      el("td", { "class": "why", text: c.detail || "" }),
      el("td", { "class": "when" }, timeEl(c.updatedAt)));
  }

  // The header's page links say which page is shown.
  function markNav(name) {
    Array.prototype.forEach.call(document.querySelectorAll("nav.pages a[data-nav]"), function (link) {
      if (link.getAttribute("data-nav") === name) { link.setAttribute("aria-current", "page"); }
      else { link.removeAttribute("aria-current"); }
    });
  }

  // --- routing ------------------------------------------------------------------------------------------------------
  function route() {
    var hash = window.location.hash || "";
    if (/^#\/onboarding\/?$/.test(hash)) {
      currentView = "onboarding";
      markNav("onboarding");
      showOnboarding();
      return;
    }
    var match = /^#\/tenants\/([^/?]*)(?:\/([a-z_]+))?$/.exec(hash);
    currentView = match ? "tenant" : "fleet";
    markNav(currentView);
    if (match) {
      var id = "";
      try { id = decodeURIComponent(match[1]); } catch (e) { id = match[1]; }
      showTenant(id, match[2]);
      return;
    }
    var query = /^#\/?\?(.*)$/.exec(hash);
    showFleet(query ? query[1] : "");
  }

  window.addEventListener("hashchange", route);
  route();
})();
