// Automatic top-up: the server opens a Stripe SetupIntent, Stripe.js confirms it
// with the card in the browser (the number never reaches our server), and the
// server saves the confirmed card with the buyer's threshold and amount.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("auto-topup-form");
  if (!form || typeof Stripe === "undefined") return;
  const stripe = Stripe(form.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#auto-card-element");
  const errorBox = document.getElementById("auto-topup-form-error");
  const button = document.getElementById("auto-topup-submit");

  const showError = (message) => {
    errorBox.textContent = message || "";
    errorBox.classList.toggle("d-none", !message);
  };
  const post = async (url, body) => {
    const response = await fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: {"Accept": "application/json",
                "X-CSRFToken": form.querySelector("[name=csrf_token]").value},
    });
    const result = await response.json().catch(() => ({error: {message: "The server did not answer."}}));
    return {ok: response.ok, result};
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    button.disabled = true;
    try {
      let {ok, result} = await post(form.dataset.setupUrl, new FormData(form));
      if (!ok) {
        showError(result.error.message);
        return;
      }
      const {setupIntent, error} = await stripe.confirmCardSetup(
        result.client_secret, {payment_method: {card}});
      if (error || !setupIntent) {
        showError((error && error.message) || "The card could not be saved.");
        return;
      }
      const body = new FormData(form);
      body.set("setup_intent_id", setupIntent.id);
      ({ok, result} = await post(form.action, body));
      if (!ok) {
        showError(result.error.message);
        return;
      }
      window.location.assign(result.redirect_url);
    } finally {
      button.disabled = false;
    }
  });
});
