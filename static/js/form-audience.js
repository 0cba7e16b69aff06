// The lead-form builder (templates/seller/lead_form_edit.html): shows the box for the
// kinds of buyer or the list of named buyers, whichever "Who may contact them" says.
// Without this script both show, and the choice still decides.
(function () {
  "use strict";
  function show() {
    var picked = document.querySelector("input[name=audience]:checked");
    var named = picked && picked.value === "named";
    document.querySelectorAll(".audience-described").forEach(function (el) { el.hidden = named; });
    document.querySelectorAll(".audience-named").forEach(function (el) { el.hidden = !named; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[name=audience]").forEach(function (input) {
      input.addEventListener("change", show);
    });
    show();
  });
})();
