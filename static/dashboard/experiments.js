/* Shadow experiments panel of the Monitoring tab: the picked model's latest experiment (state,
 * per task the mean paired difference and its confidence sequence, drawn over time) and the
 * start / stop / promote actions, all through the REST API (which decides who may); refreshed when
 * the model's feed reports an experiment, an alert or an activation. */
(function () {
  "use strict";
  var TA = window.TA;
  var picker = document.getElementById("experiments-model");
  if (!TA || !picker) return;
  var state = document.getElementById("experiments-state");
  var actions = document.getElementById("experiments-actions");
  var form = document.getElementById("experiments-form");
  var COLORS = { signal: "#1f4e8c", risk: "#c2571a", pattern: "#2e7d32" };
  var chart = null;
  var canvas = document.getElementById("experiments-chart");

  function drawChart(tasks) {
    if (!window.Chart || !canvas) return;
    var datasets = [];
    tasks.forEach(function (t) {
      var color = COLORS[t.task] || "#555";
      var points = function (key) { return t.history.map(function (h) { return { x: h.day, y: h[key] }; }); };
      datasets.push({ label: t.task + " mean", data: points("mean"), borderColor: color, backgroundColor: color, pointRadius: 0 });
      datasets.push({ label: t.task + " bounds", data: points("lower"), borderColor: color, borderDash: [4, 4], pointRadius: 0 });
      datasets.push({ label: "", data: points("upper"), borderColor: color, borderDash: [4, 4], pointRadius: 0 });
    });
    if (chart) chart.destroy();
    chart = new window.Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: true,
        plugins: { legend: { labels: { filter: function (item) { return item.text !== ""; } } } },
        scales: {
          x: { type: "category", labels: tasks.length ? tasks[0].history.map(function (h) { return h.day; }) : [], title: { display: true, text: "day" } },
          y: { title: { display: true, text: "champion loss − challenger loss" }, suggestedMin: -0.1, suggestedMax: 0.1 },
        },
      },
    });
  }

  function renderTasks(tasks) {
    var body = document.querySelector("#experiments-tasks tbody");
    body.textContent = "";
    if (!tasks.length) {
      body.appendChild(TA.el("tr", {}, [TA.el("td", { colspan: 6, className: "muted", text: "no resolved prediction yet" })]));
    }
    tasks.forEach(function (t) {
      body.appendChild(TA.el("tr", { "data-task": t.task }, [
        TA.el("th", { scope: "row", text: t.task }), TA.el("td", { text: String(t.days) }),
        TA.el("td", { text: String(t.predictions) }), TA.el("td", { text: TA.num(t.meanDifference, 4) }),
        TA.el("td", { text: "[" + TA.num(t.lower, 4) + ", " + TA.num(t.upper, 4) + "]" }),
        TA.el("td", { text: t.side.replace("_", " ") }),
      ]));
    });
    drawChart(tasks);
  }

  function button(text, handler, primary) {
    var b = TA.el("button", { type: "button", className: "btn" + (primary ? " btn-primary" : ""), text: text });
    b.addEventListener("click", handler);
    actions.appendChild(b);
    actions.appendChild(document.createTextNode(" "));
  }

  function act(path) {
    TA.api(path, { method: "POST" }).then(function (result) {
      if (!result.ok) { state.textContent = (result.data && result.data.detail) || "refused"; return; }
      load();
    });
  }

  function render(list) {
    var latest = list[0];
    actions.textContent = "";
    form.hidden = !!(latest && latest.state === "running");
    var history = document.getElementById("experiments-history");
    history.textContent = "";
    list.slice(1, 10).forEach(function (e) {
      history.appendChild(TA.el("li", { text: "#" + e.id + " " + e.challenger + " vs " + e.champion + ": " + e.state + " (" + TA.when(e.startedAt) + ")" }));
    });
    if (!latest) {
      state.textContent = "no experiment yet";
      state.setAttribute("data-state", "none");
      renderTasks([]);
      return;
    }
    state.textContent = "#" + latest.id + " " + latest.challenger + " (challenger) vs " + latest.champion + " (champion): " +
      latest.state.replace("_", " ") + (latest.reason ? " — " + latest.reason : "") + " · alpha " + latest.alpha +
      ", budget " + latest.maxDays + " days" + (latest.autoPromote ? ", promotes automatically" : "");
    state.setAttribute("data-state", latest.state);
    if (latest.state === "running") button("Stop", function () { act("experiments/" + latest.id + "/stop"); });
    if (latest.state === "challenger_better") button("Promote " + latest.challenger, function () { act("experiments/" + latest.id + "/promote"); }, true);
    TA.api("experiments/" + latest.id).then(function (result) {
      if (result.ok && picker.value === latest.modelName) renderTasks(result.data.tasks || []);
    });
  }

  var generation = 0;
  function load() {
    var mine = ++generation;
    TA.api(TA.modelPath(picker.value) + "/experiments").then(function (result) {
      if (mine !== generation) return;
      if (!result.ok) { state.textContent = (result.data && result.data.detail) || "not available"; return; }
      render(result.data);
    });
  }

  function showErrors(errors) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (node) {
      node.textContent = (errors && errors[node.getAttribute("data-field")] || []).join(" ");
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = {
      challenger: form.elements.challenger.value.trim(),
      alpha: Number(form.elements.alpha.value),
      maxDays: Number(form.elements.maxDays.value),
      autoPromote: form.elements.autoPromote.checked,
    };
    TA.api(TA.modelPath(picker.value) + "/experiments", { method: "POST", body: body }).then(function (result) {
      if (!result.ok) {
        showErrors(result.data && result.data.fields ? result.data.fields : { non_field_errors: [result.data && result.data.detail] });
        return;
      }
      showErrors({});
      load();
    });
  });

  var feed = null, pending = null;
  function follow() {
    if (feed) feed.close();
    feed = new TA.ModelFeed(picker.value, function (event) {
      if (event.stream !== "model" || ["experiment", "alert", "version.activated"].indexOf(event.type) < 0) return;
      clearTimeout(pending);
      pending = setTimeout(load, 300);
    });
  }

  picker.addEventListener("change", function () { load(); follow(); });
  load();
  follow();
})();
