// A fine-tune's page: keep the log tail scrolled to its newest line after each refresh, unless the
// reader has scrolled up to read. No inline scripts (the CSP forbids them).
(function () {
  "use strict";
  var pinned = true;

  function follow(root) {
    var log = root.querySelector(".ft-log");
    if (log && pinned) log.scrollTop = log.scrollHeight;
  }

  document.addEventListener("scroll", function (event) {
    var log = event.target;
    if (log && log.classList && log.classList.contains("ft-log")) {
      pinned = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    }
  }, true);
  document.addEventListener("DOMContentLoaded", function () { follow(document); });
  document.addEventListener("htmx:afterSwap", function () { follow(document); });
})();
