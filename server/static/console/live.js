// A live page part: Server-Sent Events from `eventsUrl` say that `eventName` changed (in any
// server process); the part is fetched again from `fetchUrl` as an HTML fragment and handed
// to `onHtml`. The #live badge shows "Live" or "Reconnecting…"; after a server restart the
// browser reconnects by itself and the part is fetched again; a 401, or the stream's
// `signed-out` (the session ended), goes to the sign-in page.
var CareHubLive = (function () {
  "use strict";

  function follow(eventsUrl, eventName, fetchUrl, onHtml) {
    var live = document.getElementById("live");

    // One fetch at a time: events that arrive meanwhile ask for one more fetch after it.
    // Overlapping fetches may answer out of order, and an older answer rendered last would
    // leave the part stale until the next event (a repeated press went unseen that way).
    var inFlight = false;
    var again = false;

    function refresh() {
      if (inFlight) { again = true; return; }
      inFlight = true;
      again = false;
      fetch(fetchUrl, { headers: { Accept: "text/html-fragment" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) { window.location.assign("login"); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) onHtml(html); })
        .catch(function () {})
        .then(function () {
          inFlight = false;
          if (again) refresh();
        });
    }

    function showState(state) {
      live.className = "live " + state;
      live.textContent = state === "on" ? live.dataset.live : live.dataset.reconnecting;
    }

    function connect() {
      var source = new EventSource(eventsUrl);
      source.addEventListener("hello", function () { showState("on"); refresh(); });
      source.addEventListener(eventName, refresh);
      source.addEventListener("signed-out", function () { // this session ended
        source.close();
        window.location.assign("login");
      });
      source.onerror = function () {
        showState("reconnecting");
        if (source.readyState === EventSource.CLOSED) { // refused outright (signed out?)
          refresh(); // goes to the sign-in page on 401
          setTimeout(connect, 2000);
        }
      };
    }

    connect();
  }

  return { follow: follow };
})();
