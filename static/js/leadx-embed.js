// The embed snippet of a hosted lead form (SPEC §14): put
//   <div data-leadx-form="PUBLIC_ID"></div>
//   <script src="https://EXCHANGE/static/js/leadx-embed.js" async></script>
// on a page, and the form appears there in a frame served by the exchange. The form
// posts to the exchange from its own frame, so the host page never sees what the
// visitor types and no cross-origin request is made; this script only tells the frame
// which page it is on (for the certificate: its address without the query) and follows
// its height.
(function () {
  "use strict";
  var script = document.currentScript;
  var origin = new URL(script ? script.src : "/", document.baseURI).origin;

  function bare(address) {
    if (!address) return "";
    var url = new URL(address);
    return url.origin + url.pathname;
  }

  function mount(slot) {
    if (slot.getAttribute("data-leadx-mounted")) return;
    slot.setAttribute("data-leadx-mounted", "1");
    // Without query or fragment: a page's own query may carry a visitor's details
    // (?email=…), and the frame's address ends up in logs.
    var query = "?embed=1&page=" + encodeURIComponent(bare(location.href)) +
      "&ref=" + encodeURIComponent(bare(document.referrer));
    var frame = document.createElement("iframe");
    frame.src = origin + "/f/" + encodeURIComponent(slot.getAttribute("data-leadx-form")) + query;
    frame.title = slot.getAttribute("data-leadx-title") || "Sign-up form";
    frame.style.width = "100%";
    frame.style.border = "0";
    frame.style.minHeight = "420px";
    slot.appendChild(frame);
    window.addEventListener("message", function (event) {
      if (event.origin !== origin || event.source !== frame.contentWindow) return;
      var height = event.data && event.data.leadxFormHeight;
      if (typeof height === "number" && height > 0) {
        frame.style.minHeight = "0";
        frame.style.height = Math.ceil(height) + "px";
      }
    });
  }

  function mountAll() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-leadx-form]"), mount);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
