/*
 * Web chat of Tự rà soát: talks to POST /api/v1/chat, nothing else.
 *
 * - A random user id is kept in localStorage, so a reload continues the same
 *   conversation on the server; the transcript shown is kept in sessionStorage
 *   (this tab only: on a shared phone the next person doesn't see it).
 * - Every send carries a random message_id and is retried with the same id
 *   after a network error: the server processes a message id only once.
 * - Buttons send the choice's payload; Enter sends the text (Shift+Enter: new line).
 */
(function () {
  "use strict";

  var USER_KEY = "tusoat.user";
  var LOG_KEY = "tusoat.transcript";
  var MAX_LOG = 200;
  var RETRIES = 2;

  var app = document.getElementById("app");
  var logWrap = document.getElementById("log-wrap");
  var log = document.getElementById("log");
  var typing = document.getElementById("typing");
  var form = document.getElementById("composer");
  var input = document.getElementById("text");
  var sendButton = document.getElementById("send");
  var restartButton = document.getElementById("restart");

  var endpoint = app.getAttribute("data-endpoint");
  var restartPayload = app.getAttribute("data-restart-payload") || "";
  var busy = false;

  function storage(kind) {
    try {
      var s = window[kind];
      s.setItem("tusoat.probe", "1");
      s.removeItem("tusoat.probe");
      return s;
    } catch (e) {
      return null; // private mode or disabled: work without persistence
    }
  }
  var local = storage("localStorage");
  var session = storage("sessionStorage");

  function randomId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function userId() {
    var id = local && local.getItem(USER_KEY);
    if (!id) {
      id = "web-" + randomId();
      if (local) local.setItem(USER_KEY, id);
    }
    return id;
  }
  var user = userId();

  var transcript = [];
  try {
    transcript = JSON.parse((session && session.getItem(LOG_KEY)) || "[]") || [];
  } catch (e) {
    transcript = [];
  }

  function saveTranscript() {
    if (!session) return;
    transcript = transcript.slice(-MAX_LOG);
    try {
      session.setItem(LOG_KEY, JSON.stringify(transcript));
    } catch (e) { /* full: the server still has the conversation */ }
  }

  function scrollDown() {
    logWrap.scrollTop = logWrap.scrollHeight;
  }

  function disableOldChoices() {
    var buttons = log.querySelectorAll("button.choice");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
  }

  function render(entry) {
    var item = document.createElement("li");
    item.className = "msg " + entry.who + (entry.result ? " result" : "");
    var who = document.createElement("span");
    who.className = "visually-hidden";
    who.textContent = entry.who === "user" ? "Bạn: " : entry.who === "bot" ? "Trợ lý: " : "Lỗi: ";
    item.appendChild(who);
    item.appendChild(document.createTextNode(entry.text));

    if (entry.choices && entry.choices.length) {
      var list = document.createElement("ul");
      list.className = "choices";
      list.setAttribute("aria-label", "Các lựa chọn");
      entry.choices.forEach(function (choice) {
        var li = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.className = "choice";
        button.textContent = choice.label;
        button.addEventListener("click", function () {
          if (busy || button.disabled) return;
          disableOldChoices();
          button.classList.add("picked");
          send({ payload: choice.payload, label: choice.label });
        });
        li.appendChild(button);
        list.appendChild(li);
      });
      item.appendChild(list);
    }
    if (entry.retry) {
      var again = document.createElement("button");
      again.type = "button";
      again.className = "choice";
      again.textContent = "Gửi lại";
      again.addEventListener("click", function () {
        if (busy) return;
        item.remove();
        send(entry.retry, true);
      });
      item.appendChild(document.createElement("br"));
      item.appendChild(again);
    }
    log.appendChild(item);
    scrollDown();
    return item;
  }

  function add(entry) {
    if (entry.who === "bot") disableOldChoices();
    if (!entry.retry) {
      transcript.push(entry);
      saveTranscript();
    }
    return render(entry);
  }

  function setBusy(on) {
    busy = on;
    typing.hidden = !on;
    sendButton.disabled = on;
    app.setAttribute("aria-busy", on ? "true" : "false");
    if (on) scrollDown();
  }

  function focusAfterReply(lastItem, typed) {
    var first = lastItem && lastItem.querySelector("button.choice:not(:disabled)");
    if (first) {
      first.focus({ preventScroll: true });
    } else if (typed) {
      input.focus({ preventScroll: true }); // keep the keyboard up while typing answers
    }
  }

  function post(body, attempt) {
    return fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    }).then(function (response) {
      if ((response.status === 503 || response.status === 502) && attempt < RETRIES) {
        return delay(500 * (attempt + 1)).then(function () { return post(body, attempt + 1); });
      }
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    }, function (error) {
      if (attempt < RETRIES) {
        return delay(500 * (attempt + 1)).then(function () { return post(body, attempt + 1); });
      }
      throw error;
    });
  }

  function delay(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  /* message: {text}, {payload, label} or {event}; silent: don't echo it as a user bubble. */
  function send(message, silent) {
    if (busy) return;
    var typed = message.text !== undefined;
    if (!silent) add({ who: "user", text: typed ? message.text : message.label });
    var body = { user: user, message_id: message.id || randomId() };
    message.id = body.message_id; // a manual retry reuses it: processed once
    if (typed) body.text = message.text;
    else if (message.event) body.event = message.event;
    else body.payload = message.payload;
    setBusy(true);
    post(body, 0).then(function (res) {
      setBusy(false);
      if (!res.ok) {
        var err = res.data && res.data.error;
        add({ who: "error", text: (err && err.message_vi) || "Không gửi được tin nhắn (lỗi " + res.status + ")." });
        return;
      }
      var first = null;
      var last = null;
      var messages = res.data.messages || [];
      messages.forEach(function (m, i) {
        last = add({
          who: "bot",
          text: m.text,
          choices: m.choices || [],
          result: Boolean(res.data.assessment) && i === 0,
        });
        first = first || last;
      });
      // Show the reply from its beginning (a long greeting or the result starts
      // with what matters); a short one simply ends at the bottom.
      if (first) logWrap.scrollTop = first.offsetTop - 8;
      focusAfterReply(last, typed);
    }, function () {
      setBusy(false);
      render({ who: "error", text: "Mất kết nối. Kiểm tra mạng rồi bấm “Gửi lại”.", retry: message });
    });
  }

  function autoGrow() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || busy) return;
    input.value = "";
    autoGrow();
    send({ text: text });
  });

  input.addEventListener("keydown", function (event) {
    // isComposing: Vietnamese input methods (Telex, VNI) use Enter to confirm a word.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });
  input.addEventListener("input", autoGrow);

  restartButton.addEventListener("click", function () {
    if (busy) return;
    if (!window.confirm("Xoá màn hình và làm lại từ đầu?")) return;
    transcript = [];
    saveTranscript();
    log.textContent = "";
    send({ payload: restartPayload, label: "Làm lại" }, true);
  });

  // Show what this tab already said; otherwise "open" the chat: the server greets a
  // new visitor, or shows a returning one (new tab) where they left off.
  transcript.forEach(render);
  if (!transcript.length) {
    send({ event: "follow" }, true);
  } else {
    // Only the newest bot message's buttons stay live.
    disableOldChoices();
    var items = log.querySelectorAll("li.msg");
    var lastItem = items[items.length - 1];
    if (lastItem && lastItem.classList.contains("bot")) {
      var own = lastItem.querySelectorAll("button.choice");
      for (var j = 0; j < own.length; j++) own[j].disabled = false;
    }
  }
})();
