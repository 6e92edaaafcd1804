/* Monitoring tab: per model, what GET metrics and GET alerts return now (never an invented value),
 * a drift check on demand, and live progress of the current jobs over the websocket feed. */
(function () {
  "use strict";
  var TA = window.TA;
  var NOT_YET = "not computed yet";

  function cell(row, role) { return row.querySelector("[data-role=" + role + "]"); }

  function driftText(drift) {
    if (!drift || !drift.status || drift.status === "not_computed" || drift.status === "not_checked_yet") return NOT_YET;
    if (drift.status === "disabled") return "disabled (MODEL_DRIFT_DETECTION_ENABLED=false)";
    if (drift.status === "no_active_version") return "no active version";
    if (drift.status === "insufficient_data") return "insufficient data";
    if (!drift.verdict) return NOT_YET;
    var parts = [drift.verdict + (drift.version ? " for " + drift.version : "")];
    if (TA.isNum(drift.driftScore)) parts.push("score " + TA.pct(drift.driftScore, 0));
    if (drift.recommendation) parts.push("→ " + drift.recommendation);
    if (drift.computedAt) parts.push("(" + TA.when(drift.computedAt) + ")");
    return parts.join(" ");
  }

  function liveText(live) {
    // What the prediction ledger says over the last 7 days; a missing number stays missing.
    if (!live || typeof live !== "object") return NOT_YET;
    var parts = [];
    if (TA.isNum(live.resolved) && live.resolved > 0 && live.enoughToJudge === false) {
      parts.push(live.resolved + " resolved: too few to judge (at least " + live.minSamples + " needed)");
    } else if (TA.isNum(live.overallScore)) {
      parts.push(TA.pct(live.overallScore) + (TA.isNum(live.resolved) ? " on " + live.resolved + " resolved" : ""));
    } else {
      parts.push(NOT_YET + (live.reason ? " (" + live.reason + ")" : ""));
    }
    if (TA.isNum(live.requests)) parts.push(live.requests + " predictions in 7 days");
    var rt = live.responseTime;
    if (rt && TA.isNum(rt.p50)) parts.push("serving p50 " + rt.p50.toFixed(2) + " ms");
    return parts.join(" · ");
  }

  function setDrift(row, drift) {
    var node = cell(row, "drift");
    var text = driftText(drift);
    node.textContent = text;
    node.className = "drift drift-" + (text === NOT_YET ? "none" : (drift.verdict || "none"));
  }

  Array.prototype.forEach.call(document.querySelectorAll(".monitor-row"), function (row) {
    var name = row.getAttribute("data-model");
    TA.api(TA.modelPath(name) + "/metrics").then(function (result) {
      if (!result.ok) { cell(row, "live").textContent = NOT_YET; cell(row, "drift").textContent = NOT_YET; return; }
      cell(row, "live").textContent = liveText(result.data.live);
      setDrift(row, result.data.drift);
    });
    TA.api(TA.modelPath(name) + "/alerts?pageSize=3").then(function (result) {
      var node = cell(row, "alerts");
      node.textContent = "";
      var alerts = result.ok && result.data && result.data.results;
      if (!alerts) { node.textContent = NOT_YET; return; }
      if (!alerts.length) { node.textContent = "none"; return; }
      var list = TA.el("ul", { className: "alerts" });
      alerts.forEach(function (a) {
        list.appendChild(TA.el("li", { className: "alert-" + a.status }, [
          TA.el("strong", { text: a.kind + " · " + a.status }), " " + a.message + " ",
          TA.el("span", { className: "muted small", text: a.openedAt ? TA.when(a.openedAt) : "" }),
        ]));
      });
      node.appendChild(list);
    });
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-action=check-drift]") : null;
    if (!button) return;
    var row = button.closest("tr");
    button.disabled = true;
    button.textContent = "Checking…";
    TA.api(TA.modelPath(row.getAttribute("data-model")) + "/drift").then(function (result) {
      button.disabled = false;
      button.textContent = "Check drift now";
      if (!result.ok) { cell(row, "drift").textContent = (result.data && result.data.detail) || "check failed"; return; }
      setDrift(row, result.data);
    });
  });

  // Live progress of the jobs listed when the page loaded.
  var followed = {};
  Array.prototype.forEach.call(document.querySelectorAll("#jobs-table tr[data-job]"), function (row) {
    var name = row.getAttribute("data-model");
    if (followed[name]) return;
    followed[name] = true;
    new TA.ModelFeed(name, function (event) {
      if (event.stream !== "job") return;
      var target = document.querySelector("#jobs-table tr[data-job='" + event.jobId + "']");
      if (!target) return;
      var progress = TA.isNum(event.progress) ? Math.round(event.progress) : 0;
      cell(target, "status").textContent = event.status;
      cell(target, "progress").textContent = progress + "%";
      cell(target, "fill").style.width = progress + "%";
      cell(target, "epoch").textContent = (event.epoch || 0) + "/" + (event.totalEpochs || "—");
      target.querySelector("[role=progressbar]").setAttribute("aria-valuenow", String(progress));
    });
  });
})();
