// Keyboard shortcuts of the queue and the alarm page, for an operator with a headset on:
// N the next alarm (the most urgent nobody has claimed: /console/next), A answer the home's
// call, C claim, K acknowledge. Each presses the page's own button (the same form, CSRF
// and all), so a key does nothing the mouse could not; keys typed into a field are text.
(function () {
  "use strict";
  var keys = document.getElementById("keys");
  if (!keys) return;

  function press(selector) {
    var el = document.querySelector(selector);
    if (!el || el.disabled || el.offsetParent === null) return false;
    el.click();
    return true;
  }

  var actions = {
    n: function () { window.location.assign(keys.dataset.next); return true; },
    a: function () { return press("#call-answer") || press("a.answer-call"); },
    c: function () { return press("#claim-form button"); },
    k: function () { return press("#ack-form button"); },
  };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    var act = actions[(event.key || "").toLowerCase()];
    if (act && act()) event.preventDefault();
  });
})();
