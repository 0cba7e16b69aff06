// A form with data-confirm asks before it is sent (inline handlers are refused by
// the Content Security Policy).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
