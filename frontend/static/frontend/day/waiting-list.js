/* The practitioner's day list, live: marks the appointments whose patient is in the video waiting room.
   /ws/waiting/ sends the whole list on connecting and again at every change; rows are found by their
   appointment id, so nothing personal travels on the socket. Reconnects with back-off after a drop. */
(function () {
  "use strict";
  var status = document.getElementById("room-waiting-status");
  if (!status || !("WebSocket" in window)) return;
  var path = status.getAttribute("data-waiting-list");
  var delay = 1000;
  var lastCount = null;

  function announce(count) {
    if (count === lastCount) return;
    lastCount = count;
    var text = count === 0 ? status.dataset.none : count === 1 ? status.dataset.one : status.dataset.many;
    status.textContent = text.replace("{n}", String(count));
  }

  function timeOf(iso) {
    var when = new Date(iso);
    if (isNaN(when.getTime())) return "";
    return when.toLocaleTimeString(document.documentElement.lang || undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function show(visits) {
    var since = {};
    visits.forEach(function (visit) { since[visit.appointment] = visit.since; });
    var marked = 0;
    document.querySelectorAll("tr[data-appointment]").forEach(function (row) {
      var badge = row.querySelector(".room-waiting");
      if (!badge) return;
      var id = row.getAttribute("data-appointment");
      var waiting = Object.prototype.hasOwnProperty.call(since, id);
      badge.hidden = !waiting;
      row.classList.toggle("room-waiting-row", waiting);
      if (waiting) {
        marked += 1;
        var at = badge.querySelector(".room-waiting-since");
        var time = timeOf(since[id]);
        if (at) at.textContent = time ? " · " + time : "";
      }
    });
    announce(marked);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + path);
    socket.onopen = function () { delay = 1000; };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      if (message && message.type === "waiting_list" && Array.isArray(message.visits)) show(message.visits);
    };
    socket.onclose = function (event) {
      // 4401: the session no longer counts (signed out, idle): stop; the page's own links lead to sign-in.
      if (event.code === 4401) return;
      lastCount = null;
      status.textContent = status.dataset.offline;
      var wait = delay + Math.random() * delay * 0.3;
      delay = Math.min(delay * 2, 30000);
      setTimeout(connect, wait);
    };
  }

  connect();
})();
