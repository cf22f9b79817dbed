/* evalharness report: sortable tables, the sample browser and the run diff.
   Sample data lives in JSON script blocks (type application/json), parsed per task on first use.
   Everything from the data is put on the page with textContent, never as HTML. */
(function () {
  "use strict";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(x) {
    if (x === null || x === undefined) return "–";
    var a = Math.abs(x);
    if (a >= 1000) return Math.round(x).toLocaleString("en");
    if (a >= 10) return x.toFixed(2);
    return x.toFixed(4);
  }
  var colors = JSON.parse(document.getElementById("run-colors").textContent);
  var taskIndex = JSON.parse(document.getElementById("task-index").textContent);
  var cache = {};
  function taskData(i) {
    if (!cache[i]) cache[i] = JSON.parse(document.getElementById("samples-" + i).textContent);
    return cache[i];
  }
  function runColor(label) { return colors[label] || "#888"; }

  /* ---------------------------------------------------------------- sortable tables */
  function sortTable(table, th) {
    var col = +th.dataset.col, numeric = th.dataset.sort === "num";
    var cur = th.getAttribute("aria-sort");
    var dir = cur ? (cur === "ascending" ? "descending" : "ascending") : (th.dataset.first || "ascending");
    table.querySelectorAll("thead th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var va = a.cells[col] ? a.cells[col].dataset.v : "", vb = b.cells[col] ? b.cells[col].dataset.v : "";
      if (va === "" || va === undefined) return (vb === "" || vb === undefined) ? 0 : 1;  /* missing values last */
      if (vb === "" || vb === undefined) return -1;
      if (numeric) return sign * (parseFloat(va) - parseFloat(vb));
      return sign * va.localeCompare(vb);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th[data-col]").forEach(function (th) {
      th.tabIndex = 0;
      th.classList.add("sorter");
      th.addEventListener("click", function () { sortTable(table, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, th); } });
    });
  });

  /* ---------------------------------------------------------------- one sample */
  var STATUS = { r: ["right", "b-ok"], w: ["wrong", "b-bad"], u: ["unparseable", "b-warn"], e: ["error", "b-bad"] };

  function block(label, text, cls) {
    var d = el("div", "field " + (cls || ""));
    d.appendChild(el("div", "flabel", label));
    d.appendChild(el("pre", "text", text));
    return d;
  }

  function runColumn(D, s, k) {
    var o = s.o[k], col = el("div", "run-col");
    col.style.borderTopColor = runColor(D.runs[k]);
    var head = el("div", "run-head");
    head.appendChild(el("span", "run-name", D.runs[k]));
    if (!o) { col.appendChild(head); col.appendChild(el("p", "ci", "not in this run")); return col; }
    if (STATUS[o.k]) head.appendChild(el("span", "badge " + STATUS[o.k][1], STATUS[o.k][0]));
    if (o.f) head.appendChild(el("span", "badge b-warn", "inconsistent"));
    col.appendChild(head);
    if (o.e) col.appendChild(block("error", o.e, "err"));
    var outs = o.t || [];
    outs.forEach(function (t, i) { col.appendChild(block(outs.length > 1 ? "output " + (i + 1) : "output", t)); });
    if (o.x) col.appendChild(block("extracted answer", o.x.join("\n")));
    if (o.lp && o.lp.length) {
      col.appendChild(el("div", "ci", "log-likelihoods: " + o.lp.map(function (x) { return x === null ? "–" : x.toFixed(3); }).join(" · ")));
    }
    var sc = el("table", "scores");
    D.metrics.forEach(function (m, j) {
      var tr = el("tr");
      tr.appendChild(el("td", "", m));
      tr.appendChild(el("td", "num", fmt(o.s[j])));
      sc.appendChild(tr);
    });
    col.appendChild(sc);
    if (o.d) {
      Object.keys(o.d).forEach(function (m) {
        var d = o.d[m], keys = Object.keys(d);
        var verdict = d.verdict !== undefined ? d.verdict : d.rating;
        var why = d.rationale || d.explanation || d.reasoning;
        if (verdict !== undefined || why) {
          var j = el("div", "judge");
          j.appendChild(el("div", "flabel", "judge " + m + (verdict !== undefined ? ": verdict " + verdict : "") + (d.status ? " (" + d.status + ")" : "")));
          if (why) j.appendChild(el("pre", "text", why));
          ["claims", "contexts"].forEach(function (unit) {
            if (typeof d[unit] !== "string") return;
            var u = el("details"); u.appendChild(el("summary", "", "verdict per " + unit.slice(0, -1)));
            u.appendChild(el("pre", "text", d[unit])); j.appendChild(u);
          });
          if (d.raw && d.raw !== why) { var det = el("details"); det.appendChild(el("summary", "", "raw judge output")); det.appendChild(el("pre", "text", d.raw)); j.appendChild(det); }
          col.appendChild(j);
        } else if (keys.length && !(o.pi !== undefined && keys.length === 1 && keys[0] === "pred")) {
          col.appendChild(el("div", "ci", m + ": " + keys.map(function (k) { return k + "=" + (typeof d[k] === "object" ? JSON.stringify(d[k]) : d[k]); }).join(", ")));
        }
      });
    }
    return col;
  }

  function sampleCard(D, s, runs) {
    var card = el("article", "sample");
    var h = el("header", "sample-head");
    h.appendChild(el("span", "sid", "#" + s.id));
    if (s.f) h.appendChild(el("span", "badge b-warn", "flipped"));
    card.appendChild(h);
    var p = el("details", "prompt");
    if (s.p.length < 600) p.open = true;
    p.appendChild(el("summary", "", "prompt (" + s.p.length.toLocaleString("en") + " characters)"));
    p.appendChild(el("pre", "text", s.p));
    card.appendChild(p);
    if (s.r) card.appendChild(block(s.r.length > 1 ? "references" : "reference", s.r.join("\n")));
    if (s.c) {
      var ol = el("ol", "choices");
      s.c.forEach(function (c, i) {
        var li = el("li", i === s.g ? "gold" : "", c);
        if (i === s.g) li.appendChild(el("span", "badge b-ok", "gold"));
        s.o.forEach(function (o, k) { if (o && o.pi === i) { var b = el("span", "badge pick", D.runs[k]); b.style.borderColor = runColor(D.runs[k]); li.appendChild(b); } });
        ol.appendChild(li);
      });
      card.appendChild(ol);
    }
    var grid = el("div", "runs-grid");
    runs.forEach(function (k) { grid.appendChild(runColumn(D, s, k)); });
    card.appendChild(grid);
    return card;
  }

  /* ---------------------------------------------------------------- pager helper */
  function Pager(root, onChange) {
    this.page = 0; this.pages = 1;
    var self = this;
    this.info = root.querySelector(".page-info");
    root.querySelectorAll(".pager button").forEach(function (b) {
      b.addEventListener("click", function () {
        var p = self.page + (b.dataset.act === "next" ? 1 : -1);
        if (p >= 0 && p < self.pages) { self.page = p; onChange(); }
      });
    });
    this.prev = root.querySelector('[data-act="prev"]'); this.next = root.querySelector('[data-act="next"]');
  }
  Pager.prototype.set = function (n, size) {
    this.pages = Math.max(1, Math.ceil(n / size));
    if (this.page >= this.pages) this.page = this.pages - 1;
    this.info.textContent = " page " + (this.page + 1).toLocaleString("en") + " of " + this.pages.toLocaleString("en") + " ";
    this.prev.disabled = this.page === 0; this.next.disabled = this.page >= this.pages - 1;
  };

  /* ---------------------------------------------------------------- sample browser */
  var S = { task: 0, filter: "all", run: -1, q: "", size: 25, hits: null };
  var sTask = document.getElementById("s-task"), sRun = document.getElementById("s-run");
  var sList = document.getElementById("s-list"), sNote = document.getElementById("s-note");
  var sPager = new Pager(document.getElementById("sample-controls"), renderSamples);

  function haystack(s) {
    if (s._h === undefined) {
      var parts = [s.id, s.p];
      if (s.r) parts.push(s.r.join(" "));
      if (s.c) parts.push(s.c.join(" "));
      s.o.forEach(function (o) { if (o) { parts.push((o.t || []).join(" ")); if (o.x) parts.push(o.x.join(" ")); if (o.e) parts.push(o.e); } });
      s._h = parts.join("\n").toLowerCase();
    }
    return s._h;
  }
  function passes(s) {
    if (S.filter !== "all") {
      if (S.filter === "flipped") { if (!s.f) return false; }
      else {
        var want = { right: "r", wrong: "w" }[S.filter];
        var os = S.run < 0 ? s.o : [s.o[S.run]], hit = false;
        for (var i = 0; i < os.length; i++) {
          var o = os[i];
          if (!o) continue;
          if (S.filter === "unparseable" ? (o.k === "u" || o.k === "e") : o.k === want) { hit = true; break; }
        }
        if (!hit) return false;
      }
    }
    return !S.q || haystack(s).indexOf(S.q) >= 0;
  }
  function refilter() {
    var D = taskData(S.task), hits = [];
    for (var i = 0; i < D.samples.length; i++) if (passes(D.samples[i])) hits.push(i);
    S.hits = hits; sPager.page = 0;
    renderSamples();
  }
  function renderSamples() {
    var D = taskData(S.task), hits = S.hits;
    sPager.set(hits.length, S.size);
    var note = hits.length.toLocaleString("en") + " of " + D.samples.length.toLocaleString("en") + " samples";
    if (D.correct) note += " · right/wrong by " + D.correct.metric;
    else note += " · right/wrong filters need a 0/1 metric, which this task has none of";
    sNote.textContent = note;
    var frag = document.createDocumentFragment();
    var runs = S.run < 0 ? D.runs.map(function (_, k) { return k; }) : [S.run];
    var start = sPager.page * S.size;
    hits.slice(start, start + S.size).forEach(function (i) { frag.appendChild(sampleCard(D, D.samples[i], runs)); });
    if (!hits.length) frag.appendChild(el("p", "empty", "No sample matches."));
    sList.replaceChildren(frag);
  }
  function setTask(i) {
    S.task = i;
    var D = taskData(i);
    sRun.replaceChildren();
    sRun.appendChild(el("option", "", D.runs.length > 1 ? "any run" : D.runs[0] || "run")).value = "-1";
    if (D.runs.length > 1) D.runs.forEach(function (r, k) { var o = el("option", "", r); o.value = String(k); sRun.appendChild(o); });
    S.run = -1;
    refilter();
  }
  taskIndex.forEach(function (t, i) {
    var o = el("option", "", t.task + " (" + t.n.toLocaleString("en") + ")");
    o.value = String(i);
    sTask.appendChild(o);
  });
  sTask.addEventListener("change", function () { setTask(+sTask.value); });
  sRun.addEventListener("change", function () { S.run = +sRun.value; refilter(); });
  document.getElementById("s-size").addEventListener("change", function (e) { S.size = +e.target.value; sPager.page = 0; renderSamples(); });
  document.querySelectorAll("#sample-controls [data-filter]").forEach(function (b) {
    b.addEventListener("click", function () {
      document.querySelectorAll("#sample-controls [data-filter]").forEach(function (x) { x.classList.toggle("on", x === b); });
      S.filter = b.dataset.filter; refilter();
    });
  });
  var timer = null;
  document.getElementById("s-search").addEventListener("input", function (e) {
    clearTimeout(timer);
    timer = setTimeout(function () { S.q = e.target.value.trim().toLowerCase(); refilter(); }, 150);
  });
  if (taskIndex.length) setTask(0);

  /* ---------------------------------------------------------------- run diff */
  var diffPair = document.getElementById("diff-pair");
  if (diffPair) {
    var Dd = { pairs: [], hits: [], size: 20 };
    taskIndex.forEach(function (t, i) {
      for (var b = 1; b < t.runs.length; b++) Dd.pairs.push({ task: i, b: b, label: t.task + ": " + t.runs[b] + " vs " + t.runs[0] });
    });
    Dd.pairs.forEach(function (p, i) { var o = el("option", "", p.label); o.value = String(i); diffPair.appendChild(o); });
    var diffList = document.getElementById("diff-list"), diffKind = document.getElementById("diff-kind");
    var dPager = new Pager(document.getElementById("diff-controls"), renderDiff);
    var diffFilter = function () {
      var p = Dd.pairs[+diffPair.value || 0], D = taskData(p.task), kind = diffKind.value, hib = D.hib[0] !== false;
      Dd.hits = [];
      D.samples.forEach(function (s, i) {
        var a = s.o[0], b = s.o[p.b];
        if (!a || !b) return;
        var sa = a.s[0], sb = b.s[0];
        if (sa === sb) return;
        if (kind !== "changed") {
          if (sa === null || sb === null) return;
          if ((kind === "improved") !== (hib ? sb > sa : sb < sa)) return;
        }
        Dd.hits.push(i);
      });
      dPager.page = 0;
      renderDiff();
    };
    function renderDiff() {
      var p = Dd.pairs[+diffPair.value || 0], D = taskData(p.task);
      dPager.set(Dd.hits.length, Dd.size);
      var frag = document.createDocumentFragment(), hib = D.hib[0] !== false;
      Dd.hits.slice(dPager.page * Dd.size, (dPager.page + 1) * Dd.size).forEach(function (i) {
        var s = D.samples[i], a = s.o[0], b = s.o[p.b];
        var card = el("article", "sample diff");
        var h = el("header", "sample-head");
        h.appendChild(el("span", "sid", "#" + s.id));
        var up = a.s[0] !== null && b.s[0] !== null && (hib ? b.s[0] > a.s[0] : b.s[0] < a.s[0]);
        h.appendChild(el("span", "delta " + (up ? "up" : "down"), D.metrics[0] + " " + fmt(a.s[0]) + " → " + fmt(b.s[0])));
        card.appendChild(h);
        var pr = el("details", "prompt");
        pr.appendChild(el("summary", "", "prompt"));
        pr.appendChild(el("pre", "text", s.p));
        card.appendChild(pr);
        if (s.r) card.appendChild(block("references", s.r.join("\n")));
        var grid = el("div", "runs-grid two");
        grid.appendChild(runColumn(D, s, 0));
        grid.appendChild(runColumn(D, s, p.b));
        card.appendChild(grid);
        frag.appendChild(card);
      });
      if (!Dd.hits.length) frag.appendChild(el("p", "empty", "No sample changed this way."));
      diffList.replaceChildren(frag);
    }
    diffPair.addEventListener("change", diffFilter);
    diffKind.addEventListener("change", diffFilter);
    if (Dd.pairs.length) diffFilter();
  }
  document.documentElement.dataset.ready = "1";
})();
