// fmops chat, tailored (issue 18): custom instructions, the prompt library, `/name` in the message
// box with suggestions, and each conversation's switch for the instructions. Everything the server
// sends is set as text (textContent, value), never parsed as HTML. chat.js calls
// window.fmopsChat.created(id) when it starts a conversation, so a switch set before is kept.
(function () {
  "use strict";

  var state = { instructions: { about: "", style: "" }, prompts: [], limits: {} };
  var pendingSwitch = true; // the switch of a conversation not yet started
  var COMMAND = /^\/([a-z0-9][a-z0-9_-]*)\s*$/;

  function headers() {
    return { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": window.fmops.csrf() };
  }

  async function call(method, url, body) {
    var response = await fetch(url, { method: method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 204) return null;
    var data = null;
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) {
      var message = data && data.error && data.error.message ? data.error.message : "the request failed (" + response.status + ")";
      throw new Error(message);
    }
    return data;
  }

  function flash(message, ok) {
    var area = document.getElementById("flash");
    if (!area) return;
    var p = document.createElement("p");
    p.className = "flash " + (ok ? "ok" : "error");
    p.setAttribute("role", ok ? "status" : "alert");
    p.setAttribute("data-testid", ok ? "tailoring-saved" : "tailoring-flash");
    p.textContent = message;
    area.replaceChildren(p);
  }

  function showError(form, message) {
    var el = form.querySelector("[data-tailoring-error]");
    if (!el) return flash(message);
    el.textContent = message || "";
    el.hidden = !message;
  }

  // Only the newest read counts: the page's first read, slow on a busy server, must not land after
  // the read that follows saving a prompt and hide it.
  var reads = 0;
  async function load() {
    var mine = ++reads;
    try {
      var fresh = await call("GET", "/chat/tailoring");
      if (mine !== reads) return;
      state = fresh;
    } catch (e) { /* signed out or offline: nothing to tailor with */ }
    if (mine !== reads) return;
    renderPrompts();
    syncSwitch();
  }

  // --- custom instructions ---------------------------------------------------------------------

  function counters(form) {
    var limit = state.limits.instructions || 1500;
    form.querySelectorAll("[data-counted]").forEach(function (area) {
      var counter = form.querySelector("[data-counter-for=" + area.name + "]");
      if (!counter) return;
      counter.textContent = area.value.length + " / " + limit;
      counter.classList.toggle("over", area.value.length > limit);
    });
  }

  function openInstructions() {
    var dialog = document.getElementById("tailoring-instructions");
    var form = dialog.querySelector("form");
    form.elements.namedItem("about").value = state.instructions.about || "";
    form.elements.namedItem("style").value = state.instructions.style || "";
    showError(form, "");
    counters(form);
    dialog.showModal();
  }

  async function saveInstructions(form) {
    try {
      state.instructions = await call("PUT", "/chat/tailoring/instructions", {
        about: form.elements.namedItem("about").value,
        style: form.elements.namedItem("style").value,
      });
      form.closest("dialog").close();
      flash("Custom instructions saved: they apply from your next message.", true);
      syncSwitch();
    } catch (error) {
      showError(form, error.message);
    }
  }

  // --- the prompt library ----------------------------------------------------------------------

  function renderPrompts() {
    var list = document.querySelector("[data-prompt-list]");
    if (!list) return;
    list.replaceChildren();
    if (!state.prompts.length) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = "No saved prompts yet.";
      list.appendChild(none);
    }
    state.prompts.forEach(function (p) {
      var li = document.createElement("li");
      li.setAttribute("data-testid", "saved-prompt");
      var name = document.createElement("span");
      name.className = "prompt-name";
      name.textContent = "/" + p.name;
      var text = document.createElement("span");
      text.className = "grow muted";
      text.textContent = p.description || p.template;
      li.append(name, text);
      var who = document.createElement("span");
      who.className = "muted";
      who.textContent = p.mine ? (p.shared ? "shared" : "private") : "shared by " + p.author;
      li.appendChild(who);
      if (p.mine) {
        var edit = document.createElement("button");
        edit.type = "button";
        edit.className = "link";
        edit.textContent = "Edit";
        edit.addEventListener("click", function () { editPrompt(p); });
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link danger";
        remove.textContent = "Delete";
        remove.setAttribute("aria-label", "Delete /" + p.name);
        remove.addEventListener("click", function () { deletePrompt(p); });
        li.append(edit, remove);
      }
      if (p.shared && state.can_promote) {
        var promote = document.createElement("button");
        promote.type = "button";
        promote.className = "link";
        promote.textContent = p.promoted_to ? "Promote again" : "Promote";
        promote.title = "Push it into the prompt registry as a new prompt or version (its author kept)";
        promote.setAttribute("data-testid", "promote-prompt");
        promote.addEventListener("click", function () { promotePrompt(p); });
        li.appendChild(promote);
      }
      list.appendChild(li);
    });
  }

  function editPrompt(p) {
    var form = document.querySelector("[data-tailoring-form=prompt]");
    form.elements.namedItem("name").value = p.name;
    form.elements.namedItem("description").value = p.description || "";
    form.elements.namedItem("template").value = p.template;
    form.elements.namedItem("shared").checked = p.shared;
    form.elements.namedItem("template").focus();
  }

  async function deletePrompt(p) {
    if (!window.confirm("Delete /" + p.name + "?")) return;
    try {
      await call("DELETE", "/chat/tailoring/prompts/" + encodeURIComponent(p.name));
      await load();
    } catch (error) {
      flash(error.message);
    }
  }

  async function promotePrompt(p) {
    try {
      var done = await call("POST", "/chat/tailoring/shared/" + encodeURIComponent(p.id) + "/promote");
      await load();
      var what = done.created ? "version " + done.version : "unchanged, version " + done.version;
      flash("/" + p.name + " is in the prompt registry as " + done.prompt + " (" + what + ", author " + done.author + ").", true);
    } catch (error) {
      flash(error.message);
    }
  }

  async function savePrompt(form) {
    try {
      var saved = await call("POST", "/chat/tailoring/prompts", {
        name: form.elements.namedItem("name").value.trim(),
        description: form.elements.namedItem("description").value || null,
        template: form.elements.namedItem("template").value,
        shared: form.elements.namedItem("shared").checked,
      });
      showError(form, "");
      form.reset();
      await load();
      flash("Saved /" + saved.name + ": type /" + saved.name + " in the message box to use it.", true);
    } catch (error) {
      showError(form, error.message);
    }
  }

  function findPrompt(name) {
    var mine = state.prompts.filter(function (p) { return p.name === name && p.mine; });
    return mine[0] || state.prompts.filter(function (p) { return p.name === name; })[0] || null;
  }

  // --- `/name` in the message box --------------------------------------------------------------

  var menu = null;
  var selected = 0;

  function input() {
    return document.querySelector("[data-chat-composer] textarea[name=content]");
  }

  function closeMenu() {
    if (menu) menu.remove();
    menu = null;
  }

  function suggestions(prefix) {
    var seen = {};
    return state.prompts.filter(function (p) {
      if (p.name.indexOf(prefix) !== 0 || seen[p.name]) return false;
      seen[p.name] = true;
      return true;
    });
  }

  function showMenu(box, found) {
    closeMenu();
    if (!found.length) return;
    menu = document.createElement("ul");
    menu.className = "slash-menu";
    menu.setAttribute("role", "listbox");
    menu.setAttribute("aria-label", "saved prompts");
    menu.setAttribute("data-testid", "slash-menu");
    selected = Math.min(selected, found.length - 1);
    found.forEach(function (p, i) {
      var li = document.createElement("li");
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === selected ? "true" : "false");
      li.setAttribute("data-name", p.name);
      var name = document.createElement("strong");
      name.textContent = "/" + p.name;
      var about = document.createElement("span");
      about.className = "muted";
      about.textContent = (p.description || p.template) + (p.mine ? "" : " · " + p.author);
      li.append(name, about);
      li.addEventListener("mousedown", function (event) {
        event.preventDefault();
        use(p.name);
      });
      menu.appendChild(li);
    });
    box.form.appendChild(menu);
  }

  function onType(box) {
    var match = /^\/([a-z0-9_-]*)$/.exec(box.value);
    if (!match) return closeMenu();
    showMenu(box, suggestions(match[1]));
  }

  async function use(name) {
    closeMenu();
    var box = input();
    var p = findPrompt(name);
    if (p && p.variables.length) return openFill(p);
    try {
      var filled = await call("POST", "/chat/tailoring/prompts/" + encodeURIComponent(name) + "/fill", { variables: {} });
      box.value = filled.text;
      box.focus();
    } catch (error) {
      flash(error.message);
    }
  }

  function openFill(p) {
    var dialog = document.getElementById("tailoring-fill");
    var form = dialog.querySelector("form");
    form.setAttribute("data-name", p.name);
    dialog.querySelector("#fill-heading").textContent = "/" + p.name;
    dialog.querySelector("[data-fill-description]").textContent = p.description || p.template;
    var fields = dialog.querySelector("[data-fill-fields]");
    fields.replaceChildren();
    p.variables.forEach(function (variable) {
      var label = document.createElement("label");
      label.textContent = variable;
      var area = document.createElement("textarea");
      area.name = variable;
      area.rows = 2;
      area.setAttribute("data-testid", "fill-" + variable);
      label.appendChild(area);
      fields.appendChild(label);
    });
    showError(form, "");
    dialog.showModal();
    var first = fields.querySelector("textarea");
    if (first) first.focus();
  }

  async function fill(form) {
    var values = {};
    form.querySelectorAll("[data-fill-fields] textarea").forEach(function (area) { values[area.name] = area.value; });
    var name = form.getAttribute("data-name");
    try {
      var filled = await call("POST", "/chat/tailoring/prompts/" + encodeURIComponent(name) + "/fill", { variables: values });
      form.closest("dialog").close();
      var box = input();
      box.value = filled.text;
      box.focus();
    } catch (error) {
      showError(form, error.message);
    }
  }

  // --- the conversation's switch ---------------------------------------------------------------

  function conversationId() {
    var form = document.querySelector("[data-chat-composer]");
    return form ? form.getAttribute("data-conversation") : "";
  }

  async function syncSwitch() {
    var bar = document.querySelector("[data-chat-composer] .composer-bar");
    if (!bar) return;
    var label = bar.querySelector(".instructions-switch");
    if (!label) {
      label = document.createElement("label");
      label.className = "instructions-switch";
      var box = document.createElement("input");
      box.type = "checkbox";
      box.setAttribute("data-testid", "instructions-switch");
      box.addEventListener("change", function () { setSwitch(box); });
      label.append(box, document.createTextNode(" My instructions"));
      var spacer = bar.querySelector(".spacer");
      bar.insertBefore(label, spacer);
    }
    var check = label.querySelector("input");
    var set = !!((state.instructions.about || "").trim() || (state.instructions.style || "").trim());
    label.hidden = !set;
    label.title = "Send your custom instructions with this conversation";
    var id = conversationId();
    if (!id) {
      check.checked = pendingSwitch;
      return;
    }
    try {
      check.checked = (await call("GET", "/chat/conversations/" + encodeURIComponent(id) + "/tailoring")).instructions;
    } catch (e) { /* the conversation is gone: chat.js says so */ }
  }

  async function setSwitch(check) {
    var id = conversationId();
    if (!id) {
      pendingSwitch = check.checked;
      return;
    }
    try {
      await call("PUT", "/chat/conversations/" + encodeURIComponent(id) + "/tailoring", { instructions: check.checked });
    } catch (error) {
      check.checked = !check.checked;
      flash(error.message);
    }
  }

  window.fmopsChat = window.fmopsChat || {};
  window.fmopsChat.created = async function (id) {
    if (pendingSwitch) return;
    await call("PUT", "/chat/conversations/" + encodeURIComponent(id) + "/tailoring", { instructions: false });
    pendingSwitch = true;
  };

  // --- wiring ----------------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-tailoring-open]");
    if (opener) {
      if (opener.getAttribute("data-tailoring-open") === "instructions") openInstructions();
      else document.getElementById("tailoring-prompts").showModal();
      return;
    }
    var closer = event.target.closest("[data-tailoring-close]");
    if (closer) closer.closest("dialog").close();
  });

  document.addEventListener("input", function (event) {
    var form = event.target.closest("[data-tailoring-form=instructions]");
    if (form) counters(form);
    if (event.target.matches("[data-chat-composer] textarea[name=content]")) onType(event.target);
  });

  // Capture: before chat.js sends, a message that is only `/name` uses the saved prompt instead.
  document.addEventListener("submit", function (event) {
    var tailoring = event.target.closest("[data-tailoring-form]");
    if (tailoring) {
      event.preventDefault();
      var kind = tailoring.getAttribute("data-tailoring-form");
      if (kind === "instructions") saveInstructions(tailoring);
      else if (kind === "prompt") savePrompt(tailoring);
      else fill(tailoring);
      return;
    }
    var composer = event.target.closest("[data-chat-composer]");
    if (!composer) return;
    var box = composer.elements.namedItem("content");
    var match = box ? COMMAND.exec(box.value) : null;
    if (!match) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    use(match[1]);
  }, true);

  // Capture: while the suggestions are open, arrows move, Enter or Tab picks, Escape closes.
  document.addEventListener("keydown", function (event) {
    if (!menu || !event.target.matches("[data-chat-composer] textarea[name=content]")) return;
    var items = menu.querySelectorAll("li");
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      selected = (selected + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      items.forEach(function (li, i) { li.setAttribute("aria-selected", i === selected ? "true" : "false"); });
    } else if (event.key === "Enter" || event.key === "Tab") {
      use(items[selected].getAttribute("data-name"));
    } else if (event.key === "Escape") {
      closeMenu();
    } else {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
  }, true);

  document.addEventListener("focusout", function (event) {
    if (event.target.matches && event.target.matches("[data-chat-composer] textarea[name=content]")) {
      var box = event.target;  // a blur that the box gets back from at once keeps the suggestions
      setTimeout(function () { if (document.activeElement !== box) closeMenu(); }, 150);
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id === "chat-main") {
      pendingSwitch = true;
      syncSwitch();
    }
  });

  document.addEventListener("DOMContentLoaded", load);
})();
