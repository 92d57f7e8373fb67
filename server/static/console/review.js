// The follow-up record's print button: the browser's print (or save as PDF).
"use strict";
document.getElementById("print")?.addEventListener("click", () => window.print());
