// The handover page's Print button (a printable page: console.css hides the bar in print).
document.getElementById("print")?.addEventListener("click", () => window.print());
