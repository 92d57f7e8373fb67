// Epoch milliseconds in [data-ms] cells shown as date and time in the account's language
// (the page's lang) and the centre's time zone (the page's data-time-zone), not the
// browser's: a dispatcher and the doctor on the phone read the same clock. Again with
// CareHubTimes.show(part) after a live page part was replaced.
var CareHubTimes = (function () {
  "use strict";
  var root = document.documentElement;
  var format = new Intl.DateTimeFormat(root.lang || undefined, {
    timeZone: root.dataset.timeZone || undefined,
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
  function show(part) {
    part.querySelectorAll("[data-ms]").forEach(function (el) {
      el.textContent = format.format(new Date(Number(el.dataset.ms)));
    });
  }
  show(document);
  return { show: show };
})();
