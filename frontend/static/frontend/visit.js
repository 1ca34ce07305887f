// The visit pages: in-app browser detection (also done on the server), the "copy link" button and the hold
// countdown of the booking confirmation.
(function () {
  "use strict";
  var IN_APP = /FBAN|FBAV|FB_IAB|FBIOS|Messenger|Instagram|WhatsApp|\bLine\/|MicroMessenger|musical_ly|TikTok|BytedanceWebview|Snapchat|Twitter|; wv\)/i;

  function platform(agent) {
    if (/Android/.test(agent)) { return "android"; }
    if (/iPhone|iPad|iPod/.test(agent)) { return "ios"; }
    return "other";
  }

  function showInAppHelp() {
    var agent = navigator.userAgent || "";
    if (!IN_APP.test(agent)) { return; }
    var kind = platform(agent);
    document.querySelectorAll("[data-in-app-help]").forEach(function (box) {
      box.hidden = false;
      box.querySelectorAll("[data-platform]").forEach(function (step) {
        step.hidden = kind !== "other" && step.getAttribute("data-platform") !== kind;
      });
    });
  }

  function copyLinks() {
    document.querySelectorAll("[data-copy-link]").forEach(function (button) {
      button.addEventListener("click", function () {
        var input = document.querySelector(button.getAttribute("data-copy-link"));
        var done = button.parentNode.querySelector("[data-copy-done]");
        function confirm() { if (done) { done.hidden = false; } }
        input.focus();
        input.select();
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(input.value).then(confirm, function () {
            if (document.execCommand("copy")) { confirm(); }
          });
        } else if (document.execCommand("copy")) {
          confirm();
        }
      });
    });
  }

  function countdowns() {
    document.querySelectorAll("[data-expires-at]").forEach(function (box) {
      var ends = Date.parse(box.getAttribute("data-expires-at"));
      var out = box.querySelector("[data-remaining]");
      var expired = box.querySelector("[data-expired]");
      function tick() {
        var left = Math.max(0, Math.round((ends - Date.now()) / 1000));
        var minutes = Math.floor(left / 60), seconds = left % 60;
        out.textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
        if (left === 0) {
          if (expired) { expired.hidden = false; }
          return;
        }
        window.setTimeout(tick, 1000);
      }
      tick();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    showInAppHelp();
    copyLinks();
    countdowns();
  });
})();
