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
      var payload = { content: content, endpoint: field(form, "endpoint") };
      var maxTokens = field(form, "max_tokens");
      var temperature = field(form, "temperature");
      if (maxTokens) payload.max_tokens = Number(maxTokens);
      if (temperature) payload.temperature = Number(temperature);
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
