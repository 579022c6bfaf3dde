// Live dashboard of Frame Buffer v2. Polls the worker's JSON API and draws it; no libraries,
// so the page works offline and from any worker. Rates are derived client-side from the
// monotonic totals of /api/v1/frames/stats.
(function () {
  "use strict";

  var METRICS = ["captured", "routed", "processed", "shed"];
  var WINDOW_MS = 120000; // what the charts show
  // Totals come from snapshots refreshed about once a second, so a rate over a single poll
  // would alternate between 0 and double; a few seconds of span smooths that out.
  var RATE_SPAN_MS = 3000;
  var params = new URLSearchParams(window.location.search);
  var POLL_MS = Math.max(200, Number(params.get("poll")) || 1000);
  var STATS_URL = "/api/v1/frames/stats";
  var BP_URL = "/api/v1/backpressure";

  var samples = []; // {t, totals: {captured,...}} within WINDOW_MS + RATE_SPAN_MS
  var series = {}; // metric -> [{t, rate}]
  METRICS.forEach(function (m) { series[m] = []; });
  var lastOk = null; // Date of the last fully successful poll
  var lastStats = null;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "style") node.setAttribute("style", attrs[k]);
        else node.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      if (arguments[i] != null) node.appendChild(arguments[i]);
    }
    return node;
  }

  function toInt(value) {
    var n = Number(value);
    return isFinite(n) ? n : 0;
  }

  function fmtInt(n) { return Math.round(n).toLocaleString("en-US"); }

  function fmtRate(r) {
    if (r >= 100) return r.toFixed(0);
    if (r >= 10) return r.toFixed(1);
    return r.toFixed(2);
  }

  function setNum(id, value, text) {
    var node = $(id);
    node.setAttribute("data-value", String(value));
    node.textContent = text;
  }

  // With API_READ_AUTH the reads need the token: open the page as /#token=<API_TOKEN>.
  // The fragment never leaves the browser, so the token is in no server or proxy log.
  var TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");

  function fetchJson(url) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, Math.max(POLL_MS * 3, 3000));
    var headers = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
    return fetch(url, { cache: "no-store", signal: ctl.signal, headers: headers })
      .then(function (resp) {
        if (!resp.ok) throw new Error(url + " answered HTTP " + resp.status);
        return resp.json();
      }, function (err) {
        throw new Error(url + " unreachable (" + (err && err.name === "AbortError" ? "timeout" : err.message) + ")");
      })
      .finally(function () { clearTimeout(timer); });
  }

  // --- rates ------------------------------------------------------------------------------

  function sampleTime(stats, fallback) {
    var t = Date.parse(stats && stats.at);
    return isFinite(t) ? t : fallback;
  }

  function addSample(stats, now) {
    var t = sampleTime(stats, now);
    var last = samples[samples.length - 1];
    if (last && t <= last.t) return false; // the same snapshot again: no new information
    var totals = {};
    METRICS.forEach(function (m) { totals[m] = toInt(stats[m]); });
    samples.push({ t: t, totals: totals });
    while (samples.length > 2 && samples[0].t < t - WINDOW_MS - RATE_SPAN_MS) samples.shift();

    // The rate over the newest sample at least RATE_SPAN_MS older (or the oldest we have).
    var base = null;
    for (var i = samples.length - 2; i >= 0; i--) {
      base = samples[i];
      if (t - base.t >= RATE_SPAN_MS) break;
    }
    if (!base) return true;
    var dt = (t - base.t) / 1000;
    METRICS.forEach(function (m) {
      // A total that went down means a counter reset; show 0 rather than a negative rate.
      var rate = Math.max(0, (totals[m] - base.totals[m]) / dt);
      series[m].push({ t: t, rate: rate });
      while (series[m].length && series[m][0].t < t - WINDOW_MS) series[m].shift();
    });
    return true;
  }

  function drawChart(metric, now) {
    var svg = $("chart-" + metric);
    var pts = series[metric];
    var W = 240, H = 48;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("data-points", String(pts.length));
    if (!pts.length) return;
    var max = 0;
    pts.forEach(function (p) { if (p.rate > max) max = p.rate; });
    // Headroom above the peak keeps a steady rate from drawing along the top edge.
    var top = max > 0 ? max * 1.25 : 1;
    svg.setAttribute("data-max", String(max));
    // Until the window is full the chart spans the data there is, so it is readable from the start.
    var start = Math.max(now - WINDOW_MS, pts[0].t);
    var span = Math.max(now - start, 1000);
    var coords = pts.map(function (p) {
      var x = Math.max(0, Math.min(W, (1 - (now - p.t) / span) * W));
      var y = H - 1 - (p.rate / top) * (H - 4);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    var first = coords[0].split(","), last = coords[coords.length - 1].split(",");
    var ns = "http://www.w3.org/2000/svg";
    var area = document.createElementNS(ns, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", first[0] + "," + H + " " + coords.join(" ") + " " + last[0] + "," + H);
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", "line");
    line.setAttribute("points", coords.join(" "));
    svg.appendChild(area);
    svg.appendChild(line);
    $("peak-" + metric).textContent = fmtRate(max);
  }

  function renderStats(stats, now) {
    lastStats = stats;
    addSample(stats, now);
    METRICS.forEach(function (m) {
      var total = toInt(stats[m]);
      setNum("total-" + m, total, fmtInt(total));
      var pts = series[m];
      if (pts.length) {
        var rate = pts[pts.length - 1].rate;
        setNum("rate-" + m, rate.toFixed(3), fmtRate(rate));
      }
      drawChart(m, sampleTime(stats, now));
    });
    renderKv($("dead-letters"), stats.dead_lettered || {}, "reason", "no dead letters");
  }

  // --- lists and tables ----------------------------------------------------------------------

  function renderKv(list, mapping, attr, emptyText) {
    var keys = Object.keys(mapping).sort(function (a, b) { return toInt(mapping[b]) - toInt(mapping[a]); });
    list.replaceChildren();
    if (!keys.length) {
      list.appendChild(el("li", { "class": "empty", text: emptyText }));
      return;
    }
    keys.forEach(function (k) {
      var n = toInt(mapping[k]);
      var li = el("li", {}, el("span", { text: k }), el("span", { "class": "num", "data-value": String(n), text: fmtInt(n) }));
      li.setAttribute("data-" + attr, k);
      list.appendChild(li);
    });
  }

  function levelBadge(level) {
    var name = level ? String(level).toUpperCase() : "";
    return el("span", { "class": "level", "data-level": name, text: name || "—" });
  }

  function processorRow(pid, info, counts) {
    var lag = Math.max(0, toInt(info.lag));
    var capacity = toInt(info.capacity);
    var fill = capacity > 0 ? Math.min(lag / capacity, 1) : (lag > 0 ? 1 : 0);
    var level = info.level ? String(info.level).toUpperCase() : "";
    var caps = el("td", { "class": "caps" });
    (info.capabilities || []).forEach(function (c) { caps.appendChild(el("span", { text: c })); });
    var partitions = info.partitions && typeof info.partitions === "object" ? Object.keys(info.partitions).length : toInt(info.partitions);
    var status = info.status ? String(info.status) : "unknown";
    var bar = el("div", { "class": "bar", "data-fill": fill.toFixed(3) },
      el("div", { "class": "fill", "data-level": level, style: "width:" + (fill * 100).toFixed(1) + "%" }));
    var tr = el("tr", { "data-processor-id": pid, "data-level": level, "data-status": status },
      el("td", { "class": "pid", text: pid }),
      caps,
      el("td", {}, el("span", { "class": "health", "data-status": status, text: status })),
      el("td", {}, el("div", { "class": "lag" }, bar,
        el("span", { "class": "num lagtext", "data-lag": String(lag), "data-capacity": String(capacity),
          text: fmtInt(lag) + " / " + fmtInt(capacity) }))),
      el("td", {}, levelBadge(level)),
      el("td", { "class": "n partitions", text: String(partitions) }),
      el("td", { "class": "n routed", text: fmtInt(toInt(counts.routed)) }),
      el("td", { "class": "n processed", text: fmtInt(toInt(counts.processed)) }));
    return tr;
  }

  function renderProcessors(bp) {
    var procs = bp.processors || {};
    var perProc = (lastStats && lastStats.processors) || {};
    var body = $("processors");
    body.replaceChildren();
    var ids = Object.keys(procs).sort();
    if (!ids.length) {
      body.appendChild(el("tr", { "class": "empty" }, el("td", { colspan: "8", text: "no processors registered" })));
      return;
    }
    ids.forEach(function (pid) { body.appendChild(processorRow(pid, procs[pid] || {}, perProc[pid] || {})); });
  }

  function renderBridges(bridges) {
    var body = $("bridges");
    body.replaceChildren();
    if (!bridges.length) {
      body.appendChild(el("tr", { "class": "empty" }, el("td", { colspan: "6", text: "no bridge reporting" })));
      return;
    }
    bridges.slice().sort(function (a, b) { return String(a.consumer).localeCompare(String(b.consumer)); })
      .forEach(function (b) {
        var state = b.state ? String(b.state) : "unknown";
        body.appendChild(el("tr", { "data-bridge": String(b.consumer), "data-state": state },
          el("td", { text: String(b.consumer) }),
          el("td", {}, el("span", { "class": "bstate", "data-state": state, text: state })),
          el("td", { "class": "n backlog", text: fmtInt(toInt(b.backlog)) }),
          el("td", { "class": "n pending", text: fmtInt(toInt(b.pending)) }),
          el("td", { "class": "n", text: fmtRate(Math.max(0, toInt(b.rate))) }),
          el("td", { "class": "n", text: fmtInt(toInt(b.mirrored_total)) })));
      });
  }

  function renderBackpressure(bp) {
    var router = bp.router || {};
    var badge = $("router-level");
    var level = router.level ? String(router.level).toUpperCase() : "";
    badge.setAttribute("data-level", level);
    badge.textContent = level || "—";
    var lag = toInt(router.lag);
    setNum("router-lag", lag, fmtInt(lag));
    $("router-error").textContent = router.error ? String(router.error) : "";
    renderProcessors(bp);
    renderKv($("shed-reasons"), (bp.shed && bp.shed.by_reason) || {}, "reason", "nothing shed");
    renderBridges(Array.isArray(bp.bridges) ? bp.bridges : []);
  }

  // --- status and loop ---------------------------------------------------------------------------

  function renderStatus(errors) {
    var status = $("status");
    if (!errors.length) {
      lastOk = new Date();
      status.setAttribute("data-state", "ok");
      status.textContent = "live";
      document.body.setAttribute("data-stale", "false");
      $("updated-at").textContent = lastOk.toLocaleTimeString();
      return;
    }
    status.setAttribute("data-state", "error");
    var since = lastOk ? " · showing data from " + lastOk.toLocaleTimeString() : " · no data yet";
    status.textContent = "API error: " + errors.join("; ") + since;
    document.body.setAttribute("data-stale", lastOk ? "true" : "false");
  }

  function tick() {
    Promise.allSettled([fetchJson(STATS_URL), fetchJson(BP_URL)]).then(function (results) {
      var now = Date.now();
      var errors = [];
      // Stats first: the processor rows read per-processor counts from it.
      if (results[0].status === "fulfilled") {
        try { renderStats(results[0].value || {}, now); } catch (e) { errors.push(STATS_URL + " unreadable (" + e.message + ")"); }
      } else {
        errors.push(results[0].reason.message);
      }
      if (results[1].status === "fulfilled") {
        try { renderBackpressure(results[1].value || {}); } catch (e) { errors.push(BP_URL + " unreadable (" + e.message + ")"); }
      } else {
        errors.push(results[1].reason.message);
      }
      renderStatus(errors);
    }).finally(function () { setTimeout(tick, POLL_MS); });
  }

  $("poll-interval").textContent = POLL_MS >= 1000 ? (POLL_MS / 1000) + " s" : POLL_MS + " ms";
  tick();
})();
