// fmops web UI: small behaviours shared by every page. No inline scripts (the CSP forbids them):
// pages opt in with data- attributes.
(function () {
  "use strict";

  // <time datetime="..."> is rendered in UTC on the server; show it in the reader's time zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.textContent = d.toLocaleString();
        el.setAttribute("data-local", "1");
      }
    });
  }

  // Copy buttons: <button data-copy="#id">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (source && navigator.clipboard) navigator.clipboard.writeText(source.textContent || source.value || "");
  });

  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSwap", function (event) { localTimes(event.target); });

  // Shared helpers for page scripts (chat.js, charts.js, ...).
  window.fmops = {
    csrf: function () { return document.body.getAttribute("data-csrf") || ""; },
    localTimes: localTimes,
  };
})();
