/* Fine-tuning tab, Search section: start/stop a hyperparameter study through the API, and follow
 * the latest study (trial table, objective by trial with the running best, parameter importance)
 * by reading GET studies/:id every 2 s while it is live. Trials are jobs, so the feed above shows
 * each one's progress too. */
(function () {
  "use strict";
  var TA = window.TA;
  var main = document.getElementById("content");
  var section = document.getElementById("search");
  if (!TA || !main || !section) return;
  var model = main.getAttribute("data-model");
  var form = document.getElementById("study-form");
  var startButton = document.getElementById("study-start");
  var stopButton = document.getElementById("study-stop");
  var errorBox = document.getElementById("study-error");
  var line = document.getElementById("study-line");
  var table = document.getElementById("trial-table");
  var importanceBox = document.getElementById("study-importance");
  var LIVE = ["running", "stopping", "finalizing"];
  var studyId = section.getAttribute("data-study");
  var timer = null;

  var chart = null;
  var canvas = document.getElementById("study-chart");
  if (window.Chart && canvas) {
    chart = new window.Chart(canvas, {
      type: "line",
      data: {
        labels: [],
        datasets: [
          { label: "Objective (mean fold edge)", data: [], showLine: false, pointRadius: 4, borderColor: "#1f4e8c", backgroundColor: "#1f4e8c" },
          { label: "Running best", data: [], stepped: true, borderColor: "#2e7d32", backgroundColor: "#2e7d32", pointRadius: 0 },
        ],
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        scales: { x: { title: { display: true, text: "trial" } }, y: { title: { display: true, text: "edge over baseline" } } },
      },
    });
  }

  function showError(text) {
    if (!errorBox) return;
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function fineTuneConfig() {
    // The trials start from the configuration form above (window, epochs, batch size, folds...).
    var body = {};
    var config = document.getElementById("finetune-form");
    if (!config) return body;
    Array.prototype.forEach.call(config.querySelectorAll("[name]"), function (input) {
      if (["evaluation", "activationPolicy", "baseModel"].indexOf(input.name) >= 0) return;
      var kind = input.getAttribute("data-kind");
      var raw = input.value.trim();
      if (raw === "") return;
      body[input.name] = kind === "int" || kind === "float" ? Number(raw) : raw;
    });
    return body;
  }

  function params(p) {
    return Object.keys(p || {}).map(function (k) {
      var v = p[k];
      return k + " " + (TA.isNum(v) ? Number(v.toPrecision(3)) : JSON.stringify(v));
    }).join(", ");
  }

  function render(study) {
    var live = LIVE.indexOf(study.status) >= 0;
    if (stopButton) stopButton.disabled = !live;
    if (startButton) startButton.disabled = live;
    var best = study.best || {}, holdout = study.holdout || {};
    var text = "Study " + study.id + ": " + study.status + ", " + study.trials.length + " of " + study.nTrials + " trials started";
    if (TA.isNum(best.cvScore)) text += "; best trial " + best.trialNumber + " CV edge " + (best.cvScore * 100).toFixed(1) + " pt";
    if (TA.isNum(holdout.edge)) {
      text += "; holdout (" + (holdout.window || []).join(" to ") + ") " + TA.pct(holdout.overallScore) +
        " vs baseline " + TA.pct(holdout.baseline) + " (" + (holdout.edge * 100).toFixed(1) + " pt), version " + holdout.version;
    }
    if (study.cost && study.cost.jobs) text += "; cost " + TA.money(study.cost.amounts) + " over " + study.cost.jobs + " trial job(s)";
    if (study.error) text += " — " + study.error;
    line.textContent = text;

    var body = table.querySelector("tbody");
    body.textContent = "";
    var labels = [], values = [], bests = [], running = null;
    study.trials.forEach(function (t) {
      body.appendChild(TA.el("tr", {}, [
        TA.el("th", { scope: "row", text: t.number === null ? "—" : String(t.number) }),
        TA.el("td", { text: t.state }),
        TA.el("td", { text: params(t.params) }),
        TA.el("td", { text: (t.foldScores || []).map(function (v) { return (v * 100).toFixed(1); }).join(" / ") }),
        TA.el("td", { text: TA.isNum(t.value) ? (t.value * 100).toFixed(2) + " pt" : "—" }),
        TA.el("td", { text: TA.duration(t.durationS) }),
        TA.el("td", { text: t.cost ? Number(t.cost.amount).toFixed(4) + " " + t.cost.currency : "—" }),
      ]));
      if (t.number !== null && TA.isNum(t.value)) {
        running = running === null ? t.value : Math.max(running, t.value);
        labels.push(t.number); values.push(t.value); bests.push(running);
      }
    });
    table.hidden = study.trials.length === 0;
    if (chart) {
      chart.data.labels = labels;
      chart.data.datasets[0].data = values;
      chart.data.datasets[1].data = bests;
      chart.update();
    }
    importanceBox.textContent = "";
    var keys = Object.keys(study.importance || {});
    if (keys.length) {
      importanceBox.appendChild(TA.el("h3", { className: "small-title", text: "Parameter importance (PED-ANOVA)" }));
      var list = TA.el("dl", { className: "kv" });
      keys.sort(function (a, b) { return study.importance[b] - study.importance[a]; }).forEach(function (k) {
        list.appendChild(TA.el("dt", { text: k }));
        list.appendChild(TA.el("dd", { text: TA.pct(study.importance[k]) }));
      });
      importanceBox.appendChild(list);
    } else if (study.trials.length) {
      importanceBox.appendChild(TA.el("p", { className: "hint", text: "Parameter importance appears once 5 trials have completed." }));
    }
    return live;
  }

  function poll() {
    if (!studyId) return;
    TA.api("studies/" + studyId).then(function (res) {
      if (!res.ok) { line.textContent = (res.data && res.data.detail) || "The study could not be read."; return; }
      var live = render(res.data);
      clearTimeout(timer);
      if (live) timer = setTimeout(poll, 2000);
    });
  }

  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      showError("");
      var space;
      try { space = JSON.parse(form.elements.space.value); } catch (e) { showError("The search space is not valid JSON: " + e.message); return; }
      var body = {
        space: space,
        nTrials: Number(form.elements.nTrials.value),
        parallelism: Number(form.elements.parallelism.value),
        sampler: form.elements.sampler.value,
        pruning: form.elements.pruning.checked,
        config: fineTuneConfig(),
      };
      var budget = form.elements.timeBudgetS.value.trim();
      if (budget !== "") body.timeBudgetS = Number(budget);
      startButton.disabled = true;
      TA.api(TA.modelPath(model) + "/studies", { method: "POST", body: body }).then(function (res) {
        if (!res.ok) {
          startButton.disabled = false;
          var fields = res.data && res.data.fields ? " " + JSON.stringify(res.data.fields) : "";
          showError(((res.data && res.data.detail) || "The study was refused.") + fields);
          return;
        }
        studyId = String(res.data.id);
        render(res.data);
        poll();
      });
    });
  }
  if (stopButton) {
    stopButton.addEventListener("click", function () {
      if (!studyId) return;
      stopButton.disabled = true;
      TA.api("studies/" + studyId + "/stop", { method: "POST" }).then(function (res) {
        if (!res.ok) showError((res.data && res.data.detail) || "The study could not be stopped.");
        poll();
      });
    });
  }
  poll();
})();
