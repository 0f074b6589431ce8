// fmops chat: the page's layout and keyboard. On a narrow screen the conversation list is a drawer
// (the menu button opens it; Esc, the close button, the backdrop or picking a conversation closes it;
// the rest of the page is inert while it is open). The skip link puts the focus in the message box.
// Esc closes what is open (the drawer, a menu), else stops the answer being written.
// Sending (Enter, Shift+Enter) lives in chat.js.
(function () {
  "use strict";

  var NARROW = window.matchMedia("(max-width: 760px)");

  function layout() { return document.querySelector("[data-chat-layout]"); }
  function menuButton() { return document.querySelector("[data-chat-menu]"); }
  function side() { return document.getElementById("chat-side"); }
  function main() { return document.getElementById("chat-main"); }
  function isOpen() { var el = layout(); return !!el && el.classList.contains("drawer-open"); }

  // While the drawer is open, everything else is out of reach (no focus, no clicks, not read out).
  function setInert(on) {
    [main(), menuButton(), document.querySelector("[data-chat-skip]")].forEach(function (el) {
      if (!el) return;
      el.inert = on;
      if (on) el.setAttribute("aria-hidden", "true"); else el.removeAttribute("aria-hidden");
    });
  }

  function openDrawer() {
    var el = layout();
    if (!el) return;
    el.classList.add("drawer-open");
    menuButton().setAttribute("aria-expanded", "true");
    setInert(true);
    var target = side().querySelector(".conversation.active .conversation-link") ||
      side().querySelector("[data-chat-close]");
    if (target) target.focus();
  }

  // `focus`: where the focus goes once closed ("menu": back to the button; "main": the thread).
  function closeDrawer(focus) {
    var el = layout();
    if (!el || !el.classList.contains("drawer-open")) return;
    el.classList.remove("drawer-open");
    menuButton().setAttribute("aria-expanded", "false");
    setInert(false);
    if (focus === "menu") menuButton().focus();
    else if (focus === "main") main().focus({ preventScroll: true });
  }

  function messageBox() { return document.querySelector("[data-chat-composer] textarea[name=content]"); }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
    if (target.closest("[data-chat-menu]")) {
      if (isOpen()) closeDrawer("menu"); else openDrawer();
    } else if (target.closest("[data-chat-close]")) {
      closeDrawer("menu");
    } else if (target.closest("#chat-side .conversation-link") && isOpen()) {
      closeDrawer("main"); // htmx opens the conversation in the main area
    } else if (target.closest("[data-chat-skip]")) {
      event.preventDefault();
      var box = messageBox();
      (box || main()).focus();
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.isComposing) return;
    if (isOpen()) {
      event.preventDefault();
      closeDrawer("menu");
      return;
    }
    var details = event.target.closest && event.target.closest("details[open]");
    if (details) { // a conversation's menu, the options, the feedback forms
      event.preventDefault();
      details.open = false;
      var summary = details.querySelector("summary");
      if (summary) summary.focus();
      return;
    }
    var stop = document.querySelector("[data-chat-stop]");
    if (stop && !stop.hidden) {
      event.preventDefault();
      stop.click(); // chat.js stops the answer; what came is kept
    }
  });

  // A list refresh (a conversation started, an answer done) that lands while a conversation's menu
  // is open would close it under the person renaming: it waits until the menu closes.
  var refreshWaiting = false;
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    var list = event.detail.target;
    if (!list || list.id !== "conversation-list" || !list.querySelector("details.menu[open]")) return;
    event.detail.shouldSwap = false;
    refreshWaiting = true;
  });
  document.addEventListener("toggle", function (event) {
    var menu = event.target;
    if (!refreshWaiting || menu.open || !menu.matches || !menu.matches("#conversation-list details.menu")) return;
    refreshWaiting = false;
    document.body.dispatchEvent(new CustomEvent("fmops:conversations"));
  }, true); // toggle does not bubble

  // Back to a wide screen: no drawer (and nothing left inert).
  NARROW.addEventListener("change", function (event) {
    if (!event.matches) closeDrawer(null);
  });
})();
