// The alarm page's actions without a page load: each form (class "act") is posted by
// fetch, and the screen is replaced by the one the server answers with. The operator keeps
// their place and what they typed elsewhere; the view is not written to the audit log again
// (only opening the page is); a call in progress goes on. Without JavaScript the forms post
// and reload as before.
(function () {
  "use strict";
  var FRAGMENT = "text/html-fragment";

  // The call panel (call.js) holds a live call: its elements, listeners and audio are
  // kept, and only whether a call may be made comes from the fresh screen.
  function keepCallPanel(fresh) {
    var live = document.getElementById("call");
    var stale = fresh.querySelector("#call");
    if (!live || !stale) return;
    var home = live.querySelector("#call-home"), freshHome = stale.querySelector("#call-home");
    if (home && freshHome) home.disabled = freshHome.disabled;
    stale.replaceWith(live);
  }

  // What the operator is typing in another form (a note begun while an acknowledgement
  // was on its way) goes over to the fresh screen, focus and caret too, even in a field
  // still empty (else the next keys typed would reach the page's shortcuts); the form
  // just posted starts empty, as after a page load.
  function keepTyping(screen, fresh, posted) {
    var focused = document.activeElement;
    var typed = "form[id] input:not([type]), form[id] input[type=text], form[id] textarea";
    screen.querySelectorAll(typed).forEach(function (el) {
      var changed = el.value !== el.defaultValue;
      if (el.form === posted || (!changed && el !== focused)) return;
      var twin = fresh.querySelector("#" + el.form.id + " [name='" + el.name + "']");
      if (!twin) return;
      if (changed) twin.value = el.value;
      if (el === focused) {
        twin.dataset.refocus = String(el.selectionStart) + ":" + String(el.selectionEnd);
      }
    });
  }

  function refocus(fresh) {
    var el = fresh.querySelector("[data-refocus]");
    if (!el) return;
    var caret = el.dataset.refocus.split(":");
    delete el.dataset.refocus;
    el.focus();
    el.setSelectionRange(Number(caret[0]), Number(caret[1]));
  }

  function replaceScreen(html, posted) {
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("alarm-screen");
    var screen = document.getElementById("alarm-screen");
    if (!fresh || !screen) return false;
    keepCallPanel(fresh);
    keepTyping(screen, fresh, posted);
    screen.replaceWith(fresh);
    refocus(fresh);
    return true;
  }

  function showError(form, text) {
    var box = form.querySelector(".error");
    if (!box) {
      box = document.createElement("span");
      box.className = "error";
      box.setAttribute("role", "alert");
      form.appendChild(box);
    }
    box.textContent = text;
  }

  // the time since the incident's first alarm, on the server's clock (the page's data-now)
  function since() {
    var el = document.querySelector("#incident .since[data-since]");
    if (!el) return;
    if (!el.dataset.offset) el.dataset.offset = String(Number(el.dataset.now) - Date.now());
    var s = Math.max(0, Math.round((Date.now() + Number(el.dataset.offset) - Number(el.dataset.since)) / 1000));
    el.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  since();
  setInterval(since, 1000);

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("act")) return;
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: FRAGMENT },
      credentials: "same-origin",
    }).then(function (response) {
      return response.text().then(function (text) {
        if (response.ok && replaceScreen(text, form)) return;
        if (button) button.disabled = false;
        var detail = text;
        try { detail = JSON.parse(text).detail || text; } catch (e) { /* not JSON */ }
        showError(form, detail);
      });
    }).catch(function () {
      if (button) button.disabled = false;
      showError(form, "…");
    });
  });
})();
