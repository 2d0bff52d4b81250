// The supervisor's board: draws the JSON snapshot (GET /supervisor/api/board, then every change from the
// server-sent events of /supervisor/events), counts the seconds on between snapshots, and sends the
// actions (POST /supervisor/api/actions with the session's CSRF token). Values are only ever set with
// textContent: an ANI or an agent id from the PABX cannot become markup.
(function () {
  "use strict";
  var L = JSON.parse(document.getElementById("labels").textContent);
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var myPhone = document.querySelector('meta[name="supervisor-phone"]').content;
  var boardEl = document.getElementById("board");
  var received = Date.now();
  var pending = null;   // the request the dialog asks about
  var asked = null;     // and what it is, for the answer's message

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(text, values) {
    return text.replace(/\{(\w+)\}/g, function (m, k) { return values[k] !== undefined ? values[k] : m; });
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(s) {
    if (s === null || s === undefined) return L.dash;
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return h ? h + ":" + pad(m) + ":" + pad(x) : m + ":" + pad(x);
  }
  function timer(s) {
    var t = el("span", "timer", clock(s));
    if (s !== null && s !== undefined) t.setAttribute("data-s", String(s));
    return t;
  }
  function badge(state) { return el("span", "badge b-" + state, L["state_" + state] || state); }
  function shown(v) { return v === null || v === undefined ? L.dash : String(v); }
  function who(a) { return a.name || a.agent || a.device; }
  function fact(dl, term, value) {
    dl.appendChild(el("dt", null, term));
    var dd = el("dd");
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = shown(value);
    dl.appendChild(dd);
  }
  function stat(dl, term, value, cls) {
    var d = el("div", cls);
    d.appendChild(el("dt", null, term));
    var dd = el("dd");
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = shown(value);
    d.appendChild(dd);
    dl.appendChild(d);
  }

  // ------------------------------------------------------------------ drawing
  function render(board) {
    received = Date.now();
    var frag = document.createDocumentFragment();
    board.links.forEach(function (link) { frag.appendChild(renderLink(link, board)); });
    boardEl.replaceChildren(frag);
  }

  function renderLink(link, board) {
    var sec = el("section", "link");
    sec.setAttribute("data-link", link.link);
    sec.appendChild(el("h2", null, L.link + " " + link.link + " · " + link.name));
    if (!link.up) sec.appendChild(el("p", "down", L.link_down + (link.down_reason ? ": " + link.down_reason : "")));
    sec.appendChild(el("h3", null, L.groups));
    var groups = el("div", "cards groups");
    if (!link.groups.length) groups.appendChild(el("p", "empty", L.no_groups));
    link.groups.forEach(function (g) { groups.appendChild(renderGroup(g, board)); });
    sec.appendChild(groups);
    sec.appendChild(el("h3", null, L.agents));
    var agents = el("div", "cards agents");
    if (!link.agents.length) agents.appendChild(el("p", "empty", L.no_agents));
    link.agents.forEach(function (a) { agents.appendChild(renderAgent(a, link)); });
    sec.appendChild(agents);
    return sec;
  }

  function renderGroup(g, board) {
    var card = el("article", "card group");
    card.setAttribute("data-group", g.group);
    card.appendChild(el("h4", null, L.group + " " + g.group));
    var stats = el("dl", "stats");
    var waiting = g.waiting === null ? L.dash : String(g.waiting.length);
    stat(stats, L.waiting, waiting, "waiting-count");
    var longest = g.waiting && g.waiting.length ? g.waiting[0].seconds : null;
    stat(stats, L.longest, longest === null ? L.dash : timer(longest));
    stat(stats, L.answered, g.answered, "answered");
    stat(stats, L.abandoned, g.abandoned, "abandoned");
    stat(stats, fmt(L.service_level, {seconds: board.service_level_seconds}),
         g.service_level === null ? L.dash : Math.round(g.service_level * 100) + "%", "service-level");
    card.appendChild(stats);
    if (g.waiting && g.waiting.length) {
      var ul = el("ul", "rows waiting");
      g.waiting.forEach(function (w) {
        var li = el("li");
        li.appendChild(el("span", "badge b-call", L.call_queued));
        li.appendChild(el("span", "ani", w.calling || L.dash));
        li.appendChild(timer(w.seconds));
        ul.appendChild(li);
      });
      card.appendChild(ul);
    }
    var counts = el("div", "counts");
    Object.keys(g.counts).forEach(function (s) {
      counts.appendChild(el("span", "badge b-" + s, (L["state_" + s] || s) + " " + g.counts[s]));
    });
    card.appendChild(counts);
    var members = el("ul", "rows members");
    g.agents.forEach(function (a) {
      var li = el("li");
      li.appendChild(badge(a.state));
      li.appendChild(el("span", null, who(a)));
      li.appendChild(timer(a.seconds));
      members.appendChild(li);
    });
    card.appendChild(members);
    return card;
  }

  function renderAgent(a, link) {
    var card = el("article", "card agent s-" + a.state);
    card.setAttribute("data-device", a.device);
    var head = el("div", "agent-head");
    head.appendChild(badge(a.state));
    head.appendChild(el("span", "name", who(a)));
    if (a.name && a.agent) head.appendChild(el("span", "agent-id", a.agent));
    head.appendChild(el("span", "device", L.device + " " + a.device));
    card.appendChild(head);
    var facts = el("dl", "facts");
    fact(facts, L.time_in_state, timer(a.seconds));
    if (a.reason_name) fact(facts, L.reason, a.reason_name);
    if (a.call) {
      var c = el("span", "call");
      c.appendChild(el("span", "badge b-call", L["call_" + a.call.state] || a.call.state));
      c.appendChild(document.createTextNode(" "));
      c.appendChild(el("span", "ani", a.call.calling || L.dash));
      c.appendChild(document.createTextNode(" · "));
      c.appendChild(timer(a.call.seconds));
      fact(facts, L.call, c);
    } else {
      fact(facts, L.call, L.no_call);
    }
    card.appendChild(facts);
    if (a.call) {                     // the call's actions, apart from the agent's
      var calls = el("div", "actions call-actions");
      calls.appendChild(button("hangup", a, link, "danger"));
      if (link.spy) ["listen", "whisper", "barge"].forEach(function (m) { calls.appendChild(button(m, a, link)); });
      card.appendChild(calls);
    }
    var on = a.state !== "logged_off" && a.agent;
    if (on) {
      var agent = el("div", "actions agent-actions");
      if (a.state !== "ready") agent.appendChild(button("ready", a, link));
      if (a.state !== "not_ready") agent.appendChild(button("pause", a, link));
      agent.appendChild(button("logoff", a, link, "danger"));
      card.appendChild(agent);
    }
    return card;
  }

  function button(action, a, link, cls) {
    var b = el("button", cls, L["action_" + action]);
    b.type = "button";
    b.setAttribute("data-action", action);
    b.addEventListener("click", function () { ask(action, a, link); });
    return b;
  }

  // ----------------------------------------------------------------- actions
  var dialog = document.getElementById("confirm");
  var reason = document.getElementById("reason");
  var phone = document.getElementById("phone");

  function ask(action, a, link) {
    pending = {link: link.link, action: action, device: a.device,
               call_id: action === "hangup" && a.call ? a.call.call_id : ""};
    asked = {action: action, who: who(a), device: a.device};
    document.getElementById("confirm-text").textContent =
      fmt(L["confirm_" + action], {agent: who(a), device: a.device});
    reason.replaceChildren();
    reason.appendChild(new Option(L.default_reason, ""));
    link.pause_reasons.forEach(function (r) { reason.appendChild(new Option(r.name, r.code)); });
    document.getElementById("reason-row").hidden = action !== "pause";
    document.getElementById("phone-row").hidden = ["listen", "whisper", "barge"].indexOf(action) < 0;
    phone.value = myPhone;
    if (typeof dialog.showModal === "function") dialog.showModal();
    else if (window.confirm(document.getElementById("confirm-text").textContent)) send();
  }

  document.getElementById("confirm-cancel").addEventListener("click", function () { pending = null; dialog.close(); });
  document.getElementById("confirm-ok").addEventListener("click", function () {
    if (dialog.open) dialog.close();
    send();
  });

  function send() {
    var body = pending, what = asked;
    pending = null;
    if (!body) return;
    var title = L["action_" + what.action] + " · " + what.who + " (" + what.device + ")";
    if (body.action === "pause") body.reason = reason.value;
    if (["listen", "whisper", "barge"].indexOf(body.action) >= 0) body.phone = phone.value.trim();
    fetch("/supervisor/api/actions", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body)
    }).then(function (r) {
      if (r.status === 401) { location.reload(); return null; }
      return r.json();
    }).then(function (answer) {
      if (!answer) return;
      if (answer.ok) toast(L.done + ": " + title, false);
      else toast(L.failed + ": " + title + " — " + (L["result_" + answer.result] || answer.message) +
                 " (" + L.result + " " + answer.result + ")", true);
    }).catch(function (e) { toast(L.failed + ": " + title + " — " + e, true); });
  }

  var toastTimer = null;
  function toast(text, bad) {
    var t = document.getElementById("toast");
    t.textContent = text;
    t.className = "show" + (bad ? " bad" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.className = ""; }, 6000);
  }

  // ------------------------------------------------------------- live updates
  setInterval(function () {
    var passed = Math.floor((Date.now() - received) / 1000);
    var timers = document.querySelectorAll(".timer[data-s]");
    for (var i = 0; i < timers.length; i++) {
      timers[i].textContent = clock(Number(timers[i].getAttribute("data-s")) + passed);
    }
  }, 1000);

  function live(on) {
    var e = document.getElementById("live");
    e.textContent = on ? L.live : L.reconnecting;
    e.className = on ? "live" : "live off";
  }

  function connect() {
    var es = new EventSource("/supervisor/events");
    es.onopen = function () { live(true); };
    es.onmessage = function (e) { live(true); render(JSON.parse(e.data)); };
    es.addEventListener("expired", function () { es.close(); location.reload(); });
    es.onerror = function () {
      live(false);
      if (es.readyState === EventSource.CLOSED) setTimeout(function () { location.reload(); }, 3000);
    };
  }

  render(JSON.parse(document.getElementById("initial").textContent));
  connect();
})();
