/* TechAnal dashboard: shared helpers. Plain JavaScript, no build step.
 * Every action is a call to the REST API with the session cookie (and the CSRF token on writes),
 * so the server validates and authorizes it exactly as for any API client. */
(function () {
  "use strict";

  var API = "/api/model-management/";
  var LIVE = ["queued", "running", "stopping"];
  var TERMINAL = ["stopped", "succeeded", "failed"];

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  /* fetch() against the API; resolves to {ok, status, data} and never throws on HTTP errors. */
  function api(path, options) {
    options = options || {};
    var headers = { Accept: "application/json" };
    var init = { method: options.method || "GET", credentials: "same-origin", headers: headers };
    if (init.method !== "GET") {
      headers["X-CSRFToken"] = cookie("csrftoken");
      if (options.body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(options.body);
      }
    }
    var url = path.charAt(0) === "/" ? path : API + path;
    return fetch(url, init).then(
      function (response) {
        return response.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
          return { ok: response.ok, status: response.status, data: data };
        });
      },
      function (error) {
        return { ok: false, status: 0, data: { detail: "The server could not be reached (" + error.message + ")." } };
      }
    );
  }

  function modelPath(name) {
    return "models/" + encodeURIComponent(name);
  }

  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function pct(v, digits) { return isNum(v) ? (v * 100).toFixed(digits === undefined ? 1 : digits) + " %" : "—"; }
  function num(v, digits) { return isNum(v) ? v.toFixed(digits === undefined ? 3 : digits) : "—"; }
  function duration(seconds) {
    if (!isNum(seconds)) return "—";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    var m = Math.floor(seconds / 60), s = seconds % 60;
    if (m < 60) return m + " min " + s + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  // Money is a decimal string per currency (a sum may hold several currencies).
  function money(amounts) {
    var keys = Object.keys(amounts || {}).sort();
    return keys.length ? keys.map(function (c) { return Number(amounts[c]).toFixed(4) + " " + c; }).join(" + ") : "—";
  }
  function jobCost(cost) {
    if (!cost) return "—";
    var one = {}; one[cost.currency] = cost.amount;
    return money(one) + " · CPU " + duration(cost.cpuSeconds) + " in " + duration(cost.wallSeconds) +
      (cost.gpuSeconds ? " · GPU " + duration(cost.gpuSeconds) : "") + (cost.final ? "" : " (so far)");
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  /* The model's websocket feed (session cookie, same origin). Reconnects with backoff and resumes
   * from the last seq seen, so nothing is lost or repeated across a reconnect. */
  function ModelFeed(name, onEvent, onState) {
    this.name = name;
    this.onEvent = onEvent;
    this.onState = onState || function () {};
    this.jobSeqs = {};
    this.currentJob = null;
    this.lastModelSeq = null;
    this.retry = 0;
    this.closed = false;
    this.connect();
  }

  ModelFeed.prototype.url = function () {
    var scheme = location.protocol === "https:" ? "wss" : "ws";
    var url = scheme + "://" + location.host + "/ws/model-management/models/" + encodeURIComponent(this.name) + "/progress/";
    var params = [];
    if (this.currentJob !== null && this.jobSeqs[this.currentJob]) {
      params.push("jobId=" + this.currentJob, "lastSeq=" + this.jobSeqs[this.currentJob]);
    }
    if (this.lastModelSeq !== null) params.push("lastModelSeq=" + this.lastModelSeq);
    return params.length ? url + "?" + params.join("&") : url;
  };

  ModelFeed.prototype.connect = function () {
    var self = this;
    this.onState("connecting");
    var socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = function () { self.retry = 0; self.onState("live"); };
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (event.stream === "model" && isNum(event.seq)) self.lastModelSeq = event.seq;
      if (event.stream === "job" && isNum(event.jobId)) {
        if (self.currentJob === null || event.jobId >= self.currentJob) self.currentJob = event.jobId;
        if (event.seq > 0) self.jobSeqs[event.jobId] = event.seq;
      }
      self.onEvent(event);
    };
    socket.onclose = function (close) {
      if (self.closed || window.TA.closing) return;
      if (close.code === 4401) { self.onState("signed out"); return; }
      if (close.code === 4403 || close.code === 4400) { self.onState("refused"); return; }
      self.onState("reconnecting");
      var delay = Math.min(10000, 500 * Math.pow(2, self.retry++));
      setTimeout(function () { if (!self.closed) self.connect(); }, delay);
    };
  };

  ModelFeed.prototype.close = function () {
    this.closed = true;
    if (this.socket) this.socket.close(1000);
  };

  /* Choosing another model in a picker reloads the tab for it. */
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.hasAttribute && target.hasAttribute("data-autosubmit")) target.form.submit();
  });
  window.addEventListener("pagehide", function () { window.TA.closing = true; });

  /* A moment as people read it: "1 Dec 2026, 23:18 UTC" (the server's `when` filter writes the same). */
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function when(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return d.getUTCDate() + " " + MONTHS[d.getUTCMonth()] + " " + d.getUTCFullYear() + ", " +
      two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + " UTC";
  }

  window.TA = {
    api: api, modelPath: modelPath, pct: pct, num: num, duration: duration, el: el, isNum: isNum, when: when,
    money: money, jobCost: jobCost,
    ModelFeed: ModelFeed, LIVE: LIVE, TERMINAL: TERMINAL, closing: false,
  };
})();
