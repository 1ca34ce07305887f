// Drawn signature on a canvas (pointer events: finger, pen or mouse). Typing the name is the keyboard alternative.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-signature-form]");
    if (!form || !window.HTMLCanvasElement) { return; }
    var canvas = form.querySelector("canvas");
    var hidden = form.querySelector("input[name=signature]");
    var error = form.querySelector("#signature-error");
    var choice = form.querySelector("[data-method-choice]");
    var panels = form.querySelectorAll("[data-method-panel]");
    var context = canvas.getContext("2d");
    var drawn = false;
    var last = null;

    function method() {
      var checked = form.querySelector("input[name=method]:checked");
      return checked ? checked.value : "typed_name";
    }
    function size() {
      // Sharp lines on dense screens, but at most 2x so the image stays small on a slow link.
      var ratio = Math.min(window.devicePixelRatio || 1, 2);
      var box = canvas.getBoundingClientRect();
      if (!box.width) { return; }
      canvas.width = Math.round(box.width * ratio);
      canvas.height = Math.round(box.height * ratio);
      context.setTransform(ratio, 0, 0, ratio, 0, 0);
      context.lineWidth = 2.5;
      context.lineCap = "round";
      context.lineJoin = "round";
      context.strokeStyle = "#111";
      drawn = false;
    }
    function show() {
      panels.forEach(function (panel) { panel.hidden = panel.getAttribute("data-method-panel") !== method(); });
      if (method() === "drawn_signature" && !drawn) { size(); }
    }
    function point(event) {
      var box = canvas.getBoundingClientRect();
      return { x: event.clientX - box.left, y: event.clientY - box.top };
    }
    canvas.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      if (canvas.setPointerCapture) { try { canvas.setPointerCapture(event.pointerId); } catch (e) { /* synthetic */ } }
      last = point(event);
      context.beginPath();
      context.arc(last.x, last.y, 1, 0, 2 * Math.PI);
      context.fill();
      drawn = true;
      error.hidden = true;
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!last) { return; }
      event.preventDefault();
      var next = point(event);
      context.beginPath();
      context.moveTo(last.x, last.y);
      context.lineTo(next.x, next.y);
      context.stroke();
      last = next;
    });
    ["pointerup", "pointercancel", "pointerleave"].forEach(function (name) {
      canvas.addEventListener(name, function () { last = null; });
    });
    form.querySelector("[data-signature-clear]").addEventListener("click", function () {
      context.clearRect(0, 0, canvas.width, canvas.height);
      drawn = false;
      hidden.value = "";
    });
    form.querySelectorAll("input[name=method]").forEach(function (radio) { radio.addEventListener("change", show); });
    form.addEventListener("submit", function (event) {
      if (method() !== "drawn_signature") { hidden.value = ""; return; }
      if (!drawn) {
        event.preventDefault();
        error.textContent = error.getAttribute("data-empty-message");
        error.hidden = false;
        canvas.focus();
        return;
      }
      hidden.value = canvas.toDataURL("image/png");
    });
    choice.hidden = false;  // drawing needs this script, so the choice appears only when it runs
    show();
  });
})();
