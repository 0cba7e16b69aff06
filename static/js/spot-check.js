// The spot-check page's selection for bulk verdicts: "select all to do" and a count;
// after a bulk verdict the judged leads are swapped in unselected.
(function () {
  var picks = function () { return document.querySelectorAll(".sample-pick"); };
  var count = function () {
    var label = document.getElementById("picked-count");
    if (!label) { return; }
    var n = document.querySelectorAll(".sample-pick:checked").length;
    label.textContent = n + " selected";
  };
  document.addEventListener("change", function (event) {
    if (event.target.id === "pick-pending") {
      picks().forEach(function (box) { box.checked = event.target.checked && box.dataset.pending === "1"; });
    }
    count();
  });
  document.addEventListener("htmx:afterSettle", function () {
    var all = document.getElementById("pick-pending");
    if (all) { all.checked = false; }
    count();
  });
})();
