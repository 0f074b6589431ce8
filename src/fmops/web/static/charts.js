// Dashboards: fetch the stats of the chosen range and draw them with uPlot (vendored, no CDN).
// The page paints first with empty charts; data arrives from <div data-dashboard data-source="...">.
// Every text from the server (group names, score names) goes in with textContent, never as HTML.
(function () {
  "use strict";

  var COLORS = ["#3b5bdb", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d"];
  var BAD = "#e03131";
  var HEIGHT = 220;

  // The page's colour for axes and grid lines (app.css: light or dark, following the system).
  function themed(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function compact(n) {
    if (n == null || isNaN(n)) return "–";
    var a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(1) + "B";
    if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
    if (a >= 100 || Number.isInteger(n)) return Math.round(n).toLocaleString();
    return n.toFixed(a >= 10 ? 1 : 2);
  }
  function money(n) {
    if (n == null) return "–";
    if (n === 0) return "$0";
    return "$" + (Math.abs(n) >= 100 ? Math.round(n).toLocaleString() : Math.abs(n) >= 1 ? n.toFixed(2) : n.toPrecision(2));
  }
  function percent(n) {
    if (n == null) return "–";
    var p = n * 100;
    return (Math.abs(p - Math.round(p)) < 0.05 ? Math.round(p) : p.toFixed(1)) + "%";
  }
  function ms(n) { return n == null ? "–" : compact(n) + " ms"; }
  var UNITS = { count: compact, ms: compact, money: money, share: percent, score: function (n) { return n == null ? "–" : n.toFixed(2); } };

  // What each chart plots: [field, label, unit (its y axis), color].
  var CHARTS = {
    volume: [["volume", "Requests", "count", COLORS[0]], ["errors", "Errors", "count", BAD]],
    latency: [["latency_p50_ms", "p50", "ms", COLORS[0]], ["latency_p95_ms", "p95", "ms", COLORS[1]], ["latency_p99_ms", "p99", "ms", BAD]],
    ttft: [["ttft_p50_ms", "p50", "ms", COLORS[0]], ["ttft_p95_ms", "p95", "ms", COLORS[1]]],
    tokens: [["input_tokens", "Input", "count", COLORS[0]], ["output_tokens", "Output", "count", COLORS[2]]],
    cost: [["cost", "Cost", "money", COLORS[3]]],
    feedback: [["feedback_count", "Feedback given", "count", COLORS[4]], ["feedback_positive_share", "Thumbs up share", "share", COLORS[2]]],
  };

  function yRange(unit) {
    return function (u, min, max) {
      if (unit === "share") return [0, 1];
      var low = min == null ? 0 : Math.min(0, min);
      var high = max == null || max <= low ? low + 1 : max * 1.1;
      return [low, high];
    };
  }

  // One uPlot chart: series = [{label, values, unit, color}] over `times` (epoch seconds).
  function draw(el, times, series, bucketSeconds) {
    var units = [];
    series.forEach(function (s) { if (units.indexOf(s.unit) < 0) units.push(s.unit); });
    var scales = { x: { time: true, range: [times[0], times[times.length - 1] + bucketSeconds] } };
    var ink = themed("--muted", "#667085"), gridline = themed("--chart-grid", "#eef0f3");
    var axes = [{ stroke: ink, grid: { stroke: gridline } }];
    units.forEach(function (unit, i) {
      scales[unit] = { range: yRange(unit) };
      axes.push({
        scale: unit, side: i === 0 ? 3 : 1, size: 56, stroke: ink,
        grid: { show: i === 0, stroke: gridline },
        values: function (u, ticks) { return ticks.map(UNITS[unit]); },
      });
    });
    var few = times.length <= 60;
    var opts = {
      width: Math.max(240, el.clientWidth), height: HEIGHT, scales: scales, axes: axes,
      cursor: { points: { size: 6 } }, legend: { live: true },
      series: [{}].concat(series.map(function (s) {
        return {
          label: s.label, scale: s.unit, stroke: s.color, width: 2, spanGaps: false,
          fill: series.length === 1 ? s.color + "22" : undefined,
          points: { show: few, size: 4 },
          value: function (u, v) { return UNITS[s.unit](v); },
        };
      })),
    };
    var data = [times].concat(series.map(function (s) { return s.values; }));
    return new uPlot(opts, data, el);
  }

  function hasData(series) {
    return series.some(function (s) { return s.values.some(function (v) { return v != null && v !== 0; }); });
  }

  function Dashboard(root, form) {
    this.root = root;
    this.form = form;
    this.plots = [];
    this.request = 0;
    var self = this;
    form.addEventListener("change", function () { self.load(); });
    form.addEventListener("submit", function (event) { event.preventDefault(); self.load(); });
    if (window.ResizeObserver) {
      var pending = null;
      new ResizeObserver(function () {
        clearTimeout(pending);
        pending = setTimeout(function () {
          self.plots.forEach(function (p) { p.plot.setSize({ width: Math.max(240, p.el.clientWidth), height: HEIGHT }); });
        }, 100);
      }).observe(root);
    }
  }

  Dashboard.prototype.params = function () {
    var params = new URLSearchParams(new FormData(this.form));
    this.form.querySelectorAll(".segmented label").forEach(function (label) {
      label.classList.toggle("checked", label.querySelector("input").checked);
    });
    return params;
  };

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) throw new Error((body.error && body.error.message) || "the dashboard data could not be loaded");
        return body;
      });
    });
  }

  // The series and the breakdown are fetched side by side: the charts draw as soon as theirs arrive.
  Dashboard.prototype.load = function () {
    var self = this;
    var params = this.params();
    var range = params.get("range") || "24h", by = params.get("by") || "";
    var mine = ++this.request; // a slow 30-day answer must not overwrite a newer 1-hour one
    history.replaceState(null, "", "?" + params.toString());
    this.root.setAttribute("aria-busy", "true");
    this.root.setAttribute("data-state", "loading");
    this.pendingGroups(by);
    var source = this.root.getAttribute("data-source");
    var series = getJSON(source + "/data?" + new URLSearchParams({ range: range }).toString());
    var groups = by ? getJSON(source + "/groups?" + new URLSearchParams({ range: range, by: by }).toString()) : Promise.resolve(null);
    series.then(function (body) { if (mine === self.request) self.render(body); }, function () {});
    Promise.all([series, groups]).then(function (both) {
      if (mine !== self.request) return;
      self.renderGroups(both[1]);
      self.root.setAttribute("aria-busy", "false");
      self.root.setAttribute("data-state", "ready");
      if (window.performance && performance.mark) performance.mark("fmops:dashboard-ready");
    }).catch(function (error) {
      if (mine === self.request) self.fail(error.message || String(error));
    });
  };

  Dashboard.prototype.fail = function (message) {
    var flash = document.getElementById("flash");
    var p = document.createElement("p");
    p.className = "flash error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    flash.replaceChildren(p);
    this.root.setAttribute("aria-busy", "false");
    this.root.setAttribute("data-state", "error");
  };

  Dashboard.prototype.render = function (body) {
    var root = this.root;
    document.getElementById("flash").replaceChildren();
    this.plots.forEach(function (p) { p.plot.destroy(); });
    this.plots = [];
    var start = new Date(body.start), end = new Date(body.end);
    root.querySelector("[data-range-text]").textContent =
      start.toLocaleString() + " – " + end.toLocaleString() + " · one point per " + body.bucket;
    this.totals(body.total, body.approximate);

    var columns = body.columns;
    var charts = {};
    // Long ranges read hourly roll-ups: their percentiles are within 1%, shown as "≈ p95".
    var about = body.approximate ? "≈ " : "";
    Object.keys(CHARTS).forEach(function (key) {
      charts[key] = CHARTS[key].map(function (c) {
        return { label: (c[2] === "ms" ? about : "") + c[1], values: columns[c[0]], unit: c[2], color: c[3] };
      });
    });
    charts.scores = Object.keys(body.scores).map(function (name, i) {
      return { label: name, values: body.scores[name], unit: "score", color: COLORS[i % COLORS.length] };
    });
    // Blocks and flags per guardrail policy (the busiest pairs; the page's /data sends them).
    charts.guardrails = ((body.guardrails && body.guardrails.series) || []).map(function (g, i) {
      return { label: g.label, values: g.values, unit: "count", color: COLORS[i % COLORS.length] };
    });
    this.bucketSeconds = body.bucket_seconds;
    this.drawAll(charts, body.times);
    if (window.performance && performance.mark) performance.mark("fmops:charts-drawn"); // read by benchmarks
  };

  Dashboard.prototype.drawAll = function (charts, times) {
    var self = this;
    Object.keys(charts).forEach(function (key) {
      var el = self.root.querySelector('[data-chart="' + key + '"]');
      if (!el || el.closest(".hidden")) return;
      var series = charts[key];
      el.querySelector("[data-empty]").classList.toggle("hidden", hasData(series));
      if (!series.length) series = [{ label: "–", values: times.map(function () { return null; }), unit: "score", color: COLORS[0] }];
      if (!times.length) return;
      self.plots.push({ el: el, plot: draw(el, times, series, self.bucketSeconds || 3600) });
    });
  };

  // While the breakdown is counted: its card and charts show, marked as loading.
  Dashboard.prototype.pendingGroups = function (by) {
    var card = this.root.querySelector("[data-breakdown]");
    card.classList.toggle("hidden", !by);
    this.root.querySelectorAll(".chart-card.grouped").forEach(function (c) { c.classList.toggle("hidden", !by); });
    if (!by) return;
    var select = this.form.querySelector("select[name=by]");
    card.querySelector("[data-breakdown-by]").textContent = select.options[select.selectedIndex].text.toLowerCase();
    card.querySelector("[data-breakdown-count]").textContent = "";
    this.message(card, "Counting…");
  };

  Dashboard.prototype.message = function (card, text) {
    var tr = document.createElement("tr"), td = document.createElement("td");
    td.colSpan = 10;
    td.className = "muted";
    td.textContent = text;
    tr.appendChild(td);
    card.querySelector("[data-breakdown-rows]").replaceChildren(tr);
  };

  Dashboard.prototype.renderGroups = function (groups) {
    if (!groups) return;
    var cards = this.root.querySelectorAll(".chart-card.grouped");
    cards.forEach(function (c) { c.classList.toggle("hidden", !groups.series.length); });
    var color = function (i) { return COLORS[i % COLORS.length]; };
    this.drawAll({
      group_volume: groups.series.map(function (g, i) { return { label: g.label, values: g.volume, unit: "count", color: color(i) }; }),
      group_latency: groups.series.map(function (g, i) { return { label: g.label, values: g.latency_p95_ms, unit: "ms", color: color(i) }; }),
    }, groups.times);
    this.breakdown(groups);
  };

  Dashboard.prototype.totals = function (total, approximate) {
    var about = approximate ? "≈ " : "";  // percentiles from hourly roll-ups
    var shown = {
      volume: compact(total.volume),
      error_rate: percent(total.error_rate),
      latency_p95_ms: (total.latency_p95_ms == null ? "" : about) + ms(total.latency_p95_ms),
      ttft_p50_ms: (total.ttft_p50_ms == null ? "" : about) + ms(total.ttft_p50_ms),
      tokens: compact(total.input_tokens + total.output_tokens),
      cost: money(total.cost),
      feedback_positive_share: percent(total.feedback_positive_share),
      feedback_count: compact(total.feedback_count),
    };
    this.root.querySelectorAll("[data-total]").forEach(function (el) { el.textContent = shown[el.getAttribute("data-total")]; });
  };

  Dashboard.prototype.breakdown = function (groups) {
    var card = this.root.querySelector("[data-breakdown]");
    var count = groups.count;
    card.querySelector("[data-breakdown-count]").textContent =
      "(" + (count > groups.rows.length ? "busiest " + groups.rows.length + " of " : "") + count + (count === 1 ? " group)" : " groups)");
    if (!groups.rows.length) return this.message(card, "No requests in this range.");
    var rows = groups.rows.map(function (r) {
      var tr = document.createElement("tr");
      var cells = [
        [r.label, false], [compact(r.volume), true],
        [compact(r.errors) + (r.error_rate ? " (" + percent(r.error_rate) + ")" : ""), true],
        [compact(r.latency_p50_ms), true], [compact(r.latency_p95_ms), true], [compact(r.ttft_p50_ms), true],
        [compact(r.input_tokens) + " / " + compact(r.output_tokens), true], [money(r.cost), true],
        [percent(r.feedback_positive_share), true], [compact(r.feedback_count), true],
      ];
      cells.forEach(function (c) {
        var td = document.createElement("td");
        td.textContent = c[0];
        if (c[1]) td.className = "num";
        tr.appendChild(td);
      });
      return tr;
    });
    var body = card.querySelector("[data-breakdown-rows]");
    body.replaceChildren.apply(body, rows);
  };

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-dashboard]");
    var form = document.getElementById("dashboard-form");
    if (!root || !form || !window.uPlot) return;
    new Dashboard(root, form).load();
  });
})();
