// The annotator's page: the keyboard works the decision form (no inline scripts: the CSP forbids them).
// a accept · c correct (then Ctrl+Enter saves, Esc cancels) · s skip · 1-9 pick a label value.
(function () {
  "use strict";

  function setup() {
    var form = document.getElementById("decide");
    if (!form) return;
    var correction = document.getElementById("correction");
    var textarea = form.querySelector("textarea[name=corrected_output]");
    var save = form.querySelector("button[value=correct]");
    var sent = false;

    function submit(action) {
      if (sent) return;  // one decision per item, however fast the keys come
      var button = form.querySelector("button[name=action][value=" + action + "]");
      if (!button) return;
      sent = true;
      form.requestSubmit(button);
    }

    function correcting(on) {
      correction.hidden = !on;
      save.hidden = !on;
      if (on) { textarea.focus(); textarea.select(); }
    }

    form.querySelector("[data-action=correct]").addEventListener("click", function () { correcting(true); });

    document.addEventListener("keydown", function (event) {
      if (event.altKey || event.metaKey) return;
      var typing = event.target === textarea || (event.target && event.target.matches && event.target.matches("input[type=text], textarea"));
      if (typing) {
        if (event.key === "Enter" && event.ctrlKey) { event.preventDefault(); submit("correct"); }
        else if (event.key === "Escape") { event.preventDefault(); correcting(false); }
        return;
      }
      if (event.ctrlKey) return;
      var key = event.key.toLowerCase();
      if (key === "a") { event.preventDefault(); submit("accept"); }
      else if (key === "s") { event.preventDefault(); submit("skip"); }
      else if (key === "c") { event.preventDefault(); correcting(true); }
      else if (/^[1-9]$/.test(key)) {
        var radio = form.querySelector("input[type=radio][data-key='" + key + "']");
        if (radio) { event.preventDefault(); radio.checked = true; radio.focus(); }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setup();
    var form = document.getElementById("decide");
    if (form) form.setAttribute("data-keys", "ready");  // tests (and styles) can tell the keys work
  });
})();
