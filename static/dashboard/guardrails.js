/* Guardrails panel of the Monitoring tab: the selected model's policy (editable by those who may
 * activate versions; the API decides), its cooldown, last evaluations and rollbacks, all from
 * GET/PUT models/:name/guardrails, GET .../evaluations and POST .../evaluate; refreshed when the
 * model's feed reports a rollback, an alert or an activation. */
(function () {
  "use strict";
  var TA = window.TA;
  var picker = document.getElementById("guardrails-model");
  if (!TA || !picker) return;
  var form = document.getElementById("guardrails-form");
  var fields = document.getElementById("guardrails-fields");
  var actions = document.getElementById("guardrails-actions");
  var state = document.getElementById("guardrails-state");
  var FIELDS = [
    ["enabled", "Enabled", "check", "acts on a breach (off: evaluations only report)"],
    ["accuracyTasks", "Tasks checked", "tasks", "comma-separated: signal, risk, pattern"],
    ["accuracyMargin", "Accuracy margin", "number", "allowed drop below validation"],
    ["accuracyMinResolved", "Min resolved", "number", "fewer: inconclusive, never a breach"],
    ["accuracyAlpha", "Significance (alpha)", "number", "split over the tasks"],
    ["latencyP95Ms", "Latency p95 (ms)", "number", "a window above this is breached"],
    ["latencyWindowMinutes", "Window (minutes)", "number", ""],
    ["latencyMinRequests", "Min requests per window", "number", "fewer: the window is not counted"],
    ["latencyM", "M breached windows", "number", ""],
    ["latencyN", "of the last N", "number", ""],
    ["cooldownHours", "Cooldown (hours)", "number", "no automatic change after a rollback"],
  ];

  function path(suffix) { return TA.modelPath(picker.value) + "/guardrails" + (suffix || ""); }

  function renderForm(data) {
    fields.textContent = "";
    var policy = data.policy;
    FIELDS.forEach(function (f) {
      var id = "guardrail-" + f[0];
      var input = TA.el("input", { id: id, name: f[0] });
      input.disabled = !data.canEdit;
      if (f[2] === "check") { input.type = "checkbox"; input.checked = !!policy[f[0]]; }
      else if (f[2] === "tasks") { input.type = "text"; input.value = policy[f[0]].join(", "); }
      else { input.type = "number"; input.step = "any"; input.value = policy[f[0]]; }
      var box = TA.el("div", { className: "field" + (f[2] === "check" ? " field-check" : "") }, [
        TA.el("label", { "for": id, text: f[1] }), input,
        TA.el("p", { className: "hint", text: f[3] }),
        TA.el("p", { className: "field-error", "data-field": f[0] }),
      ]);
      fields.appendChild(box);
    });
    actions.textContent = "";
    if (data.canEdit) {
      actions.appendChild(TA.el("button", { type: "submit", className: "btn btn-primary", text: "Save policy" }));
      actions.appendChild(document.createTextNode(" "));
      var run = TA.el("button", { type: "button", className: "btn", text: "Evaluate now" });
      run.addEventListener("click", evaluateNow);
      actions.appendChild(run);
      if (data.cooldownActive) {
        var end = TA.el("button", { type: "button", className: "btn btn-quiet", text: "End cooldown" });
        end.addEventListener("click", function () { save({ cooldownUntil: null }); });
        actions.appendChild(document.createTextNode(" "));
        actions.appendChild(end);
      }
    }
  }

  function renderState(data) {
    var parts = [data.stored ? (data.policy.enabled ? "enabled" : "disabled") : "no policy stored (defaults shown, off)"];
    parts.push("active version " + (data.activeVersion || "none"));
    parts.push(data.cooldownActive ? "cooldown until " + TA.when(data.policy.cooldownUntil) : "no cooldown");
    if (data.rolledBackVersions.length) parts.push("never re-promoted automatically: " + data.rolledBackVersions.join(", "));
    state.textContent = parts.join(" · ");
    state.setAttribute("data-enabled", String(!!(data.stored && data.policy.enabled)));
    var list = document.getElementById("guardrails-rollbacks");
    list.textContent = "";
    if (!data.rollbacks.length) { list.appendChild(TA.el("li", { className: "muted", text: "none" })); }
    data.rollbacks.forEach(function (r) {
      var why = r.evidence.map(function (e) {
        return e.check + (e.task ? " " + e.task : "") + ": " + TA.num(e.measured) + " vs bound " + TA.num(e.bound) + " (" + e.count + ")";
      }).join("; ");
      list.appendChild(TA.el("li", { text: TA.when(r.at) + ": " + r.from + " → " + r.to + (why ? " — " + why : "") }));
    });
  }

  function renderEvaluations(rows) {
    var body = document.querySelector("#guardrails-evaluations tbody");
    body.textContent = "";
    if (!rows.length) {
      body.appendChild(TA.el("tr", {}, [TA.el("td", { colspan: 6, className: "muted", text: "not evaluated yet" })]));
    }
    rows.forEach(function (e) {
      body.appendChild(TA.el("tr", {}, [
        TA.el("td", { text: TA.when(e.createdAt) }), TA.el("td", { text: e.version || "—" }),
        TA.el("td", { text: e.trigger }), TA.el("td", { text: e.verdict }),
        TA.el("td", { text: e.action + (e.rolledBackTo ? " → " + e.rolledBackTo : "") }),
        TA.el("td", { className: "small muted", text: e.detail }),
      ]));
    });
  }

  // What a person is typing is never re-rendered away by a refresh from the feed.
  var dirty = false;
  form.addEventListener("input", function () { dirty = true; });

  // Each read is numbered: an answer that arrives after a newer read began (another model picked,
  // a save, a feed refresh) is dropped, so a slow answer never re-renders the form over what the
  // person typed since. data-ready marks the form as the picked model's, rendered.
  var generation = 0;
  function load(keepEdits) {
    var mine = ++generation;
    if (!keepEdits) {
      state.textContent = "loading…";
      state.removeAttribute("data-enabled");
      form.removeAttribute("data-ready");
    }
    TA.api(path()).then(function (result) {
      if (mine !== generation) return;
      if (!result.ok) { state.textContent = (result.data && result.data.detail) || "not available"; return; }
      if (!(keepEdits && dirty)) { renderForm(result.data); dirty = false; }
      renderState(result.data);
      form.setAttribute("data-ready", picker.value);
    });
    TA.api(path("/evaluations?pageSize=10")).then(function (result) {
      if (mine !== generation) return;
      renderEvaluations(result.ok && result.data ? result.data.results : []);
    });
  }

  function showErrors(errors) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (node) {
      node.textContent = (errors && errors[node.getAttribute("data-field")] || []).join(" ");
    });
  }

  function save(body) {
    TA.api(path(), { method: "PUT", body: body }).then(function (result) {
      if (!result.ok) {
        showErrors(result.data && result.data.fields ? result.data.fields : { non_field_errors: [result.data && result.data.detail] });
        return;
      }
      showErrors({});
      load();
    });
  }

  function evaluateNow() {
    TA.api(path("/evaluate"), { method: "POST" }).then(function (result) {
      if (!result.ok) { showErrors({ non_field_errors: [result.data && result.data.detail] }); return; }
      load();
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = {};
    FIELDS.forEach(function (f) {
      var input = form.elements[f[0]];
      if (f[2] === "check") body[f[0]] = input.checked;
      else if (f[2] === "tasks") body[f[0]] = input.value.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
      else body[f[0]] = input.value === "" ? null : Number(input.value);
    });
    save(body);
  });
  // A rollback, an alert or an activation on the model's feed: read the panel again (once per burst).
  var feed = null, pending = null;
  function follow() {
    if (feed) feed.close();
    feed = new TA.ModelFeed(picker.value, function (event) {
      if (event.stream !== "model" || ["guardrail", "alert", "version.activated"].indexOf(event.type) < 0) return;
      clearTimeout(pending);
      pending = setTimeout(function () { load(true); }, 300);
    });
  }

  picker.addEventListener("change", function () { dirty = false; load(); follow(); });
  load();
  follow();
})();
