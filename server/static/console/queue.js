// The live queue: Server-Sent Events say "the queue changed", the rows are fetched again,
// new alarms flash and beep, and the countdowns tick from their data-due attributes.
(function () {
  "use strict";
  var rows = document.getElementById("queue-rows");
  var live = document.getElementById("live");
  var table = rows.closest("table");
  var flash = document.getElementById("new-alarm");
  var soundButton = document.getElementById("sound");
  var audio = document.getElementById("alert");
  var offsetMs = 0; // server clock minus browser clock
  var known = ids();

  function ids() { // alarm id -> how many repeats it has had
    var seen = new Map();
    rows.querySelectorAll("tr[data-alarm-id]").forEach(function (tr) {
      seen.set(tr.dataset.alarmId, Number(tr.dataset.repeats || 0));
    });
    return seen;
  }

  function syncClock() {
    var first = rows.querySelector("tr[data-now]");
    if (first) offsetMs = Number(first.dataset.now) - Date.now();
  }

  function minutesSeconds(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    var m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }

  function tick() {
    var now = Date.now() + offsetMs;
    rows.querySelectorAll("[data-due]").forEach(function (td) {
      var left = Number(td.dataset.due) - now;
      td.textContent = left > 0 ? minutesSeconds(left) : table.dataset.overdue;
      td.classList.toggle("overdue", left <= 0);
    });
    rows.querySelectorAll("[data-since]").forEach(function (td) {
      td.textContent = minutesSeconds(now - Number(td.dataset.since)) + " " + table.dataset.ago;
    });
  }

  function beep() {
    var played = audio.play();
    if (played && played.catch) {
      played.catch(function () { soundButton.hidden = false; }); // autoplay needs a click first
    }
  }

  soundButton.addEventListener("click", function () {
    soundButton.hidden = true;
    audio.play().catch(function () {});
  });

  function refresh() {
    return fetch("queue", { headers: { Accept: "text/html-fragment" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("login"); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        rows.innerHTML = html;
        syncClock();
        var now = ids();
        var fresh = [];
        var repeated = [];
        now.forEach(function (count, id) {
          if (!known.has(id)) fresh.push(id);
          else if (count > known.get(id)) repeated.push(id);
        });
        known = now;
        fresh.forEach(function (id) {
          var tr = rows.querySelector('tr[data-alarm-id="' + id + '"]');
          if (tr) tr.classList.add("new");
        });
        repeated.forEach(function (id) { // pressed again: the same row flashes and beeps
          var tr = rows.querySelector('tr[data-alarm-id="' + id + '"]');
          if (tr) tr.classList.add("repeated");
        });
        if (repeated.length) beep();
        if (fresh.length) {
          flash.hidden = false;
          setTimeout(function () { flash.hidden = true; }, 8000);
          beep();
        }
        tick();
      })
      .catch(function () {});
  }

  function showState(state) {
    live.className = "live " + state;
    live.textContent = state === "on" ? live.dataset.live : live.dataset.reconnecting;
  }

  function connect() {
    var source = new EventSource("events");
    source.addEventListener("hello", function () { showState("on"); refresh(); });
    source.addEventListener("queue", refresh);
    source.onerror = function () {
      showState("reconnecting");
      if (source.readyState === EventSource.CLOSED) { // refused outright (signed out?)
        refresh(); // goes to the sign-in page on 401
        setTimeout(connect, 2000);
      }
    };
  }

  syncClock();
  tick();
  setInterval(tick, 1000);
  connect();
})();
