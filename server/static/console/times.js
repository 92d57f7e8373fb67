// Epoch milliseconds in [data-ms] cells shown as local date and time (again with
// CareHubTimes.show(part) after a live page part was replaced).
var CareHubTimes = (function () {
  "use strict";
  function show(root) {
    root.querySelectorAll("[data-ms]").forEach(function (el) {
      el.textContent = new Date(Number(el.dataset.ms)).toLocaleString();
    });
  }
  show(document);
  return { show: show };
})();
