/* AI Models tab: each card's status follows its model's websocket feed (training progress,
 * activations); the "training jobs now" count follows the cards. */
(function () {
  "use strict";
  var TA = window.TA;
  var live = {};

  function refreshCount() {
    var count = Object.keys(live).filter(function (k) { return live[k]; }).length;
    document.getElementById("stat-jobs").textContent = String(count);
  }

  Array.prototype.forEach.call(document.querySelectorAll(".model-card"), function (card) {
    var name = card.getAttribute("data-model");
    var badge = card.querySelector("[data-role=status]");
    live[name] = badge.textContent.indexOf("training") === 0;
    new TA.ModelFeed(name, function (event) {
      if (event.type === "version.activated" && event.version) {
        card.setAttribute("data-active-version", event.version);
        card.querySelector("[data-role=active-version]").textContent = event.version;
      }
      if (event.stream !== "job" && event.type !== "job.snapshot") return;
      var training = TA.LIVE.indexOf(event.status) >= 0;
      live[name] = training;
      var status = training ? "training" : (card.getAttribute("data-active-version") ? "active" : "idle");
      badge.className = "badge badge-" + status;
      badge.textContent = status + (training && TA.isNum(event.progress) ? " " + Math.round(event.progress) + "%" : "");
      refreshCount();
    });
  });
})();
