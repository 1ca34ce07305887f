// Theme, font size and language selectors: remembered in cookies so the server renders them next time.
(function () {
  "use strict";
  function setCookie(name, value) {
    document.cookie = name + "=" + encodeURIComponent(value) + "; path=/; max-age=31536000; samesite=lax";
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-preference]").forEach(function (select) {
      select.addEventListener("change", function () {
        var name = select.getAttribute("data-preference");
        setCookie(name, select.value);
        document.documentElement.setAttribute(name === "tc_theme" ? "data-theme" : "data-font", select.value);
      });
    });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  });
})();
