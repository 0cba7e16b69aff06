// Card top-up: Stripe.js turns the card into a token in the browser (the card number
// never reaches our server); the server charges it and answers with the top-up's
// state; a card that needs 3-D Secure is authenticated here with Stripe.js.

// While a payment waits for Stripe's webhook, refresh the balance cards every 2 s;
// once nothing waits any more, reload the page: what may be withdrawn and the
// statement below changed with the balance.
function pollBalance() {
  const live = document.getElementById("balance-live");
  if (!live || !live.dataset.pollUrl) return;
  setTimeout(async () => {
    const response = await fetch(live.dataset.pollUrl, {credentials: "same-origin"});
    if (response.ok) {
      const fragment = document.createElement("template");
      fragment.innerHTML = (await response.text()).trim();
      const next = fragment.content.firstElementChild;
      if (next && !next.dataset.pollUrl) {
        window.location.reload();
        return;
      }
      if (next) live.replaceWith(next);
    }
    pollBalance();
  }, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  pollBalance();
  const form = document.getElementById("topup-form");
  if (!form || typeof Stripe === "undefined") return;
  const stripe = Stripe(form.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  const errorBox = document.getElementById("topup-error");
  const button = document.getElementById("topup-submit");
  const busy = document.getElementById("topup-busy");

  const showError = (message) => {
    errorBox.textContent = message || "";
    errorBox.classList.toggle("d-none", !message);
  };
  const setBusy = (on) => {
    button.disabled = on;
    busy.classList.toggle("d-none", !on);
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
    setBusy(true);
    try {
      const {token, error} = await stripe.createToken(card);
      if (error || !token) {
        showError((error && error.message) || "Check the card details.");
        return;
      }
      const body = new FormData(form);
      body.set("token", token.id);
      let {ok, result} = await post(form.action, body);
      if (!ok) {
        showError(result.error.message);
        return;
      }
      if (result.status === "requires_action") {
        // Whatever the buyer chose, the server reads the outcome from Stripe and the
        // balance page says what happened.
        await stripe.confirmCardPayment(result.client_secret);
        ({result} = await post(result.refresh_url, new FormData()));
      } else if (result.status === "failed") {
        showError(result.message || "The card was declined.");
        return;
      }
      window.location.assign(result.redirect_url);
    } finally {
      setBusy(false);
    }
  });
});
