// The buyer's balance page. Card top-up: Stripe.js turns the card into a token in the
// browser (the card number never reaches our server); the server charges it and
// answers with the top-up's state; a card that needs 3-D Secure is authenticated here
// with Stripe.js. Automatic top-up: the server opens a Stripe SetupIntent, Stripe.js
// confirms it with the card, and the server saves the confirmed card with the buyer's
// threshold and amount.

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

// Stripe.js says which part of the card is wrong (error.code): said under the card
// field. A refusal without a code ("Bad request" from a test server) still says what to
// check rather than nothing a buyer can act on.
const CARD_PROBLEMS = {
  incomplete_number: "Enter the whole card number.",
  invalid_number: "The card number is not valid: check it on your card.",
  incomplete_expiry: "Enter the card's expiry: month and year.",
  invalid_expiry_month: "The expiry month must be 01 to 12.",
  invalid_expiry_year: "The expiry year is not valid: enter it as two digits, e.g. 30.",
  invalid_expiry_year_past: "The card has expired: its expiry year is in the past.",
  invalid_expiry_month_past: "The card has expired: its expiry date is in the past.",
  incomplete_cvc: "Enter the card's security code (CVC), 3 or 4 digits.",
  invalid_cvc: "The security code (CVC) is not valid.",
  incomplete_zip: "Enter the postal code of the card's billing address.",
};
const CARD_REFUSED = "The card details were not accepted: check the number, the expiry " +
  "(month 01 to 12, year as two digits, not in the past) and the security code.";

// What both card forms share: Stripe.js with a card field and its error line, a line
// for other errors, and POSTs (the CSRF token in a header) answered in JSON.
function cardForm(form, cardSelector, errorBoxId) {
  const stripe = Stripe(form.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount(cardSelector);
  const errorBox = document.getElementById(errorBoxId);
  const cardField = document.querySelector(cardSelector);
  const cardError = document.getElementById(cardField.getAttribute("aria-describedby"));
  const showCardError = (message) => {
    cardError.textContent = message || "";
    cardField.classList.toggle("is-invalid", Boolean(message));
  };
  return {
    stripe,
    card,
    showError(message) {
      errorBox.textContent = message || "";
      errorBox.classList.toggle("d-none", !message);
      if (!message) showCardError("");
    },
    // An error from Stripe.js about the card the buyer typed.
    showCardProblem(error) {
      if (error && (error.type === "validation_error" || error.type === "invalid_request_error")) {
        showCardError(CARD_PROBLEMS[error.code] || (error.code && error.message) || CARD_REFUSED);
      } else {
        this.showError((error && error.message) || CARD_REFUSED);
      }
    },
    async post(url, body) {
      const response = await fetch(url, {
        method: "POST", body, credentials: "same-origin",
        headers: {"Accept": "application/json",
                  "X-CSRFToken": form.querySelector("[name=csrf_token]").value},
      });
      const result = await response.json().catch(
        () => ({error: {message: "The server did not answer."}}));
      return {ok: response.ok, result};
    },
  };
}

function setUpTopUp(form) {
  const cards = cardForm(form, "#card-element", "topup-error");
  const {stripe, card, showError, post} = cards;
  const button = document.getElementById("topup-submit");
  const busy = document.getElementById("topup-busy");
  const setBusy = (on) => {
    button.disabled = on;
    busy.classList.toggle("d-none", !on);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    setBusy(true);
    try {
      const {token, error} = await stripe.createToken(card);
      if (error || !token) {
        cards.showCardProblem(error);
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
        ({result} = await authenticate(result));
      } else if (result.status === "failed") {
        showError(result.message || "The card was declined.");
        return;
      }
      window.location.assign(result.redirect_url);
    } finally {
      setBusy(false);
    }
  });

  // Whatever the buyer chose at the 3-D Secure step, the server reads the outcome
  // from Stripe and the balance page says what happened.
  const authenticate = async (result) => {
    await stripe.confirmCardPayment(result.client_secret);
    return post(result.refresh_url, new FormData());
  };

  // "Finish paying" on a top-up left at its 3-D Secure step: back to that step.
  document.addEventListener("click", async (event) => {
    const resume = event.target.closest("[data-resume-url]");
    if (!resume) return;
    resume.disabled = true;
    try {
      let {ok, result} = await post(resume.dataset.resumeUrl, new FormData());
      if (!ok) {
        showError(result.error.message);
        return;
      }
      if (result.client_secret) ({result} = await authenticate(result));
      window.location.assign(result.redirect_url);
    } finally {
      resume.disabled = false;
    }
  });
}

function setUpAutoTopUp(form) {
  const cards = cardForm(form, "#auto-card-element", "auto-topup-form-error");
  const {stripe, card, showError, post} = cards;
  const button = document.getElementById("auto-topup-submit");

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
        cards.showCardProblem(error);
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
}

document.addEventListener("DOMContentLoaded", () => {
  pollBalance();
  if (typeof Stripe === "undefined") return;
  const topUp = document.getElementById("topup-form");
  if (topUp) setUpTopUp(topUp);
  const autoTopUp = document.getElementById("auto-topup-form");
  if (autoTopUp) setUpAutoTopUp(autoTopUp);
});
