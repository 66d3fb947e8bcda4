"use strict";

/*
 * The browser client of chat.
 *
 * It speaks the server's own line protocol (README, "Reply grammar") over a
 * WebSocket at ./ws: each message it sends is one command line, each message
 * it receives is one server line. Every command gets exactly one OK or ERR
 * line, in order, so the commands sent and not yet answered are kept in a
 * queue and each OK or ERR answers the oldest.
 *
 * The list of users comes from LIST once after joining (and again on a
 * message from someone not listed, or an unknown recipient), and is kept
 * live by the server's presence notices (README, "Presence"): "INFO name
 * joined", "INFO name left", ... which the human format sends unasked.
 *
 * After joining, the page asks for the broadcasts the server keeps
 * (HISTORY) and shows them, each at its own time, before the live ones.
 * "/me text" in the message box is an action (ME) to everyone.
 *
 * Everything that comes from the server is put in the page with textContent,
 * never as markup: a message is text, whatever it contains.
 */
(() => {
  const MAX_ROWS = 500;
  // The presence notices of the human format: INFO name what-happened.
  const PRESENCE = /^([A-Za-z0-9]+) (joined|left|lost the connection|was disconnected by the server|did not come back|is back)/;
  const GONE = new Set(["left", "lost the connection", "was disconnected by the server", "did not come back"]);

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    quit: $("quit"),
    users: $("users"),
    userCount: $("user-count"),
    messages: $("messages"),
    join: $("join"),
    name: $("name"),
    joinError: $("join-error"),
    compose: $("compose"),
    target: $("target"),
    text: $("text"),
  };

  let socket = null; // the WebSocket, from connecting until closed
  let me = null; // our name, once registered
  let target = null; // where a message goes: a user's name, or null for everyone
  let pending = []; // commands sent and not answered yet, oldest first
  let listing = null; // the USER names of the LIST being answered
  let users = null; // the names of the last LIST, kept live by presence notices
  let bye = null; // the BYE line's text, when the server said why it closes
  let quitting = false;
  let resume = null; // { name, token } to take our name back after a drop

  // Building rows, text only

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clock(when) {
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function addRow(kind, ...parts) {
    return addRowAt(new Date(), kind, ...parts);
  }

  function addRowAt(when, kind, ...parts) {
    const box = ui.messages;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const row = el("li", "row " + kind);
    const time = el("time", "", clock(when));
    time.dateTime = when.toISOString();
    row.append(time, ...parts);
    box.append(row);
    while (box.childElementCount > MAX_ROWS) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
    return row;
  }

  function nameButton(name) {
    const button = el("button", "who", name);
    button.type = "button";
    button.title = "Send " + name + " a private message";
    button.addEventListener("click", () => choose(name));
    return button;
  }

  function addError(kind, context, reasonAndDetails) {
    const colon = reasonAndDetails.indexOf(": ");
    const reason = colon < 0 ? reasonAndDetails : reasonAndDetails.slice(0, colon);
    const details = colon < 0 ? "" : reasonAndDetails.slice(colon + 2);
    return addRow(
      kind,
      el("span", "badge", kind === "bye" ? "BYE" : "ERR"),
      el("span", "context", context),
      el("strong", "reason", reason),
      el("span", "text", details),
    );
  }

  function setStatus(text, state) {
    ui.status.textContent = text;
    ui.status.dataset.state = state;
  }

  // The connection

  function send(line, command) {
    socket.send(line);
    pending.push(command);
  }

  function joinLine(name) {
    // After a dropped connection the server holds the name for a while;
    // the resume token of the last session takes it back.
    return resume && same(resume.name, name) ? "JOIN " + name + " " + resume.token : "JOIN " + name;
  }

  function join(name) {
    ui.joinError.hidden = true;
    if (socket && socket.readyState === WebSocket.OPEN) {
      send(joinLine(name), { verb: "JOIN", name });
      return;
    }
    if (socket) return; // still connecting: its JOIN is on the way
    const url = new URL("ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    socket = ws;
    pending = [];
    listing = null;
    bye = null;
    quitting = false;
    setStatus("Connecting…", "connecting");
    ws.addEventListener("open", () => {
      setStatus("Connected, joining…", "connecting");
      send(joinLine(name), { verb: "JOIN", name });
    });
    ws.addEventListener("message", (event) => {
      if (ws === socket) receive(String(event.data));
    });
    ws.addEventListener("close", (event) => {
      if (ws === socket) closed(event);
    });
  }

  function closed(event) {
    socket = null;
    me = null;
    pending = [];
    listing = null;
    if (bye !== null) {
      setStatus("Disconnected by the server: " + bye, "error");
    } else if (quitting) {
      resume = null;
      setStatus("You left the chat", "idle");
    } else {
      const why = event.reason ? event.code + " " + event.reason : String(event.code);
      addError("error", "Connection closed", "Connection Closed: WebSocket code " + why);
      setStatus("Connection lost (WebSocket code " + event.code + ")", "error");
    }
    users = null;
    renderUsers();
    ui.compose.hidden = true;
    ui.quit.hidden = true;
    ui.join.hidden = false;
    ui.name.focus();
  }

  // Server lines (README, "Reply grammar")

  function receive(line) {
    const space = line.indexOf(" ");
    const tag = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? "" : line.slice(space + 1);
    switch (tag) {
      case "INFO":
        if (!presence(rest)) addRow("info", el("span", "text", rest));
        break;
      case "USER": // USER name, maybe followed by a note such as "(away)"
        if (listing) listing.push(rest.split(" ")[0]);
        break;
      case "MESG":
      case "BCST":
        relayed(tag, rest);
        break;
      case "*": // * sender text: an action (ME)
        acted(rest);
        break;
      case "HIST": // HIST time sender: text, or HIST time * sender text
        replayed(rest);
        break;
      case "OK":
        succeeded(rest);
        break;
      case "ERR":
        failed(rest);
        break;
      case "BYE":
        bye = rest;
        addError("bye", "Disconnected:", rest);
        break;
      default: // not in the grammar this page knows: show it as it came
        addRow("info", el("span", "text", line));
    }
  }

  // A presence notice: the list changes, and the row says what happened.
  function presence(text) {
    const match = PRESENCE.exec(text);
    if (match === null) return false;
    const [, name, what] = match;
    if (users !== null && what === "joined" && !users.some((old) => same(old, name))) {
      users = users.concat([name]);
    } else if (users !== null && GONE.has(what) && !(what === "lost the connection" && text.includes("; the name is held"))) {
      users = users.filter((old) => !same(old, name));
      if (same(name, target)) choose(null);
    }
    renderUsers();
    addRow("notice", el("span", "text", text));
    return true;
  }

  function relayed(kind, rest) {
    const colon = rest.indexOf(": ");
    const sender = colon < 0 ? "?" : rest.slice(0, colon);
    const text = colon < 0 ? rest : rest.slice(colon + 2);
    if (users !== null && !users.some((name) => same(name, sender))) list();
    addRow(
      kind.toLowerCase(),
      nameButton(sender),
      el("span", "badge", kind === "MESG" ? "to you" : "to everyone"),
      el("span", "text", text),
    );
  }

  function acted(rest) {
    const space = rest.indexOf(" ");
    const sender = space < 0 ? rest : rest.slice(0, space);
    if (users !== null && !users.some((name) => same(name, sender))) list();
    addRow("action", el("span", "badge", "*"), nameButton(sender),
      el("span", "text", space < 0 ? "" : rest.slice(space + 1)));
  }

  function replayed(rest) {
    const space = rest.indexOf(" ");
    const when = new Date(rest.slice(0, space));
    const line = rest.slice(space + 1);
    if (line.startsWith("* ")) {
      const action = line.slice(2);
      const gap = action.indexOf(" ");
      addRowAt(when, "history action", el("span", "badge", "earlier"), el("span", "badge", "*"),
        nameButton(action.slice(0, gap)), el("span", "text", action.slice(gap + 1)));
      return;
    }
    const colon = line.indexOf(": ");
    addRowAt(when, "history", el("span", "badge", "earlier"), nameButton(line.slice(0, colon)),
      el("span", "text", line.slice(colon + 2)));
  }

  function succeeded(rest) {
    const command = pending.shift() || { verb: "" };
    // OK VERB details: the first word of the details is the fact this page
    // needs (a name, a count); what may follow is for people.
    const details = rest.slice(rest.indexOf(" ") + 1);
    const first = details.split(" ")[0];
    switch (command.verb) {
      case "JOIN": {
        const token = /\(resume token: ([^\s)]+)\)/.exec(details);
        resume = token ? { name: first, token: token[1] } : null;
        joined(first);
        // What was said before: on request, never replayed unasked. (A
        // resume replays what was held instead.)
        if (!details.includes("resumed:")) send("HISTORY", { verb: "HISTORY" });
        break;
      }
      case "HISTORY": {
        const count = Number(first);
        if (count > 0) {
          const what = count === 1 ? "1 earlier message" : count + " earlier messages";
          addRow("notice", el("span", "text", what + " above; new ones below"));
        }
        break;
      }
      case "LIST":
        showUsers(listing || []);
        listing = null;
        break;
      case "MESG": // OK MESG recipient, the name as registered
        addRow("own", el("span", "me", "you"), el("span", "badge", "to " + first),
          el("span", "text", command.text));
        break;
      case "BCST":
      case "ME": {
        const count = Number(first);
        const reach = count === 1 ? "1 user" : count + " users";
        addRow("own", el("span", "me", "you"),
          el("span", "badge", command.verb === "ME" ? "*" : "to everyone"),
          el("span", "text", command.text), el("span", "note", "reached " + reach));
        break;
      }
      case "QUIT":
        addRow("info", el("span", "text", "You left the chat."));
        break;
      default:
        break;
    }
  }

  function failed(rest) {
    const command = pending.shift() || { verb: "" };
    let context = "";
    switch (command.verb) {
      case "JOIN":
        context = "Could not join as " + command.name + ":";
        resume = null; // a stale token must not stand in the way of a plain JOIN
        ui.joinError.textContent = rest;
        ui.joinError.hidden = false;
        if (me === null) setStatus("Not joined", "idle");
        break;
      case "MESG":
        context = "Not sent to " + command.to + ":";
        break;
      case "BCST":
      case "ME":
        context = "Not sent:";
        break;
      case "HISTORY":
        context = "No earlier messages:";
        break;
      case "LIST":
        listing = null;
        break;
      default:
        break;
    }
    addError("error", context, rest);
    if (rest.startsWith("Unknown Recipient:")) list();
  }

  function joined(name) {
    me = name;
    setStatus("Joined as " + me, "joined");
    ui.join.hidden = true;
    ui.joinError.hidden = true;
    ui.compose.hidden = false;
    ui.quit.hidden = false;
    choose(null);
    list();
  }

  // The list of users

  function list() {
    if (me === null || listing !== null || !socket || socket.readyState !== WebSocket.OPEN) return;
    listing = [];
    send("LIST", { verb: "LIST" });
  }

  function same(a, b) {
    return a !== null && b !== null && a.toLowerCase() === b.toLowerCase();
  }

  function showUsers(names) {
    users = names;
    if (target !== null && !names.some((name) => same(name, target))) choose(null);
    renderUsers();
  }

  function renderUsers() {
    const items = [];
    if (me !== null) {
      const everyone = el("button", "user everyone", "Everyone");
      everyone.type = "button";
      everyone.setAttribute("aria-pressed", String(target === null));
      everyone.addEventListener("click", () => choose(null));
      const item = el("li");
      item.append(everyone);
      items.push(item);
    }
    for (const name of users || []) {
      const item = el("li");
      const button = el("button", "user", name);
      button.type = "button";
      button.dataset.name = name;
      if (same(name, me)) {
        button.classList.add("self");
        button.disabled = true;
        button.append(el("span", "you", " (you)"));
      } else {
        button.setAttribute("aria-pressed", String(same(name, target)));
        button.addEventListener("click", () => choose(same(name, target) ? null : name));
      }
      item.append(button);
      items.push(item);
    }
    ui.users.replaceChildren(...items);
    ui.userCount.textContent = users && users.length ? "(" + users.length + ")" : "";
  }

  // Sending

  function choose(name) {
    target = name === null || same(name, me) ? null : name;
    ui.target.textContent = target === null ? "To everyone" : "To " + target;
    ui.target.classList.toggle("private", target !== null);
    ui.target.title = target === null ? "Messages go to everyone" : "Send to everyone instead";
    ui.text.placeholder =
      target === null ? "Message everyone (/me text: an action)" : "Private message to " + target;
    renderUsers();
    if (me !== null) ui.text.focus();
  }

  ui.join.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.name.value.trim();
    if (name) join(name);
  });

  ui.compose.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    const action = /^\/me\s+(\S.*)$/i.exec(text);
    if (action) send("ME " + action[1], { verb: "ME", text: action[1] });
    else if (target === null) send("BCST " + text, { verb: "BCST", text });
    else send("MESG " + target + " " + text, { verb: "MESG", to: target, text });
    ui.text.value = "";
  });

  ui.target.addEventListener("click", () => choose(null));

  ui.quit.addEventListener("click", () => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    quitting = true;
    send("QUIT", { verb: "QUIT" });
  });

  // Closing or leaving the page is leaving the chat: say so, rather than
  // have the server hold the name for a resume that cannot come.
  window.addEventListener("pagehide", () => {
    if (me !== null && socket && socket.readyState === WebSocket.OPEN) {
      quitting = true;
      socket.send("QUIT");
    }
  });

  setStatus("Not connected", "idle");
  ui.name.focus();
})();
