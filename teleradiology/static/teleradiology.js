// Live SLA countdowns, the viewer window and keyboard shortcuts (n: next case,
// c: claim the top row, i or Alt+I: open the images of the focused row or page).
(function () {
  // The same words as worklist/templatetags/reading_flow.py, which renders the first.
  function clock(seconds) {
    const s = Math.max(Math.round(seconds), 0);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + "h " : "") + String(m).padStart(2, "0") + "m " + String(r).padStart(2, "0") + "s";
  }
  function span(seconds) {
    const s = Math.max(Math.floor(seconds), 0);
    if (s < 60) return "<1m";
    const minutes = Math.floor(s / 60);
    const h = Math.floor(minutes / 60) % 24, d = Math.floor(minutes / 1440), m = minutes % 60;
    if (d) return d + "d " + String(h).padStart(2, "0") + "h";
    if (h) return h + "h " + String(m).padStart(2, "0") + "m";
    return m + "m";
  }
  function tick() {
    document.querySelectorAll("[data-due]").forEach(function (el) {
      const left = (Date.parse(el.dataset.due) - Date.now()) / 1000;
      const overdue = left < 0;
      el.textContent = overdue
        ? "overdue by " + span(-left)
        : (el.dataset.duePhrase === "yes" ? "due in " : "") + clock(left);
      el.classList.toggle("overdue", overdue);
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("DOMContentLoaded", tick);

  // A series thumbnail the server cannot render gives way to its caption.
  function thumbMissing(img) { img.closest(".series-thumb").classList.add("thumb-missing"); }
  document.addEventListener("error", function (event) {
    if (event.target.matches && event.target.matches("img.thumb")) thumbMissing(event.target);
  }, true);
  document.querySelectorAll("img.thumb").forEach(function (img) {
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) thumbMissing(img);
  });

  // The viewer opens in its one named window (the link's target), brought to the front.
  function openImages(link) {
    const viewer = window.open(link.href, link.target || "telerad-viewer");
    if (viewer) viewer.focus();
    return viewer !== null;
  }
  function imagesLink() {
    const active = document.activeElement;
    const row = active && active.closest ? active.closest("tr[data-study]") : null;
    return (row && row.querySelector("a.open-images")) || document.querySelector("a.open-images");
  }
  document.addEventListener("click", function (event) {
    const link = event.target.closest && event.target.closest("a.open-images");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (openImages(link)) event.preventDefault();  // else the link's own target="..." does it
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.repeat) return;
    if (event.altKey) {
      // Alt+I works in a text field too (the report editor); by code, as macOS's
      // Option+I types a character.
      if (event.code === "KeyI") {
        const link = imagesLink();
        if (link) { event.preventDefault(); openImages(link); }
      }
      return;
    }
    if (event.target.closest("input, textarea, select, dialog")) return;
    if (event.key === "n") { const b = document.getElementById("next-case"); if (b) b.click(); }
    if (event.key === "c") {
      // The top row's button (a "next case only" row has none: "c" picks no other
      // row); on a study page, its own.
      const top = document.querySelector("#worklist-body tr");
      const b = (top || document).querySelector("button.claim");
      if (b) b.click();
    }
    if (event.key === "i") { const link = imagesLink(); if (link) openImages(link); }
  });
})();
