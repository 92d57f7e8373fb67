// Epoch milliseconds in [data-ms] cells shown as local date and time.
document.querySelectorAll("[data-ms]").forEach(function (el) {
  el.textContent = new Date(Number(el.dataset.ms)).toLocaleString();
});
