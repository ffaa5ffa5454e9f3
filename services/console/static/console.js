// The console's few live behaviours; every page works without them, only less comfortably.
"use strict";

// Forms that change something ask first (launch, cancel, erase).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The segment builder: rows added and removed, and the count of matching contacts kept live.
(function () {
  var builder = document.getElementById("segment-builder");
  if (!builder) return;
  var rows = document.getElementById("rule-rows");
  var output = document.getElementById("live-count");
  var problem = document.getElementById("live-count-error");
  var timer = null;
  var asked = 0;

  function count() {
    var mine = ++asked;
    output.textContent = "…";
    fetch(builder.getAttribute("data-count-url"), {
      method: "POST", body: new FormData(builder), credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (response) {
      return response.json().then(function (body) { return {ok: response.ok, body: body}; });
    }).then(function (answer) {
      if (mine !== asked) return;  // a later change has asked again
      if (answer.ok) {
        output.textContent = answer.body.count.toLocaleString("en");
        problem.textContent = "";
      } else {
        output.textContent = "—";
        problem.textContent = (answer.body.errors || [answer.body.detail || answer.body.error]).join(" ");
      }
    }).catch(function () {
      if (mine !== asked) return;
      output.textContent = "—";
      problem.textContent = "The count is unavailable right now.";
    });
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(count, 250);
  }

  builder.addEventListener("input", function (event) {
    if (event.target.name !== "name") soon();
  });
  builder.addEventListener("change", function (event) {
    if (event.target.name !== "name") soon();
  });
  document.getElementById("add-rule").addEventListener("click", function () {
    var last = rows.querySelector("tr.rule:last-child");
    var row = last.cloneNode(true);
    row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
    rows.appendChild(row);
    row.querySelector("input[name=field]").focus();
  });
  rows.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-rule")) return;
    var row = event.target.closest("tr.rule");
    if (rows.querySelectorAll("tr.rule").length > 1) {
      row.remove();
    } else {
      row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
    }
    soon();
  });
  count();
})();

// An erasure's progress, followed until every service has confirmed.
(function () {
  var table = document.getElementById("erasure");
  if (!table || table.getAttribute("data-status") === "completed") return;
  var url = table.getAttribute("data-poll");

  function show(erasure) {
    Object.keys(erasure.services).forEach(function (service) {
      var cell = table.querySelector('tr[data-service="' + service + '"] td.state');
      if (cell) {
        cell.textContent = erasure.services[service];
        cell.className = "state status-" + erasure.services[service];
      }
    });
    var status = document.getElementById("erasure-status");
    status.textContent = erasure.status;
    status.className = "status status-" + erasure.status;
    table.setAttribute("data-status", erasure.status);
    if (erasure.status === "completed") {
      document.getElementById("erasure-completed").textContent = "Completed " + erasure.completed_at.replace("T", " ").slice(0, 19) + " UTC.";
      document.getElementById("erasure-note").textContent =
        "Every service has erased the contact's personal data.";
    }
  }

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (erasure) {
        if (erasure) show(erasure);
        if (!erasure || erasure.status !== "completed") setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
