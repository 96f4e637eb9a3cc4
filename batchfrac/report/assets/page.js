// batchfrac index.html: renders the JSON in #batchfrac-data. Every value goes into the
// page as text (textContent, title) or as a checked relative picture path; never as markup.
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("batchfrac-data").textContent);
  var limits = data.limits;
  var SVG = "http://www.w3.org/2000/svg";
  var SAFE_PICTURE = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9_][A-Za-z0-9._\/-]*\.png$/;

  function str(value) { return value === null || value === undefined ? "" : String(value); }
  function num(value, digits) { return typeof value === "number" ? value.toFixed(digits) : "\u2013"; }
  function el(tag, className, content) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (content !== undefined && content !== null) {
      if (Array.isArray(content)) { content.forEach(function (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); }); }
      else if (typeof content === "object") { node.appendChild(content); }
      else { node.textContent = String(content); }
    }
    return node;
  }
  // A long value: shortened on screen, the whole value on hover.
  function long(value, className) {
    var node = el("span", className || "trunc", str(value));
    node.title = str(value);
    return node;
  }
  function row(cells, className) {
    var tr = el("tr", className);
    cells.forEach(function (c) {
      var own = c instanceof Node && (c.nodeName === "TD" || c.nodeName === "TH");
      tr.appendChild(own ? c : el("td", null, c));
    });
    return tr;
  }
  function table(headers, rows, className) {
    var t = el("table", className);
    if (headers) {
      var head = el("tr");
      headers.forEach(function (h) { head.appendChild(el("th", null, h)); });
      t.appendChild(el("thead", null, head));
    }
    var body = el("tbody");
    rows.forEach(function (r) { body.appendChild(r); });
    t.appendChild(body);
    return t;
  }
  function picture(path, className, alt) {
    if (typeof path !== "string" || !SAFE_PICTURE.test(path)) { return null; }
    var img = el("img", className);
    img.alt = alt;
    img.src = path;
    return img;
  }

  // --- summary ---------------------------------------------------------------------------
  function summary() {
    var run = data.run, counts = run.counts || {}, tp = run.throughput || {};
    var box = document.getElementById("summary");
    var facts = [
      ["run", run.run_id], ["started", run.started_at], ["finished", run.finished_at],
      ["host", run.host], ["batchfrac", run.software_version],
      ["bundle", str(run.bundle.id) + (run.bundle.demo ? " (DEMO)" : "")],
      ["exit code", run.exit_code],
      ["files / rows / studies", [counts.files, counts.rows, counts.studies].map(str).join(" / ")],
      ["files reused / processed", str(counts.files_reused) + " / " + str(counts.files_processed)],
      ["images/s", num(tp.images_per_s, 2)], ["files/s", num(tp.files_per_s, 2)],
      ["wall time (s)", num(tp.wall_s, 1)], ["trunk passes per image", num(tp.trunk_passes_per_image, 3)],
      ["trunk sha256", run.bundle.trunk_sha256], ["preprocessing spec", run.spec_id], ["config id", run.config_id]
    ];
    var hm = run.heatmaps;
    if (hm) {
      facts.splice(facts.length - 3, 0, ["heatmaps", str(hm.written) + " drawn, " + str(hm.left_out) +
        " left out (--heatmaps-max), " + num(hm.seconds, 1) + " s" + (hm.method ? " (" + str(hm.method) + ")" : "")]);
    }
    if (run.bundle.demo) { facts.splice(6, 0, ["model notice", run.bundle.notice]); }
    box.appendChild(table(null, facts.map(function (f) { return row([el("th", null, f[0]), long(f[1], "trunc wide")]); }), "facts"));
    var statusRows = [];
    Object.keys(counts.status || {}).sort().forEach(function (k) { statusRows.push(row(["status", k, str(counts.status[k])])); });
    Object.keys(counts.reason || {}).sort().forEach(function (k) { statusRows.push(row(["reason", k, str(counts.reason[k])])); });
    box.appendChild(table(["", "value", "rows"], statusRows, "counts"));
    var privacy = data.privacy || {};
    box.appendChild(el("p", privacy.pseudonymised ? "privacy pseudo" : "privacy", str(privacy.note)));
  }

  function bones() {
    var rows = data.bones.map(function (b) {
      return row([b.bone, str(b.studies), str(b.abnormal), str(b.uncertain), str(b.images), num(b.threshold, 2)]);
    });
    document.getElementById("bones").appendChild(
      table(["bone", "studies", "abnormal", "uncertain", "ok images", "threshold"], rows, "numeric"));
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }
  function histograms() {
    var box = document.getElementById("histograms");
    data.bones.forEach(function (b) {
      if (!b.studies) { return; }
      var w = 240, h = 90, n = b.histogram.length, top = Math.max.apply(null, b.histogram) || 1;
      var chart = svg("svg", { width: w, height: h + 16, viewBox: "0 0 " + w + " " + (h + 16), role: "img" });
      chart.appendChild(svg("title", {})).textContent = b.bone + ": studies per probability bin";
      b.histogram.forEach(function (count, i) {
        var bh = Math.round(h * count / top);
        var bar = svg("rect", { x: i * w / n + 1, y: h - bh, width: w / n - 2, height: bh,
          "class": (i + 0.5) / n > (b.threshold === null ? 0.5 : b.threshold) ? "bar high" : "bar" });
        bar.appendChild(svg("title", {})).textContent = (i / n).toFixed(2) + "\u2013" + ((i + 1) / n).toFixed(2) + ": " + count;
        chart.appendChild(bar);
      });
      if (b.threshold !== null) {
        var x = b.threshold * w;
        chart.appendChild(svg("line", { x1: x, x2: x, y1: 0, y2: h, "class": "threshold" }));
      }
      [["0", 0, "start"], ["0.5", w / 2, "middle"], ["1", w, "end"]].forEach(function (t) {
        var label = svg("text", { x: t[1], y: h + 13, "text-anchor": t[2], "class": "axis" });
        label.textContent = t[0];
        chart.appendChild(label);
      });
      var figure = el("figure", "hist");
      figure.appendChild(chart);
      figure.appendChild(el("figcaption", null, b.bone + " (" + b.studies + " studies, max " + top + " per bin)"));
      box.appendChild(figure);
    });
  }

  // --- studies ---------------------------------------------------------------------------
  var studies = data.studies.map(function (s, i) { s.rank = i + 1; return s; });
  var state = { key: "rank", dir: 1, page: 0, bone: "", prediction: "", flag: "", text: "", open: {} };
  var COLUMNS = [
    ["rank", "#", 1], ["patient", "patient", 1], ["accession", "accession", 1], ["uid", "study", 1],
    ["bone", "bone", 1], ["p", "P(abnormal)", -1], ["threshold", "threshold", 1],
    ["prediction", "prediction", 1], ["flags", "flags", 1], ["n_images", "images", -1], ["n_errors", "errors", -1]
  ];

  function matches(s) {
    if (state.bone && s.bone !== state.bone) { return false; }
    if (state.prediction === "uncertain" && !s.uncertain) { return false; }
    if ((state.prediction === "abnormal" || state.prediction === "normal") && s.prediction !== state.prediction) { return false; }
    if (state.flag === "(none)" && s.flags.length) { return false; }
    if (state.flag && state.flag !== "(none)" && s.flags.indexOf(state.flag) < 0) { return false; }
    if (state.text) {
      var hay = (str(s.patient) + " " + str(s.accession) + " " + str(s.uid)).toLowerCase();
      if (hay.indexOf(state.text) < 0) { return false; }
    }
    return true;
  }
  function compare(a, b) {
    var x = a[state.key], y = b[state.key];
    if (Array.isArray(x)) { x = x.join(","); y = y.join(","); }
    if (x === null || x === undefined) { return (y === null || y === undefined) ? a.rank - b.rank : 1; }
    if (y === null || y === undefined) { return -1; }
    var c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return c !== 0 ? c * state.dir : a.rank - b.rank;
  }
  function options(select, values) {
    values.forEach(function (v) { var o = el("option", null, v[1]); o.value = v[0]; select.appendChild(o); });
  }
  function controls() {
    var seenBones = {}, seenFlags = {};
    studies.forEach(function (s) { seenBones[s.bone] = 1; s.flags.forEach(function (f) { seenFlags[f] = 1; }); });
    options(document.getElementById("f-bone"), [["", "all bones"]].concat(Object.keys(seenBones).sort().map(function (b) { return [b, b]; })));
    options(document.getElementById("f-prediction"), [["", "all predictions"], ["abnormal", "abnormal"], ["uncertain", "uncertain"], ["normal", "normal"]]);
    options(document.getElementById("f-flag"), [["", "any flags"], ["(none)", "no flags"]].concat(Object.keys(seenFlags).sort().map(function (f) { return [f, f]; })));
    [["f-bone", "bone"], ["f-prediction", "prediction"], ["f-flag", "flag"]].forEach(function (pair) {
      document.getElementById(pair[0]).addEventListener("change", function (e) { state[pair[1]] = e.target.value; state.page = 0; render(); });
    });
    document.getElementById("f-text").addEventListener("input", function (e) { state.text = e.target.value.trim().toLowerCase(); state.page = 0; render(); });
    document.getElementById("expand").addEventListener("click", function () { visible().forEach(function (s) { state.open[s.rank] = true; }); render(); });
    document.getElementById("collapse").addEventListener("click", function () { state.open = {}; render(); });
    document.getElementById("prev").addEventListener("click", function () { state.page -= 1; render(); });
    document.getElementById("next").addEventListener("click", function () { state.page += 1; render(); });
    var head = document.getElementById("studies-head");
    COLUMNS.forEach(function (c) {
      var button = el("button", "sort", c[1]);
      button.type = "button";
      button.dataset.key = c[0];
      button.addEventListener("click", function () {
        if (state.key === c[0]) { state.dir = -state.dir; } else { state.key = c[0]; state.dir = c[2]; }
        render();
      });
      head.appendChild(el("th", null, button));
    });
  }
  var current = [];
  function visible() { return current.slice(state.page * limits.page_size, (state.page + 1) * limits.page_size); }

  function render() {
    current = studies.filter(matches).sort(compare);
    var pages = Math.max(1, Math.ceil(current.length / limits.page_size));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    var body = document.getElementById("studies-body");
    body.textContent = "";
    visible().forEach(function (s) {
      var p = el("td", "num", num(s.p, 3));
      var pred = el("td", "pred " + s.prediction, s.prediction + (s.uncertain ? " (uncertain)" : ""));
      var tr = row([str(s.rank), long(s.patient), long(s.accession), long(s.uid), s.bone, p,
        num(s.threshold, 2), pred, long(s.flags.join(", ")), str(s.n_images), str(s.n_errors)],
        "study" + (s.prediction === "abnormal" ? " abnormal" : "") + (s.uncertain ? " uncertain" : ""));
      tr.tabIndex = 0;
      tr.dataset.rank = String(s.rank);
      function toggle() { state.open[s.rank] = !state.open[s.rank]; render(); }
      tr.addEventListener("click", toggle);
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { toggle(); } });
      body.appendChild(tr);
      if (state.open[s.rank]) { body.appendChild(detail(s)); }
    });
    Array.prototype.forEach.call(document.querySelectorAll("#studies-head button"), function (b) {
      b.className = "sort" + (b.dataset.key === state.key ? (state.dir > 0 ? " up" : " down") : "");
    });
    var first = current.length ? state.page * limits.page_size + 1 : 0;
    document.getElementById("page").textContent = "studies " + first + "\u2013" +
      Math.min(current.length, (state.page + 1) * limits.page_size) + " of " + current.length +
      " shown (page " + (state.page + 1) + " of " + pages + ")";
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
  }

  function detail(s) {
    var td = el("td");
    td.colSpan = COLUMNS.length;
    if (!s.images) {
      td.appendChild(el("p", "note", "Images of this study are not embedded (only the first " + limits.detailed_studies + " studies in priority order are); see images.parquet."));
    } else if (!s.images.length) {
      td.appendChild(el("p", "note", "No image rows are linked to this study (it has no Study Instance UID)."));
    }
    var cards = el("div", "cards");
    (s.images || []).forEach(function (im) {
      var card = el("div", "card"), pics = el("div", "pics");
      var thumb = picture(im.thumbnail, "thumb", "thumbnail");
      pics.appendChild(thumb || el("div", "nothumb", im.status === "ok" ? "no thumbnail" : str(im.reason)));
      var heat = picture(im.heatmap, "heat", "heatmap");
      if (heat) {
        var link = el("a", null, heat);
        link.href = im.heatmap;
        link.title = "heatmap: open full size";
        pics.appendChild(link);
      }
      card.appendChild(pics);
      var mismatch = im.flags.indexOf("bodypart_mismatch") >= 0;
      var facts = [
        ["file", long(im.path + (im.frame ? " [frame " + im.frame + "]" : ""))],
        ["status", im.status + (im.reason ? " (" + im.reason + ")" : "")],
        ["view", str(im.view) + " " + str(im.laterality)],
        ["router bone", str(im.bone) + (im.bone_confidence === null ? "" : " (" + num(im.bone_confidence, 2) + ")")],
        ["BodyPartExamined", el("span", mismatch ? "mismatch" : null, im.body_part === null ? "(none)" : str(im.body_part))],
        ["P(abnormal)", num(im.p, 3)],
        ["flags", long(im.flags.join(", "))]
      ];
      if (im.peak) { facts.push(["heatmap peak", "x " + im.peak[0] + ", y " + im.peak[1]]); }
      var dl = el("dl");
      facts.forEach(function (f) { dl.appendChild(el("dt", null, f[0])); dl.appendChild(el("dd", null, f[1])); });
      card.appendChild(dl);
      cards.appendChild(card);
    });
    td.appendChild(cards);
    if (s.images_omitted) { td.appendChild(el("p", "note", s.images_omitted + " more images of this study are in images.parquet.")); }
    return el("tr", "detail", td);
  }

  // --- body parts and errors -------------------------------------------------------------
  function bodyParts() {
    var rows = data.body_parts.map(function (r) {
      var part = r.other ? "(other body parts)" : (r.body_part === null ? "(none)" : r.body_part);
      return row([long(part), str(r.bone), str(r.images), str(r.mismatched)], r.mismatched ? "mismatch" : null);
    });
    document.getElementById("bodyparts").appendChild(
      table(["BodyPartExamined", "router bone", "ok images", "flagged bodypart_mismatch"], rows, "numeric"));
  }
  function errors() {
    var box = document.getElementById("errors");
    var rows = data.errors.map(function (e) {
      return row([long(e.path, "wrap"), str(e.frame), str(e.reason), long(e.detail, "wrap")]);
    });
    box.appendChild(rows.length ? table(["file", "frame", "reason", "detail"], rows, "errors") : el("p", null, "No file is in error."));
    if (data.totals.errors > data.errors.length) {
      box.appendChild(el("p", "note", "The first " + data.errors.length + " of " + data.totals.errors + " files in error are listed (by path); every one is in images.parquet."));
    }
  }

  function notes() {
    var t = data.totals, box = document.getElementById("caps");
    var text = "Listed: " + t.listed + " of " + t.studies + " studies, in priority order (abnormal, then uncertain: |P \u2212 threshold| < " +
      limits.uncertain_margin + ", then the rest; each by descending probability), " + limits.page_size + " a page; the first " +
      t.detailed + " with their images. Sorting and filters apply to the listed studies.";
    if (t.studies > t.listed) { text += " " + (t.studies - t.listed) + " studies are not listed here (this page lists at most " + limits.listed_studies + "): see studies.parquet or studies.csv."; }
    if (t.unsafe_pictures) { text += " " + t.unsafe_pictures + " picture references were not shown (not a plain relative .png path)."; }
    box.textContent = text;
  }

  summary();
  bones();
  histograms();
  controls();
  notes();
  render();
  bodyParts();
  errors();
  document.body.classList.add("ready");
})();
