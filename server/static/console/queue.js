// The live queue: Server-Sent Events say "the queue changed", the rows are fetched again,
// new alarms flash and beep, and the countdowns tick from their data-due attributes.
(function () {
  "use strict";
  var rows = document.getElementById("queue-rows");
  var table = rows.closest("table");
  var flash = document.getElementById("new-alarm");
  var soundButton = document.getElementById("sound");
  var audio = document.getElementById("alert");
  var offsetMs = 0; // server clock minus browser clock
  var known = ids();
  var FLASH_MS = 5000;
  var flashing = new Map(); // alarm id -> { cls: "new" | "repeated", until: epoch ms }

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
    cue(now);
  }

  // unclaimed alarms ask louder as they wait (live_queue.unclaimed_level): marked, then
  // pulsing, with the tone again every CUE_REPEAT_MS, until someone claims them
  var cueS = (table.dataset.cueS || "").split(",").map(Number);
  var CUE_REPEAT_MS = 30000;
  var lastCueBeep = 0;
  function cue(now) {
    var loud = false;
    rows.querySelectorAll("tr[data-received]").forEach(function (tr) {
      var waited = (now - Number(tr.dataset.received)) / 1000;
      var level = tr.dataset.claimed ? 0 : cueS.filter(function (s) { return waited >= s; }).length;
      tr.classList.remove("cue-0", "cue-1", "cue-2");
      tr.classList.add("cue-" + level);
      if (level >= 2) loud = true;
    });
    if (loud && Date.now() - lastCueBeep >= CUE_REPEAT_MS) {
      lastCueBeep = Date.now();
      beep();
    }
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

  function update(html) {
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
    var until = Date.now() + FLASH_MS;
    fresh.forEach(function (id) { flashing.set(id, { cls: "new", until: until }); });
    repeated.forEach(function (id) { // pressed again: the same row flashes and beeps
      flashing.set(id, { cls: "repeated", until: until });
    });
    // a row keeps its cue through the re-renders of the next seconds (an SMS status
    // arriving just after would otherwise wipe it before anyone saw it)
    flashing.forEach(function (cue, id) {
      var tr = rows.querySelector('tr[data-alarm-id="' + id + '"]');
      if (cue.until < Date.now()) flashing.delete(id);
      else if (tr) tr.classList.add(cue.cls);
    });
    ringCalls();
    if (repeated.length) beep();
    if (fresh.length) {
      flash.hidden = false;
      setTimeout(function () { flash.hidden = true; }, 8000);
      beep();
    }
    tick();
  }

  // a home calling the centre rings (the alert in a loop) until someone answers
  var ringer = new Audio(audio.src);
  ringer.loop = true;
  function ringCalls() {
    if (rows.querySelector("tr[data-ringing]")) {
      if (ringer.paused) ringer.play().catch(function () { soundButton.hidden = false; });
    } else if (!ringer.paused) ringer.pause();
  }

  syncClock();
  ringCalls();
  tick();
  setInterval(tick, 1000);
  CareHubLive.follow("events", "queue", "./", update);
})();
