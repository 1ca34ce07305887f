/* The note editor: autosave every few seconds and on leaving the page, CIE-10 suggestions as you type.
   Without JavaScript the form's Save button and the plain CIE-10 search form do the same work. */
(function () {
  "use strict";
  var AUTOSAVE_MS = 3000;
  var lang = (document.documentElement.lang || "es").slice(0, 2);
  var text = lang === "en"
    ? { saving: "Saving…", saved: "Saved ", failed: "Not saved: ", offline: "Not saved: no connection. Retrying.", alerts: "Prescription alerts (save the page to acknowledge them):", none: "No results." }
    : { saving: "Guardando…", saved: "Guardado ", failed: "No se guardó: ", offline: "No se guardó: sin conexión. Se reintentará.", alerts: "Alertas de la receta (guarde la página para confirmarlas):", none: "Sin resultados." };

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(date) { return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()); }

  var source = document.querySelector("[data-cie10-url]");
  var cie10Url = source ? source.getAttribute("data-cie10-url") : null;

  function cie10Search(query, done) {
    if (!cie10Url || query.trim().length < 2) { done([]); return; }
    fetch(cie10Url + "?q=" + encodeURIComponent(query.trim()), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { results: [] }; })
      .then(function (data) { done(data.results || []); })
      .catch(function () { done([]); });
  }

  // Suggestions in a <datalist> for every CIE-10 code field: type a code or words, pick a code.
  var datalist = document.getElementById("cie10-options");
  var timer = null;
  document.querySelectorAll("input[data-cie10]").forEach(function (input) {
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        cie10Search(input.value, function (results) {
          if (!datalist) { return; }
          datalist.textContent = "";
          results.forEach(function (entry) {
            var option = document.createElement("option");
            option.value = entry.code;
            option.label = entry.code + " " + entry.title;
            option.textContent = entry.code + " " + entry.title;
            datalist.appendChild(option);
          });
        });
      }, 200);
    });
  });

  // The plain search form: results in place instead of a page load (unsaved text stays on the page).
  var searchForm = document.getElementById("cie10-search-form");
  var resultsList = document.getElementById("cie10-results");
  if (searchForm && resultsList) {
    var query = document.getElementById("cie10-query");
    var render = function (results) {
      resultsList.textContent = "";
      if (!results.length) {
        var empty = document.createElement("li");
        empty.textContent = text.none;
        resultsList.appendChild(empty);
      }
      results.forEach(function (entry) {
        var item = document.createElement("li");
        var code = document.createElement("code");
        code.textContent = entry.code;
        item.appendChild(code);
        item.appendChild(document.createTextNode(" " + entry.title));
        resultsList.appendChild(item);
      });
    };
    searchForm.addEventListener("submit", function (event) { event.preventDefault(); cie10Search(query.value, render); });
    query.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { cie10Search(query.value, render); }, 250);
    });
  }

  var form = document.getElementById("note-form");
  if (!form) { return; }
  var status = document.getElementById("autosave-status");
  var alertBox = document.getElementById("autosave-alerts");
  var version = document.getElementById("note-version");
  var url = form.getAttribute("data-autosave-url");
  var dirty = false, inFlight = false, stopped = false, submitting = false;

  function show(message, isError) {
    status.textContent = message;
    status.classList.toggle("error", !!isError);
  }

  function showAlerts(alerts) {
    alertBox.textContent = "";
    var pending = alerts.filter(function (a) { return !a.acknowledged; });
    if (!pending.length) { return; }
    var box = document.createElement("div");
    box.className = "warning-box";
    box.setAttribute("role", "alert");
    var intro = document.createElement("p");
    intro.textContent = text.alerts;
    box.appendChild(intro);
    var list = document.createElement("ul");
    pending.forEach(function (a) {
      var li = document.createElement("li");
      li.textContent = a.message;
      list.appendChild(li);
    });
    box.appendChild(list);
    alertBox.appendChild(box);
  }

  function save(onLeave) {
    if (!dirty || inFlight || stopped) { return Promise.resolve(); }
    dirty = false;
    inFlight = true;
    var body = new FormData(form);
    body.delete("action");
    if (!onLeave) { show(text.saving); }
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      keepalive: !!onLeave,
      headers: { "X-CSRFToken": body.get("csrfmiddlewaretoken"), Accept: "application/json" }
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, status: response.status, data: data }; });
    }).then(function (result) {
      inFlight = false;
      if (result.ok) {
        version.value = result.data.version;
        document.querySelectorAll("[data-note-version]").forEach(function (other) { other.value = result.data.version; });
        show(text.saved + clock(new Date(result.data.saved_at)));
        showAlerts(result.data.alerts || []);
      } else if (result.status === 409) {
        stopped = true;  // another tab saved, or the note was signed: never overwrite silently
        show(result.data.error, true);
      } else {
        show(text.failed + (result.data.error || ""), true);
      }
    }).catch(function () {
      inFlight = false;
      dirty = true;
      show(text.offline, true);
    });
  }

  form.addEventListener("input", function () { dirty = true; });
  form.addEventListener("change", function () { dirty = true; });
  form.addEventListener("submit", function () { submitting = true; stopped = true; });
  // Applying a template posts another form: save what was typed first, so its version is the current one.
  var templateForm = document.getElementById("template-form");
  if (templateForm) {
    templateForm.addEventListener("submit", function (event) {
      if (submitting) { return; }
      event.preventDefault();
      submitting = true;
      save(false).then(function () { stopped = true; templateForm.submit(); });
    });
  }
  setInterval(function () { save(false); }, AUTOSAVE_MS);
  // Leaving the page (another link, closing the tab): one last save that outlives the page.
  window.addEventListener("pagehide", function () { if (!submitting) { save(true); } });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden" && !submitting) { save(true); }
  });
})();
