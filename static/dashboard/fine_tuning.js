/* Fine-tuning tab: the form posts a FineTuningConfig to the API; progress, epochs, ETA and the
 * loss chart follow the model's websocket feed (no reload, no polling). */
(function () {
  "use strict";
  var TA = window.TA;
  var main = document.getElementById("content");
  var model = main.getAttribute("data-model");
  if (!model) return;

  var form = document.getElementById("finetune-form");
  var startButton = document.getElementById("start-button");
  var stopButton = document.getElementById("stop-button");
  var formError = document.getElementById("form-error");
  var state = { job: null, status: null, epochs: {} };

  // --- chart ---------------------------------------------------------------------------------
  var chart = null;
  var canvas = document.getElementById("loss-chart");
  if (window.Chart && canvas) {
    chart = new window.Chart(canvas, {
      type: "line",
      data: {
        labels: [],
        datasets: [
          { label: "Training loss", data: [], borderColor: "#1f4e8c", backgroundColor: "#1f4e8c", tension: 0.2, spanGaps: true },
          { label: "Validation loss", data: [], borderColor: "#c2571a", backgroundColor: "#c2571a", tension: 0.2, spanGaps: true },
        ],
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { title: { display: true, text: "epoch" } }, y: { title: { display: true, text: "loss" } } },
      },
    });
  }

  function resetChart() {
    state.epochs = {};
    if (!chart) return;
    chart.data.labels = [];
    chart.data.datasets[0].data = [];
    chart.data.datasets[1].data = [];
    chart.update();
  }

  function addEpoch(epoch, trainLoss, valLoss) {
    if (!TA.isNum(epoch) || state.epochs[epoch]) return;
    state.epochs[epoch] = true;
    if (!chart) return;
    var labels = chart.data.labels;
    var index = 0;
    while (index < labels.length && labels[index] < epoch) index++;
    labels.splice(index, 0, epoch);
    chart.data.datasets[0].data.splice(index, 0, TA.isNum(trainLoss) ? trainLoss : null);
    chart.data.datasets[1].data.splice(index, 0, TA.isNum(valLoss) ? valLoss : null);
    chart.update();
  }

  function loadHistory(jobId) {
    // The feed reports the latest epoch; a job's full history fills any epoch it skipped.
    TA.api("jobs/" + jobId).then(function (result) {
      if (!result.ok || state.job !== jobId) return;
      text("cost-text", TA.jobCost(result.data.cost));
      (result.data.epochs || []).forEach(function (e) { addEpoch(e.epoch, e.trainLoss, e.valLoss); });
      var last = (result.data.epochs || []).slice(-1)[0];
      if (last) text("epoch-text", Math.max(result.data.epoch || 0, last.epoch) + " / " + result.data.totalEpochs);
    });
  }

  // --- progress --------------------------------------------------------------------------------
  function text(id, value) { var node = document.getElementById(id); if (node) node.textContent = value; }

  function setRunning(live) {
    if (startButton) startButton.disabled = live;
    if (stopButton) stopButton.disabled = !live || state.status === "stopping";
  }

  function showJob(event) {
    if (!TA.isNum(event.jobId)) return;
    if (state.job !== event.jobId) {
      state.job = event.jobId;
      resetChart();
      text("job-result", "");
      text("cost-text", "—");
    }
    state.status = event.status;
    var progress = TA.isNum(event.progress) ? Math.round(event.progress) : 0;
    var bar = document.getElementById("progress");
    bar.setAttribute("aria-valuenow", String(progress));
    bar.setAttribute("data-status", event.status);
    document.getElementById("progress-fill").style.width = progress + "%";
    text("progress-text", progress + " %");
    if (event.lastEpoch) addEpoch(event.lastEpoch.epoch, event.lastEpoch.trainLoss, event.lastEpoch.valLoss);
    var seen = Object.keys(state.epochs).map(Number);
    var epoch = Math.max(event.epoch || 0, seen.length ? Math.max.apply(null, seen) : 0);
    text("epoch-text", epoch + " / " + (event.totalEpochs || "—"));
    var live = TA.LIVE.indexOf(event.status) >= 0;
    text("eta-text", event.status === "running" && TA.isNum(event.eta) ? TA.duration(event.eta) : (live ? "estimating…" : "—"));
    text("loss-text", TA.isNum(event.loss) ? TA.num(event.loss, 4) + (TA.isNum(event.valLoss) ? " (validation " + TA.num(event.valLoss, 4) + ")" : "") : "—");
    text("job-line", "Job #" + event.jobId + " · " + event.status + (event.phase && live ? " · " + event.phase.replace(/_/g, " ") : ""));
    text("phase-text", event.phase ? event.phase.replace(/_/g, " ") : "—");
    document.getElementById("job-line").setAttribute("data-status", event.status);
    setRunning(live);
    if (TA.TERMINAL.indexOf(event.status) >= 0) finished(event);
  }

  function finished(event) {
    var result = document.getElementById("job-result");
    result.textContent = "";
    result.className = "result result-" + event.status;
    if (event.status === "succeeded" && event.version) {
      var outcome = event.outcome || {};
      var said = "Finished: new version " + event.version + ". ";
      if (outcome.improvedOnStart === false) {
        said = "Finished: new version " + event.version + " — no improvement: its best validation loss " +
          TA.num(outcome.valLoss, 4) + " (epoch " + outcome.bestEpoch + ") is not below the starting weights' " +
          TA.num(outcome.startValLoss, 4) + ". ";
      }
      result.appendChild(document.createTextNode(said));
      result.appendChild(TA.el("a", { href: "/model-management/versions/?model=" + encodeURIComponent(model) + "#version-" + event.version, id: "new-version-link", text: "See it in Versions" }));
    } else if (event.status === "failed") {
      result.textContent = "Failed" + (event.errorCode ? " (" + event.errorCode + ")" : "") + ": " + (event.error || "no reason given");
    } else if (event.status === "stopped") {
      result.textContent = "Stopped. No version was registered.";
    }
    loadHistory(event.jobId);
  }

  var history = document.getElementById("job-history");
  if (history) {
    var initial = JSON.parse(history.textContent);
    if (initial) {
      state.job = initial.jobId;
      initial.epochs.forEach(function (e) { addEpoch(e.epoch, e.trainLoss, e.valLoss); });
    }
  }

  new TA.ModelFeed(model, function (event) {
    if (event.stream === "job" || event.type === "job.snapshot") showJob(event);
    if (event.type === "version.activated") {
      text("job-result", "Version " + event.version + " is now active.");
    }
  }, function (feedState) {
    var node = document.getElementById("feed-state");
    node.textContent = feedState;
    node.setAttribute("data-state", feedState);
  });

  // --- form ------------------------------------------------------------------------------------
  if (!form) return;
  var defaults = {};
  Array.prototype.forEach.call(form.querySelectorAll("input, select"), function (input) {
    defaults[input.id] = input.type === "checkbox" ? input.checked : input.value;
  });

  // Patience can never exceed the epochs (the server's default is min(patience, epochs) too).
  var epochsInput = document.getElementById("f-epochs");
  var patienceInput = document.getElementById("f-earlyStoppingPatience");
  epochsInput.addEventListener("input", function () {
    var epochs = parseInt(epochsInput.value, 10), patience = parseInt(patienceInput.value, 10);
    if (epochs >= 1 && patience > epochs) patienceInput.value = String(epochs);
  });

  function clearErrors() {
    formError.hidden = true;
    formError.textContent = "";
    Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (node) { node.textContent = ""; });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (node) { node.removeAttribute("aria-invalid"); });
  }

  function fieldError(id, messages) {
    var node = document.getElementById(id);
    if (!node) return false;
    node.textContent = Array.isArray(messages) ? messages.join(" ") : String(messages);
    var input = document.getElementById(id.replace(/^err-hp-/, "hp-").replace(/^err-/, "f-"));
    if (input) input.setAttribute("aria-invalid", "true");
    return true;
  }

  function showErrors(data) {
    var fields = (data && data.fields) || {};
    var unplaced = [];
    Object.keys(fields).forEach(function (name) {
      var messages = fields[name];
      if (name === "hyperparameters" && messages && !Array.isArray(messages) && typeof messages === "object") {
        Object.keys(messages).forEach(function (key) {
          if (!fieldError("err-hp-" + key, messages[key])) unplaced.push(key + ": " + messages[key]);
        });
        document.querySelector("details.advanced").open = true;
        return;
      }
      if (!fieldError("err-" + name, messages)) unplaced.push(name + ": " + [].concat(messages).join(" "));
    });
    var message = (data && data.detail) || "The request was refused.";
    if (unplaced.length) message += " " + unplaced.join("; ");
    formError.textContent = message;
    formError.hidden = false;
    var firstInvalid = form.querySelector("[aria-invalid]");
    if (firstInvalid) firstInvalid.focus();
  }

  function number(input) {
    var raw = input.value.trim();
    if (raw === "") return undefined;
    var value = Number(raw);
    return isFinite(value) ? value : raw; // a non-number goes as typed: the API names the problem
  }

  function config() {
    var body = {};
    Array.prototype.forEach.call(form.querySelectorAll("[name]"), function (input) {
      var kind = input.getAttribute("data-kind");
      var value = kind === "int" || kind === "float" ? number(input) : input.value.trim();
      if (value !== undefined && value !== "") body[input.name] = value;
    });
    var hyper = {};
    Array.prototype.forEach.call(form.querySelectorAll("[data-hp]"), function (input) {
      var key = input.getAttribute("data-hp"), kind = input.getAttribute("data-kind");
      if (kind === "bool") { hyper[key] = input.checked; return; }
      if (kind === "list") {
        var parts = input.value.split(",").map(function (p) { return p.trim(); }).filter(Boolean);
        hyper[key] = parts.map(function (p) { return /^-?\d+$/.test(p) ? parseInt(p, 10) : p; });
        return;
      }
      var value = number(input);
      if (value !== undefined) hyper[key] = value;
    });
    body.hyperparameters = hyper;
    return body;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    startButton.disabled = true;
    startButton.textContent = "Starting…";
    TA.api(TA.modelPath(model) + "/fine-tune", { method: "POST", body: config() }).then(function (result) {
      startButton.textContent = "Start fine-tuning";
      if (!result.ok) {
        startButton.disabled = false;
        showErrors(result.data);
        return;
      }
      showJob({ jobId: result.data.id, status: result.data.status, progress: 0, epoch: 0, totalEpochs: result.data.totalEpochs, stream: "job" });
    });
  });

  stopButton.addEventListener("click", function () {
    stopButton.disabled = true;
    TA.api(TA.modelPath(model) + "/fine-tune/stop", { method: "POST" }).then(function (result) {
      if (!result.ok) {
        formError.textContent = (result.data && result.data.detail) || "Could not stop the job.";
        formError.hidden = false;
        stopButton.disabled = false;
      }
    });
  });

  document.getElementById("reset-button").addEventListener("click", function () {
    clearErrors();
    Array.prototype.forEach.call(form.querySelectorAll("input, select"), function (input) {
      if (input.type === "checkbox") input.checked = defaults[input.id];
      else input.value = defaults[input.id];
    });
  });
})();
