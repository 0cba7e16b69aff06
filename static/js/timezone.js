// Sign-up and joining a company: tell the server the browser's time zone, in which pages
// show times and new orders count caps and schedules (the account page changes it).
document.querySelectorAll("input[data-browser-timezone]").forEach(function (input) {
  try {
    input.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) { /* an old browser: the server keeps UTC */ }
});
