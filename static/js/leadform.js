// A hosted lead form (templates/consent/form.html) measures how it was filled, for the
// consent certificate: time on page, and per field whether it was typed, pasted or
// filled in by the browser. Nothing typed is sent anywhere but with the form itself.
// Framed by the embed snippet, it also tells the host page its height.
(function () {
  "use strict";
  var started = performance.now();
  var ways = {};

  function mark(name, way) {
    if (!name) return;
    var seen = ways[name] || {};
    seen[way] = true;
    ways[name] = seen;
  }

  function summary() {
    var out = {};
    Object.keys(ways).forEach(function (name) {
      var seen = ways[name];
      if (seen.typed && seen.pasted) out[name] = "typed and pasted";
      else if (seen.pasted) out[name] = "pasted";
      else if (seen.typed) out[name] = "typed";
      else if (seen.autofilled) out[name] = "autofilled";
    });
    return out;
  }

  function tellHeight() {
    if (window.parent === window) return;
    // The body's own height: the document's is never less than the frame's, so it
    // could grow the frame but never shrink it (the thank-you is shorter than the form).
    var height = Math.ceil(document.body.getBoundingClientRect().height);
    window.parent.postMessage({ leadxFormHeight: height }, "*");
  }

  document.addEventListener("DOMContentLoaded", function () {
    tellHeight();
    window.addEventListener("resize", tellHeight);
    var form = document.querySelector("form[data-leadx-measure]");
    if (!form) return;
    // Sent back with a problem to fix: carry on from what was measured before.
    var before = 0;
    try {
      before = parseInt(form.elements.time_on_page_ms.value, 10) || 0;
      var earlier = JSON.parse(form.elements.inputs.value || "{}");
      Object.keys(earlier).forEach(function (name) {
        String(earlier[name]).split(" and ").forEach(function (way) { mark(name, way); });
      });
    } catch (ignored) { /* nothing usable measured before */ }
    form.addEventListener("paste", function (event) { mark(event.target.name, "pasted"); });
    form.addEventListener("drop", function (event) { mark(event.target.name, "pasted"); });
    form.addEventListener("input", function (event) {
      var kind = event.inputType || "";
      if (kind === "insertFromPaste" || kind === "insertFromDrop") mark(event.target.name, "pasted");
      else if (kind.indexOf("insert") === 0 || kind.indexOf("delete") === 0) mark(event.target.name, "typed");
      else if (event.target.tagName !== "SELECT") mark(event.target.name, "autofilled");
    });
    // A choice in a list is made by hand, whether by mouse or by keys.
    form.addEventListener("change", function (event) {
      if (event.target.tagName === "SELECT") mark(event.target.name, "typed");
    });
    form.addEventListener("submit", function () {
      form.elements.time_on_page_ms.value = String(before + Math.round(performance.now() - started));
      form.elements.inputs.value = JSON.stringify(summary());
    });
  });
})();
