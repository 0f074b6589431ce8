// fmops chat: send a message and show the answer token by token.
// The answer is read with fetch() + ReadableStream (an EventSource cannot POST). Text arrives as
// plain text (textContent: nothing in it is parsed as HTML); when the answer is complete the server
// sends it rendered (Markdown, escaped on the server), which replaces the text.
(function () {
  "use strict";

  var busy = false;
  var controller = null;

  function headers() {
    return {
      "Content-Type": "application/json",
      "Accept": "application/json",
      "X-CSRF-Token": window.fmops.csrf(),
    };
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function bubble(role, text) {
    var el = document.createElement("article");
    el.className = "msg " + role + (role === "assistant" ? " streaming" : "");
    el.setAttribute("data-testid", "message");
    el.setAttribute("data-role", role);
    var body = document.createElement("div");
    body.className = "body plain";
    body.textContent = text;
    el.appendChild(body);
    return el;
  }

  function flash(message) {
    var area = document.getElementById("flash");
    if (!area) return;
    var p = document.createElement("p");
    p.className = "flash error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    area.replaceChildren(p);
  }

  async function errorMessage(response) {
    try {
      var body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON */ }
    return "the request failed (" + response.status + ")";
  }

  function scrollDown(messages) {
    messages.scrollTop = messages.scrollHeight;
  }

  function swapIn(old, html) {
    var el = fromHtml(html);
    if (!el) return old;
    old.replaceWith(el);
    if (window.htmx) window.htmx.process(el);
    return el;
  }

  function field(form, name) {
    var el = form.elements.namedItem(name);
    return el ? el.value : "";
  }

  // Read `data: {...}` events off the response body and hand each to `handle`.
  async function readEvents(response, handle) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      var cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        var raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        raw.split("\n").forEach(function (line) {
          if (line.indexOf("data: ") === 0) handle(JSON.parse(line.slice(6)));
        });
      }
    }
  }

  // The options, remembered on the conversation by the server: an empty field forgets one.
  function params(form) {
    var maxTokens = field(form, "max_tokens");
    var temperature = field(form, "temperature");
    return {
      max_tokens: maxTokens ? Number(maxTokens) : null,
      temperature: temperature ? Number(temperature) : null,
    };
  }

  async function ensureConversation(form) {
    var id = form.getAttribute("data-conversation");
    if (id) return id;
    var response = await fetch("/chat/conversations", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ endpoint: field(form, "endpoint") }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    var created = await response.json();
    form.setAttribute("data-conversation", created.id);
    history.replaceState(null, "", created.url);
    if (window.fmopsChat && window.fmopsChat.created) await window.fmopsChat.created(created.id); // chat_tailoring.js
    return created.id;
  }

  async function send(form) {
    var input = form.elements.namedItem("content");
    var content = input.value;
    if (busy || !content.trim()) return;
    busy = true;
    var messages = document.getElementById("messages");
    var stop = form.querySelector("[data-chat-stop]");
    var submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    var empty = messages.querySelector("[data-empty]");
    var mine = bubble("user", content);
    var answer = bubble("assistant", "");
    var text = answer.querySelector(".body");
    try {
      var id = await ensureConversation(form);
      if (empty) empty.remove();
      messages.appendChild(mine);
      messages.appendChild(answer);
      input.value = "";
      scrollDown(messages);
      var payload = Object.assign({ content: content, endpoint: field(form, "endpoint") }, params(form));
      controller = new AbortController();
      stop.hidden = false;
      var response = await fetch("/chat/conversations/" + encodeURIComponent(id) + "/messages", {
        method: "POST",
        headers: headers(),
        body: JSON.stringify(payload),
        signal: controller.signal,
      });
      if (!response.ok) {
        // Refused before anything was saved (a stale form, a message too long): give the text back.
        mine.remove();
        answer.remove();
        input.value = content;
        flash(await errorMessage(response));
        return;
      }
      await readEvents(response, function (event) {
        if (event.type === "start") {
          mine = swapIn(mine, event.user_html);
          var title = document.querySelector("[data-testid=thread-title]");
          if (title) {
            title.textContent = event.title;
            title.id = "thread-title-" + event.conversation_id; // a rename from the list updates it
          }
          // The server has made (or moved up) the conversation: the list shows it now, not at the end.
          document.body.dispatchEvent(new CustomEvent("fmops:conversations"));
        } else if (event.type === "delta") {
          text.appendChild(document.createTextNode(event.text));
          scrollDown(messages);
        } else if (event.type === "done") {
          answer = swapIn(answer, event.html);
          scrollDown(messages);
        }
      });
    } catch (error) {
      if (error.name === "AbortError") {
        answer.classList.remove("streaming");
        answer.classList.add("failed");
      } else {
        flash(error.message || String(error));
        if (!input.value) input.value = content;
      }
    } finally {
      busy = false;
      controller = null;
      stop.hidden = true;
      submit.disabled = false;
      document.body.dispatchEvent(new CustomEvent("fmops:conversations"));
      document.body.dispatchEvent(new CustomEvent("fmops:usage"));
      input.focus();
    }
  }

  // --- the tools on a message: copy, regenerate, edit (a new version; the old one is kept) ---------

  function raw(article) {
    var template = article.querySelector("template[data-raw]");
    return template ? template.content.textContent : "";
  }

  async function copy(button) {
    var text = raw(button.closest("article"));
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      // No clipboard API (a page not served over HTTPS or localhost): the old way.
      var area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
    button.setAttribute("data-copied", "");
    setTimeout(function () {
      button.textContent = "Copy";
      button.removeAttribute("data-copied");
    }, 1500);
  }

  // After a regenerate or an edit the thread is reloaded: the branch shown, with its versions' arrows.
  async function reloadThread(conversationId) {
    var messages = document.getElementById("messages");
    var response = await fetch("/chat/conversations/" + encodeURIComponent(conversationId) + "/messages", {
      headers: { "HX-Request": "true" },
    });
    if (!response.ok) return;
    messages.innerHTML = await response.text();
    if (window.htmx) window.htmx.process(messages);
    scrollDown(messages);
  }

  function dropAfter(el) {
    while (el.nextElementSibling) el.nextElementSibling.remove();
  }

  // POST a regenerate or an edit and stream its answer into a new bubble placed by `place` once
  // the server accepted it. Answers {refused: message, content} when it did not.
  async function answerAgain(url, payload, place) {
    var form = document.querySelector("[data-chat-composer]");
    var stop = form && form.querySelector("[data-chat-stop]");
    var submit = form && form.querySelector("button[type=submit]");
    var messages = document.getElementById("messages");
    var answer = bubble("assistant", "");
    busy = true;
    controller = new AbortController();
    if (stop) stop.hidden = false;
    if (submit) submit.disabled = true;
    try {
      var response = await fetch(url, {
        method: "POST",
        headers: headers(),
        body: JSON.stringify(payload),
        signal: controller.signal,
      });
      if (!response.ok) {
        var body = null;
        try { body = await response.clone().json(); } catch (e) { /* not JSON */ }
        return { refused: await errorMessage(response), content: body && body.content };
      }
      place(answer);
      scrollDown(messages);
      var text = answer.querySelector(".body");
      await readEvents(response, function (event) {
        if (event.type === "delta") {
          text.appendChild(document.createTextNode(event.text));
          scrollDown(messages);
        } else if (event.type === "done") {
          answer = swapIn(answer, event.html);
        }
      });
      return {};
    } catch (error) {
      if (error.name !== "AbortError") flash(error.message || String(error));
      return {};
    } finally {
      busy = false;
      controller = null;
      if (stop) stop.hidden = true;
      if (submit) submit.disabled = false;
      document.body.dispatchEvent(new CustomEvent("fmops:conversations"));
      document.body.dispatchEvent(new CustomEvent("fmops:usage"));
    }
  }

  function messageUrl(article, action) {
    return "/chat/conversations/" + encodeURIComponent(article.getAttribute("data-conversation-id")) +
      "/messages/" + encodeURIComponent(article.getAttribute("data-message-id")) + "/" + action;
  }

  async function regenerate(article) {
    if (busy) return;
    var form = document.querySelector("[data-chat-composer]");
    var conversationId = article.getAttribute("data-conversation-id");
    var result = await answerAgain(messageUrl(article, "regenerate"), form ? params(form) : {}, function (answer) {
      dropAfter(article);
      article.replaceWith(answer); // the old answer stays a version: reachable with the arrows
    });
    if (result.refused) flash(result.refused);
    await reloadThread(conversationId);
  }

  function startEdit(article) {
    if (busy || article.querySelector("[data-edit-box]")) return;
    var body = article.querySelector(".body");
    var box = document.createElement("form");
    box.className = "edit-box stack";
    box.setAttribute("data-edit-box", "");
    var area = document.createElement("textarea");
    area.name = "content";
    area.rows = 3;
    area.value = raw(article);
    area.setAttribute("aria-label", "edit your message");
    area.setAttribute("data-testid", "edit-input");
    var bar = document.createElement("div");
    bar.className = "composer-bar";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.setAttribute("data-edit-cancel", "");
    cancel.setAttribute("data-testid", "edit-cancel");
    var save = document.createElement("button");
    save.type = "submit";
    save.className = "primary";
    save.textContent = "Send";
    save.setAttribute("data-testid", "edit-send");
    bar.append(cancel, save);
    box.append(area, bar);
    if (body) body.hidden = true;
    article.querySelector(".msg-tools").hidden = true;
    article.insertBefore(box, article.querySelector(".msg-tools"));
    area.focus();
  }

  function endEdit(article) {
    var box = article.querySelector("[data-edit-box]");
    if (box) box.remove();
    var body = article.querySelector(".body");
    if (body) body.hidden = false;
    article.querySelector(".msg-tools").hidden = false;
  }

  async function sendEdit(box) {
    var article = box.closest("article");
    var area = box.elements.namedItem("content");
    var content = area.value;
    if (busy || !content.trim()) return;
    var form = document.querySelector("[data-chat-composer]");
    var conversationId = article.getAttribute("data-conversation-id");
    var payload = Object.assign({ content: content }, form ? params(form) : {});
    area.readOnly = true;
    var result = await answerAgain(messageUrl(article, "edit"), payload, function (answer) {
      dropAfter(article);
      var mine = bubble("user", content);
      article.replaceWith(mine); // the old message stays a version: reachable with the arrows
      mine.after(answer);
    });
    if (result.refused) {
      // Nothing typed is lost: the box stays open with the text (as the server handed it back).
      area.readOnly = false;
      if (result.content) area.value = result.content;
      flash(result.refused);
      area.focus();
      return;
    }
    await reloadThread(conversationId);
  }

  document.addEventListener("click", function (event) {
    var tool = event.target.closest("[data-chat-copy], [data-chat-regenerate], [data-chat-edit], [data-edit-cancel]");
    if (!tool) return;
    var article = tool.closest("article");
    if (tool.hasAttribute("data-chat-copy")) copy(tool);
    else if (tool.hasAttribute("data-chat-regenerate")) regenerate(article);
    else if (tool.hasAttribute("data-chat-edit")) startEdit(article);
    else endEdit(article);
  });

  // In the edit box as in the composer: Enter sends, Shift+Enter starts a new line; Esc cancels.
  document.addEventListener("keydown", function (event) {
    var box = event.target.closest && event.target.closest("[data-edit-box]");
    if (!box || event.target.name !== "content") return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      box.requestSubmit();
    } else if (event.key === "Escape" && !event.target.readOnly) {
      event.preventDefault();
      event.stopPropagation();
      endEdit(box.closest("article"));
    }
  });

  document.addEventListener("submit", function (event) {
    var box = event.target.closest("[data-edit-box]");
    if (box) {
      event.preventDefault();
      sendEdit(box);
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-chat-composer]");
    if (!form) return;
    event.preventDefault();
    send(form);
  });

  // Enter sends, Shift+Enter starts a new line.
  document.addEventListener("keydown", function (event) {
    var form = event.target.closest && event.target.closest("[data-chat-composer]");
    if (!form || event.target.name !== "content") return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-chat-stop]") && controller) controller.abort();
  });

  // The open conversation is marked in the list, whichever way it was opened.
  function markOpen() {
    var open = new URLSearchParams(location.search).get("c");
    document.querySelectorAll(".conversation").forEach(function (li) {
      li.classList.toggle("active", li.id === "conv-" + open);
    });
  }
  document.addEventListener("htmx:pushedIntoHistory", markOpen);
  document.addEventListener("htmx:afterSettle", function (event) {
    markOpen();
    var messages = document.getElementById("messages");
    if (messages && event.target.id === "chat-main") scrollDown(messages);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var messages = document.getElementById("messages");
    if (messages) scrollDown(messages);
  });
})();
