/* Versions tab: activate (maintainers), compare chosen versions, chart the metrics across versions. */
(function () {
  "use strict";
  var TA = window.TA;
  var main = document.getElementById("content");
  var model = main.getAttribute("data-model");
  if (!model) return;
  var message = document.getElementById("versions-message");

  function say(text, kind) {
    message.textContent = text;
    message.className = "alert alert-" + (kind || "info");
    message.hidden = false;
  }

  // --- chart of the metrics across versions ---------------------------------------------------
  var dataNode = document.getElementById("versions-chart-data");
  var canvas = document.getElementById("versions-chart");
  if (dataNode && canvas && window.Chart) {
    var data = JSON.parse(dataNode.textContent);
    var colours = ["#1f4e8c", "#c2571a", "#2e7d4f", "#7b3fa0", "#555"];
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: Object.keys(data.series).map(function (label, i) {
          return {
            label: label, data: data.series[label].map(function (v) { return TA.isNum(v) ? v * 100 : null; }),
            borderColor: colours[i % colours.length], backgroundColor: colours[i % colours.length],
            borderDash: label === "Accuracy" ? [6, 4] : [], tension: 0.1, spanGaps: true,
          };
        }),
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: { title: { display: true, text: "% on the validation window" } }, x: { title: { display: true, text: "version" } } },
        plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + (TA.isNum(c.parsed.y) ? c.parsed.y.toFixed(1) + " %" : "—"); } } } },
      },
    });
  }

  // --- activate ------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-action=activate]") : null;
    if (!button) return;
    var version = button.getAttribute("data-version");
    button.disabled = true;
    button.textContent = "Activating…";
    TA.api(TA.modelPath(model) + "/versions/" + encodeURIComponent(version) + "/activate", { method: "POST" }).then(function (result) {
      if (!result.ok) {
        button.disabled = false;
        button.textContent = "Activate";
        say((result.data && result.data.detail) || "Activation was refused.", "error");
        return;
      }
      Array.prototype.forEach.call(document.querySelectorAll(".version-card"), function (card) {
        var badge = card.querySelector("[data-role=status]");
        var v = card.getAttribute("data-version");
        if (v === version) setStatus(card, "active");
        else if (badge.textContent === "active") setStatus(card, "deprecated");
      });
      say(version + " is now the active version of " + model + ".", "success");
    });
  });

  function setStatus(card, status) {
    var badge = card.querySelector("[data-role=status]");
    badge.textContent = status;
    badge.className = "badge badge-" + status;
    var existing = card.querySelector("[data-action=activate]");
    if (status === "active" && existing) existing.remove();
    if (status !== "active" && !existing && main.getAttribute("data-can-activate") === "true") {
      var button = TA.el("button", { type: "button", className: "btn btn-primary btn-activate", "data-action": "activate", "data-version": card.getAttribute("data-version"), text: "Activate" });
      card.querySelector(".card-head").appendChild(button);
    }
  }

  // --- compare -------------------------------------------------------------------------------
  var compareForm = document.getElementById("compare-form");
  if (!compareForm) return;
  var labels = {
    accuracy: "Accuracy", responseTime: "Response time", patternRecognition: "Pattern recognition",
    signalAccuracy: "Signal accuracy", riskAssessment: "Risk assessment", overallScore: "Overall score",
    backtestSharpe: "Backtest Sharpe", backtestReturn: "Backtest return", backtestMaxDrawdown: "Backtest max drawdown",
    validationLoss: "Validation loss",
  };
  var formats = {
    responseTime: function (v) { return TA.isNum(v) ? v.toFixed(2) + " ms" : "—"; },
    backtestSharpe: function (v) { return TA.num(v, 3); },
    validationLoss: function (v) { return TA.num(v, 4); },
  };
  function format(metric, value) { return (formats[metric] || TA.pct)(value); }

  compareForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var chosen = Array.prototype.map.call(document.querySelectorAll(".compare-pick:checked"), function (c) { return c.value; });
    var error = document.getElementById("compare-error");
    error.textContent = "";
    if (chosen.length < 2) { error.textContent = "Tick at least two versions to compare."; return; }
    var button = document.getElementById("compare-button");
    button.disabled = true;
    button.textContent = "Comparing…";
    TA.api(TA.modelPath(model) + "/comparison?versions=" + chosen.map(encodeURIComponent).join(",")).then(function (result) {
      button.disabled = false;
      button.textContent = "Compare selected";
      if (!result.ok) { error.textContent = (result.data && result.data.detail) || "Comparison failed."; return; }
      renderComparison(result.data);
    });
  });

  function renderComparison(data) {
    var order = data.versions.map(function (v) { return v.version; });
    var head = TA.el("tr", {}, [TA.el("th", { scope: "col", text: "Metric" })].concat(order.map(function (v) {
      var status = data.versions.filter(function (x) { return x.version === v; })[0].status;
      return TA.el("th", { scope: "col", text: v + " (" + status + ")" });
    })));
    var body = TA.el("tbody");
    data.metrics.forEach(function (row) {
      var values = order.map(function (v) { return row.values[v]; });
      var shown = values.map(function (v) { return format(row.metric, v); });
      var differs = shown.some(function (s) { return s !== shown[0]; });
      var tr = TA.el("tr", { className: differs ? "differs" : "same", "data-metric": row.metric },
        [TA.el("th", { scope: "row", text: (labels[row.metric] || row.metric) + (row.higherIsBetter ? " ↑" : " ↓") })]);
      var notes = row.notes || {};
      order.forEach(function (v, i) {
        var best = row.best === v;
        var cell = TA.el("td", { className: best ? "best" : "", text: shown[i] + (best ? " ★" : "") });
        if (notes[v]) cell.setAttribute("title", notes[v]);
        tr.appendChild(cell);
      });
      if (notes["*"]) tr.setAttribute("title", notes["*"]);
      body.appendChild(tr);
    });
    var table = TA.el("table", { className: "table compare-table", id: "compare-table" }, [
      TA.el("caption", { className: "sr-only", text: "Stored metrics of the chosen versions" }), TA.el("thead", {}, [head]), body,
    ]);
    var box = document.getElementById("comparison-table");
    box.textContent = "";
    box.appendChild(table);
    renderHeldOut(data.heldOut || {}, order);
    var section = document.getElementById("comparison");
    section.hidden = false;
    section.scrollIntoView({ block: "start" });
  }

  function renderHeldOut(held, order) {
    var box = document.getElementById("heldout-table");
    box.textContent = "";
    if (held.status !== "computed" || !held.results) {
      box.appendChild(TA.el("p", { className: "muted", text: "Not computed: " + (held.detail || "no common window could be evaluated") + "." }));
      return;
    }
    var w = held.window || {};
    box.appendChild(TA.el("p", { className: "muted small", text: "Window " + w.start + " to " + w.end + " of " + w.dataset + " (" + w.samples + " samples, " + w.chosenBy + "); deltas against " + held.reference + "." }));
    var keys = ["patternRecognition", "signalAccuracy", "riskAssessment", "overallScore"];
    var head = TA.el("tr", {}, [TA.el("th", { scope: "col", text: "Metric" })].concat(order.filter(function (v) { return held.results[v]; }).map(function (v) {
      return TA.el("th", { scope: "col", text: v + (held.results[v].seenInTraining ? " (saw these bars in training)" : "") });
    })));
    var body = TA.el("tbody");
    keys.forEach(function (key) {
      var tr = TA.el("tr", {}, [TA.el("th", { scope: "row", text: labels[key] })]);
      order.forEach(function (v) {
        var r = held.results[v];
        if (!r) return;
        var value = (r.performanceMetrics || {})[key];
        var delta = ((held.deltas || {})[v] || {})[key];
        tr.appendChild(TA.el("td", { text: TA.pct(value) + (TA.isNum(delta) && v !== held.reference ? " (" + (delta >= 0 ? "+" : "") + (delta * 100).toFixed(1) + " pt)" : "") }));
      });
      body.appendChild(tr);
    });
    box.appendChild(TA.el("table", { className: "table" }, [TA.el("thead", {}, [head]), body]));
  }
})();
