// The buyer's work list: "all on this page" and the count of chosen leads. The list is
// swapped by htmx, so this listens on the document rather than on its elements.
function chosenBoxes() {
  return Array.from(document.querySelectorAll('input[name="sale_id"][form="worklist-bulk"]'));
}

function showChosen() {
  const count = document.getElementById("chosen-count");
  const all = document.getElementById("choose-all");
  if (!count) return;
  const boxes = chosenBoxes();
  const chosen = boxes.filter((box) => box.checked).length;
  count.textContent = chosen ? `${chosen} chosen` : "none chosen";
  if (all) all.checked = boxes.length > 0 && chosen === boxes.length;
}

document.addEventListener("change", (event) => {
  if (event.target.id === "choose-all") {
    chosenBoxes().forEach((box) => { box.checked = event.target.checked; });
  }
  if (event.target.id === "choose-all" || event.target.name === "sale_id") showChosen();
});
document.addEventListener("htmx:afterSettle", showChosen);
document.addEventListener("DOMContentLoaded", showChosen);
