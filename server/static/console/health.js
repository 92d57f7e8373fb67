// The live health board: Server-Sent Events say "the board changed" (a fault, a hub's
// heartbeat, a failed SMS, a self-test, in any server process), the board is fetched again.
(function () {
  "use strict";
  var board = document.getElementById("board");
  var live = document.getElementById("live");

  function showTimes() {
    board.querySelectorAll("[data-ms]").forEach(function (el) {
      el.textContent = new Date(Number(el.dataset.ms)).toLocaleString();
    });
  }

  function refresh() {
    return fetch("health", { headers: { Accept: "text/html-fragment" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("login"); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        board.innerHTML = html;
        showTimes();
      })
      .catch(function () {});
  }

  function showState(state) {
    live.className = "live " + state;
    live.textContent = state === "on" ? live.dataset.live : live.dataset.reconnecting;
  }

  function connect() {
    var source = new EventSource("health/events");
    source.addEventListener("hello", function () { showState("on"); refresh(); });
    source.addEventListener("health", refresh);
    source.onerror = function () {
      showState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        refresh();
        setTimeout(connect, 2000);
      }
    };
  }

  connect();
})();
