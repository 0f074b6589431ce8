// The chat's assistants (templates/chat/_assistant.html): show the description and starters of the
// assistant picked, and send a starter when it is clicked (the composer sends it as if typed).
(function () {
  "use strict";

  function composer() {
    return document.querySelector("[data-chat-composer]");
  }

  function show() {
    var form = composer();
    var info = document.querySelector("[data-assistant-info]");
    if (!form || !info) return;
    var picker = form.querySelector("select[name=endpoint]");
    var chosen = picker ? picker.value : "";
    info.querySelectorAll("[data-assistant]").forEach(function (card) {
      card.hidden = card.getAttribute("data-assistant") !== chosen;
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target && event.target.matches("[data-chat-composer] select[name=endpoint]")) show();
  });

  document.addEventListener("click", function (event) {
    var starter = event.target && event.target.closest ? event.target.closest("[data-starter]") : null;
    if (!starter) return;
    var form = composer();
    var box = form && form.querySelector("textarea[name=content]");
    if (!box) return;
    box.value = starter.textContent.trim();
    if (typeof form.requestSubmit === "function") form.requestSubmit();
    else form.dispatchEvent(new Event("submit", { cancelable: true, bubbles: true }));
  });

  // Once the conversation has a message, starters are no longer offered.
  document.addEventListener("submit", function (event) {
    if (!event.target || !event.target.matches || !event.target.matches("[data-chat-composer]")) return;
    var box = event.target.querySelector("textarea[name=content]");
    if (!box || !box.value.trim()) return;
    document.querySelectorAll("[data-starters]").forEach(function (group) {
      group.remove();
    });
  }, true);

  // The thread is swapped by HTMX when another conversation opens: show its assistant's block.
  document.addEventListener("htmx:afterSwap", show);
  document.addEventListener("DOMContentLoaded", show);
})();
