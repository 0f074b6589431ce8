// The Data pages: a file larger than the server accepts is refused before it is uploaded (the server would
// answer 413 after the upload), with the way to import it instead. No inline scripts: the CSP forbids them.
(function () {
  "use strict";

  function mib(bytes) {
    return (bytes / 1048576).toFixed(1) + " MiB";
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[type=file][data-max-bytes]")) return;
    var limit = parseInt(input.getAttribute("data-max-bytes"), 10);
    var file = input.files && input.files[0];
    var message = "";
    if (file && limit && file.size > limit) {
      message = file.name + " is " + mib(file.size) + "; the console takes files up to " + mib(limit) +
        " (FMOPS_MAX_BODY_BYTES): import it with `fmops data import FILE --name NAME`, which reads any size";
    }
    input.setCustomValidity(message);
    if (message) input.reportValidity();
  });
})();
