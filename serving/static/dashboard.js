// The creator dashboard: reads GET /v1/creators/{id}/dashboard and draws every chart as inline SVG.
// No library, no CDN, no web font: the page works offline. When everything is drawn it sets
// document.body.dataset.ready = "1" ("error" when the dashboard could not be read at all).
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var DAY_CHOICES = [7, 28, 90];
  var DEFAULT_DAYS = 28;
  var COLORS = {
    views: "#3b5bdb", unique_viewers: "#f08c00",
    likes: "#d6336c", shares: "#0ca678", comments: "#7048e8",
    bar: "#4c6ef5", high: "#e03131", medium: "#f08c00", low: "#74819a"
  };
  var uid = 0;

  // --- formatting ----------------------------------------------------------------------------------
  function fmt(n) {
    if (n === null || n === undefined || isNaN(n)) return "–";
    var abs = Math.abs(n);
    var units = [[1e9, "B"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) {
      if (abs >= units[i][0]) {
        var v = n / units[i][0];
        return (Math.abs(v) >= 100 ? Math.round(v) : +v.toFixed(1)) + units[i][1];
      }
    }
    return abs >= 10 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
  }
  function exact(n) { return Math.round(n).toLocaleString("en-US"); }
  function pct(x) {
    var p = x * 100;
    return (p > 0 && p < 1 ? p.toFixed(1) : String(Math.round(p))) + "%";
  }
  // [number, unit] of a watch time ("2.8", "min")
  function duration(seconds) {
    if (seconds >= 3600) return [fmt(seconds / 3600), "h"];
    if (seconds >= 60) return [fmt(seconds / 60), "min"];
    return [fmt(seconds), "s"];
  }
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function shortDate(iso) {  // "2026-06-01" -> "1 Jun"
    var p = iso.slice(0, 10).split("-");
    return +p[2] + " " + MONTHS[+p[1] - 1];
  }
  function longDate(iso) { return shortDate(iso) + " " + iso.slice(0, 4); }
  function capitalize(text) { return text.charAt(0).toUpperCase() + text.slice(1); }
  function truncate(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  // --- DOM helpers ---------------------------------------------------------------------------------
  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function s(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
    });
  }
  function append(node, children) {
    [].concat(children === undefined ? [] : children).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
  }
  function notice(container, text, kind) {
    container.replaceChildren(h("p", { "class": "notice " + (kind || "") }, text));
  }
  // an SVG with a title and a description that screen readers announce as one image
  function svgRoot(width, height, title, desc) {
    var id = "chart-" + (++uid);
    return s("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
                      "aria-labelledby": id + "-title " + id + "-desc" }, [
      s("title", { id: id + "-title" }, title),
      s("desc", { id: id + "-desc" }, desc)
    ]);
  }
  // 0 .. a round maximum above ``max``, in ``count`` equal steps
  function niceTicks(max, count) {
    if (!(max > 0)) return [0, 1];
    var raw = max / count;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; }).find(function (v) { return v >= raw; });
    step = Math.max(step, 1);
    var ticks = [];
    for (var v = 0; v < max + step * 0.999; v += step) ticks.push(v);
    return ticks;
  }

  // --- charts --------------------------------------------------------------------------------------
  // One line per series over the days of ``dates`` (a point per day, with its value in a tooltip).
  function lineChart(container, opts) {
    var W = 640, H = 250, left = 46, right = 14, top = 10, bottom = 28;
    var dates = opts.dates, n = dates.length;
    var max = Math.max.apply(null, opts.series.map(function (sr) { return Math.max.apply(null, sr.values.concat([0])); }));
    var ticks = niceTicks(max, 4), yMax = ticks[ticks.length - 1];
    var x = function (i) { return left + (n === 1 ? (W - left - right) / 2 : i * (W - left - right) / (n - 1)); };
    var y = function (v) { return top + (H - top - bottom) * (1 - v / yMax); };
    var summary = opts.series.map(function (sr) {
      var total = sr.values.reduce(function (a, b) { return a + b; }, 0);
      var peak = sr.values.indexOf(Math.max.apply(null, sr.values));
      return sr.label + ": " + exact(total) + " in total, peak " + exact(sr.values[peak]) + " on " + longDate(dates[peak]);
    }).join("; ");
    var root = svgRoot(W, H, opts.title, n + " days from " + longDate(dates[0]) + " to " + longDate(dates[n - 1]) +
                       ". " + summary + ".");
    ticks.forEach(function (t) {
      root.appendChild(s("line", { "class": t === 0 ? "axis" : "gridline", x1: left, x2: W - right, y1: y(t), y2: y(t) }));
      root.appendChild(s("text", { x: left - 8, y: y(t) + 4, "text-anchor": "end" }, fmt(t)));
    });
    var every = Math.max(1, Math.ceil(n / 7));
    dates.forEach(function (d, i) {
      if ((n - 1 - i) % every === 0) {
        var anchor = n > 1 && i === n - 1 ? "end" : n > 1 && i === 0 ? "start" : "middle";
        root.appendChild(s("text", { x: x(i), y: H - 8, "text-anchor": anchor }, shortDate(d)));
      }
    });
    opts.series.forEach(function (sr, k) {
      var g = s("g", { "data-series": sr.key, "aria-hidden": "true" });
      var pts = sr.values.map(function (v, i) { return x(i).toFixed(1) + "," + y(v).toFixed(1); });
      if (opts.area && k === 0 && n > 1) {  // a light area under the first series
        g.appendChild(s("path", { d: "M" + x(0) + "," + y(0) + " L" + pts.join(" L") + " L" + x(n - 1) + "," + y(0) + "Z",
                                  fill: sr.color, "fill-opacity": "0.08" }));
      }
      g.appendChild(s("polyline", { points: pts.join(" "), fill: "none", stroke: sr.color, "stroke-width": 2,
                                    "stroke-linejoin": "round", "stroke-linecap": "round" }));
      sr.values.forEach(function (v, i) {
        g.appendChild(s("circle", { cx: x(i), cy: y(v), r: n > 60 ? 1.6 : 2.6, fill: "#fff", stroke: sr.color,
                                    "stroke-width": 1.6, "data-value": v },
                        s("title", {}, longDate(dates[i]) + ": " + exact(v) + " " + sr.label.toLowerCase())));
      });
      root.appendChild(g);
    });
    var legend = h("ul", { "class": "legend" }, opts.series.map(function (sr) {
      var total = sr.values.reduce(function (a, b) { return a + b; }, 0);
      return h("li", {}, [h("span", { "class": "swatch", style: "background:" + sr.color }), sr.label,
                          h("span", { "class": "total", title: exact(total) }, fmt(total))]);
    }));
    // the same numbers as a table, for readers who cannot see the chart
    var table = h("table", { "class": "data-table" }, [
      h("thead", {}, h("tr", {}, [h("th", { scope: "col" }, "Day")].concat(opts.series.map(function (sr) {
        return h("th", { scope: "col" }, sr.label);
      })))),
      h("tbody", {}, dates.map(function (d, i) {
        return h("tr", {}, [h("td", {}, longDate(d))].concat(opts.series.map(function (sr) {
          return h("td", {}, exact(sr.values[i]));
        })));
      }))
    ]);
    container.replaceChildren(legend, root, h("details", { "class": "data" }, [h("summary", {}, "Data table"), table]));
  }

  // Horizontal bars: one row per item (label, bar, value text), scaled to ``max`` (default: the largest value).
  function barChart(container, opts) {
    var items = opts.items;
    var W = 360, labelW = opts.labelWidth || 72, valueW = 84, row = 26, top = 4;
    var H = top * 2 + row * items.length;
    var max = opts.max || Math.max.apply(null, items.map(function (it) { return it.value; }).concat([0])) || 1;
    var barW = W - labelW - valueW;
    var root = svgRoot(W, H, opts.title, items.map(function (it) { return it.label + ": " + it.text; }).join("; ") + ".");
    items.forEach(function (it, i) {
      var yTop = top + i * row, w = Math.max(it.value > 0 ? 2 : 0, barW * it.value / max);
      var g = s("g", { "class": "bar", "data-label": it.key || it.label, "data-value": it.value });
      g.appendChild(s("text", { "class": "bar-label", x: labelW - 8, y: yTop + row / 2 + 4, "text-anchor": "end" },
                      truncate(it.label, opts.labelChars || 12)));
      g.appendChild(s("rect", { "class": "track", x: labelW, y: yTop + 5, width: barW, height: row - 10, rx: 3 }));
      g.appendChild(s("rect", { x: labelW, y: yTop + 5, width: w.toFixed(1), height: row - 10, rx: 3,
                                fill: it.color || opts.color || COLORS.bar }));
      g.appendChild(s("text", { "class": "value-label", x: labelW + barW + 8, y: yTop + row / 2 + 4 }, it.text));
      g.appendChild(s("title", {}, it.tooltip || it.label + ": " + it.text));
      root.appendChild(g);
    });
    container.replaceChildren(root);
  }

  // --- sections ------------------------------------------------------------------------------------
  // true when a section can be drawn; otherwise its containers say why (not built yet, or nothing to show)
  function drawable(containers, section, emptyText, isEmpty) {
    containers.forEach(function (box) {
      if (section.status === "not_built") notice(box, capitalize(section.message) + ".", "not-built");
      else if (isEmpty) notice(box, emptyText, "empty");
    });
    return section.status === "ok" && !isEmpty;
  }

  function renderTotals(container, totals) {
    if (!drawable([container], totals, "", false)) return;
    var net = totals.followers_gained - totals.followers_lost, watch = duration(totals.watch_time_s);
    var tiles = [
      ["Views", fmt(totals.views), exact(totals.views) + " views"],
      ["Reach", fmt(totals.unique_viewers), "daily viewers, summed"],
      ["Likes", fmt(totals.likes), exact(totals.likes)],
      ["Shares", fmt(totals.shares), exact(totals.shares)],
      ["Comments", fmt(totals.comments), exact(totals.comments)],
      ["Engagement", pct(totals.engagement_rate), "interactions per view"],
      ["Completion", pct(totals.completion_rate), "watched to 90%"],
      ["Followers", (net > 0 ? "+" : "") + fmt(net), "+" + exact(totals.followers_gained) + " / −" + exact(totals.followers_lost)],
      ["Watch time", [watch[0], h("small", {}, " " + watch[1])], "total"]
    ];
    container.replaceChildren.apply(container, tiles.map(function (t) {
      return h("div", { "class": "tile", "data-total": t[0].toLowerCase().replace(" ", "_") }, [
        h("p", { "class": "label" }, t[0]), h("p", { "class": "value" }, t[1]), h("p", { "class": "sub" }, t[2])
      ]);
    }));
  }

  function renderSeries(series, days) {
    var reach = document.getElementById("chart-reach"), eng = document.getElementById("chart-engagement");
    var rows = series.rows || [];
    var quiet = rows.every(function (r) { return r.views + r.likes + r.shares + r.comments === 0; });
    var emptyText = "No views or engagement in the last " + days + " days.";
    if (!drawable([reach, eng], series, emptyText, quiet)) return;
    var dates = rows.map(function (r) { return r.bucket; });
    var pick = function (key, label) {
      return { key: key, label: label, color: COLORS[key], values: rows.map(function (r) { return r[key]; }) };
    };
    lineChart(reach, { title: "Daily views and reach", dates: dates, area: true,
                       series: [pick("views", "Views"), pick("unique_viewers", "Reach")] });
    lineChart(eng, { title: "Daily likes, shares and comments", dates: dates,
                     series: [pick("likes", "Likes"), pick("shares", "Shares"), pick("comments", "Comments")] });
  }

  function renderTopPosts(container, top, days) {
    if (!drawable([container], top, "No post was viewed in the last " + days + " days.", !(top.rows || []).length)) return;
    var cols = [["views", "Views"], ["unique_viewers", "Reach"], ["likes", "Likes"], ["shares", "Shares"],
                ["comments", "Comments"]];
    var table = h("table", { "class": "data-table", id: "top-posts-table" }, [
      h("caption", { "class": "sr-only" }, "Top posts by views"),
      h("thead", {}, h("tr", {}, [h("th", { scope: "col" }, "#"), h("th", { scope: "col" }, "Post")]
        .concat(cols.map(function (c) { return h("th", { scope: "col" }, c[1]); }))
        .concat([h("th", { scope: "col" }, "Engagement")]))),
      h("tbody", {}, top.rows.map(function (p, i) {
        return h("tr", { "data-post-id": p.post_id }, [
          h("td", { "class": "rank" }, String(i + 1)),
          h("td", {}, [h("code", {}, p.post_id)].concat(
            p.alt_text ? [h("div", { "class": "alt-text" }, p.alt_text)] : []))
        ].concat(cols.map(function (c) { return h("td", { title: exact(p[c[0]]) }, fmt(p[c[0]])); }))
         .concat([h("td", {}, pct(p.engagement_rate))]));
      }))
    ]);
    container.replaceChildren(h("div", { "class": "table-scroll" }, table));
  }

  function renderVirality(container, vir) {
    if (!drawable([container], vir, "No recent post has a prediction yet.", !(vir.rows || []).length)) return;
    var top = "the top " + pct(vir.top_share) + " of 7-day reach";
    document.getElementById("virality-hint").textContent =
      "Chance that each recent post reaches " + top + "; red from " + pct(vir.likely) + " (likely viral)";
    barChart(container, {
      title: "Predicted virality of recent posts", max: 1, labelWidth: 96,
      items: vir.rows.map(function (r) {
        var p = r.probability;
        var color = p >= vir.likely ? COLORS.high : p >= vir.likely / 2.5 ? COLORS.medium : COLORS.low;
        return { key: r.post_id, label: r.post_id, value: p, text: pct(p), color: color,
                 tooltip: r.post_id + " (posted " + longDate(r.post_created_at) + "): " + pct(p) + " chance of " + top +
                          ", seen after " + fmt(r.observed_hours) + " h with " + exact(r.views_so_far) + " views" };
      })
    });
  }

  function renderAudience(countryBox, ageBox, aud) {
    var byCountry = aud.by_country || [], byAge = aud.by_age_band || [];
    var none = !byCountry.some(function (r) { return r.views > 0; });
    var emptyText = "No audience figures for this window yet.";
    if (!drawable([countryBox, ageBox], aud, emptyText, none)) return;
    var bars = function (rows, key, title) {
      return { title: title, items: rows.map(function (r) {
        var name = r[key] === "other" ? "Other" : r[key] === "unknown" ? "Unknown"
          : key === "country" ? r[key].toUpperCase() : r[key];
        return { key: r[key], label: name, value: r.views, text: fmt(r.views) + " · " + pct(r.share),
                 tooltip: name + ": " + exact(r.views) + " views (" + pct(r.share) + "), " +
                          exact(r.unique_viewers) + " viewers" };
      }) };
    };
    barChart(countryBox, bars(byCountry, "country", "Views by country"));
    barChart(ageBox, bars(byAge, "age_band", "Views by age band"));
  }

  // --- page ----------------------------------------------------------------------------------------
  function creatorId() {
    var parts = location.pathname.replace(/\/+$/, "").split("/");
    return decodeURIComponent(parts[parts.length - 1]);
  }

  function chosenDays() {
    var d = parseInt(new URLSearchParams(location.search).get("days"), 10);
    return d >= 1 && d <= 366 ? d : DEFAULT_DAYS;
  }

  function renderNav(days) {
    var nav = document.getElementById("days-nav");
    nav.replaceChildren.apply(nav, DAY_CHOICES.map(function (d) {
      return h("a", { href: "?days=" + d, "aria-current": d === days ? "page" : null }, d + " days");
    }));
  }

  function render(data) {
    document.getElementById("window-text").textContent =
      "Last " + data.days + " days · " + longDate(data.from) + " – " + longDate(
        new Date(Date.parse(data.to) - 864e5).toISOString()) + " (UTC)";
    renderTotals(document.getElementById("totals"), data.totals);
    renderSeries(data.series, data.days);
    renderTopPosts(document.getElementById("top-posts"), data.top_posts, data.days);
    renderVirality(document.getElementById("chart-virality"), data.virality);
    renderAudience(document.getElementById("chart-country"), document.getElementById("chart-age"), data.audience);
  }

  // the bearer token: handed over once in the address's fragment (#token=..., never sent to a server, removed
  // from the address at once), then kept for this tab in sessionStorage
  var TOKEN_KEY = "socialpulse.token";
  function bearerToken() {
    var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function main() {
    var id = creatorId(), days = chosenDays(), token = bearerToken();
    document.getElementById("creator-name").textContent = "@" + id;
    document.title = id + " · Creator dashboard · SocialPulse";
    renderNav(days);
    if (!token) {
      var box = document.getElementById("page-error");
      box.textContent = "Sign in first: open this page with #token=<your token> at the end of its address " +
        "(a development token: socialpulse auth token --user " + id + ").";
      box.hidden = false;
      document.body.dataset.ready = "error";
      return;
    }
    fetch("/v1/creators/" + encodeURIComponent(id) + "/dashboard?days=" + days,
          { headers: { Accept: "application/json", Authorization: "Bearer " + token } })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) throw new Error(body.error || "the dashboard could not be read (HTTP " + r.status + ")");
          return body;
        });
      })
      .then(function (data) {
        render(data);
        document.body.dataset.ready = "1";
      })
      .catch(function (err) {
        var box = document.getElementById("page-error");
        box.textContent = "The dashboard is unavailable: " + err.message;
        box.hidden = false;
        document.body.dataset.ready = "error";
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
