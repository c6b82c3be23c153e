// Live SLA countdowns and keyboard shortcuts (n: next case, c: claim the top row).
(function () {
  function fmt(seconds) {
    const sign = seconds < 0 ? "-" : "";
    const s = Math.abs(Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return sign + (h ? h + "h " : "") + String(m).padStart(2, "0") + "m " + String(r).padStart(2, "0") + "s";
  }
  function tick() {
    document.querySelectorAll("[data-due]").forEach(function (el) {
      const left = (Date.parse(el.dataset.due) - Date.now()) / 1000;
      el.textContent = fmt(left);
      el.classList.toggle("overdue", left < 0);
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("DOMContentLoaded", tick);
  document.addEventListener("keydown", function (event) {
    if (event.target.closest("input, textarea, select") || event.ctrlKey || event.metaKey) return;
    if (event.key === "n") { const b = document.getElementById("next-case"); if (b) b.click(); }
    if (event.key === "c") { const b = document.querySelector("button.claim"); if (b) b.click(); }
  });
})();
