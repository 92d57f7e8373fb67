// The live health board: a fault, a hub's heartbeat, a failed SMS or a self-test (in any
// server process) makes the board fetch itself again.
(function () {
  "use strict";
  var board = document.getElementById("board");
  CareHubLive.follow("health/events", "health", "health", function (html) {
    board.innerHTML = html;
  });
})();
