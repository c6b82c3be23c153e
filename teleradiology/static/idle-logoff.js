// Idle logoff, the page's side (the server's is teleradiology/middleware.py).
// Requests a page sends by itself (elements marked data-background: the worklist's
// and the operations page's polling) carry "X-Background: 1" and do not count as use.
// Shortly before the session would end, a dialog offers "Stay signed in"; when the
// time is up, the page goes to the sign-in page.  The server's clock decides: the page
// asks it before warning and before leaving (another tab may have been in use).
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    const elt = event.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-background")) {
      event.detail.headers["X-Background"] = "1";
    }
  });

  const meta = document.querySelector('meta[name="idle-logoff"]');
  if (!meta) return;
  const timeout = Number(meta.content);
  const warning = Number(meta.dataset.warning);
  const keepaliveUrl = meta.dataset.keepalive;
  const loginUrl = meta.dataset.login;
  if (!(timeout > 0) || !keepaliveUrl) return;

  let timer = null;
  // setTimeout takes at most 2^31-1 ms (24.8 days); a longer wait would fire at once.
  function later(fn, ms) { return setTimeout(fn, Math.min(Math.max(ms, 0), 2147483647)); }
  let countdown = null;
  let deadline = Date.now() + timeout * 1000;

  const dialog = document.createElement("dialog");
  dialog.id = "idle-warning";
  dialog.className = "idle-warning";
  dialog.setAttribute("aria-labelledby", "idle-warning-title");
  dialog.innerHTML =
    '<h2 id="idle-warning-title">Still there?</h2>' +
    '<p>For the patients\' privacy you will be signed out in <strong class="idle-left"></strong> ' +
    "without activity.</p>" +
    '<button type="button" class="idle-stay">Stay signed in</button>';
  document.body.appendChild(dialog);
  const left = dialog.querySelector(".idle-left");
  const stay = dialog.querySelector(".idle-stay");

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }
  function goToLogin() {
    const next = window.location.pathname + window.location.search;
    window.location.assign(loginUrl + "?next=" + encodeURIComponent(next));
  }
  function showLeft() {
    const s = Math.max(Math.ceil((deadline - Date.now()) / 1000), 0);
    left.textContent = s >= 60 ? Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s" : s + " s";
  }
  function hideWarning() {
    clearInterval(countdown);
    countdown = null;
    if (dialog.open) dialog.close();
  }
  function showWarning() {
    showLeft();
    if (!countdown) countdown = setInterval(showLeft, 1000);
    if (!dialog.open) dialog.showModal();
    stay.focus();
  }
  // The server's answer: seconds left; warn, wait, or leave accordingly.
  function follow(data) {
    clearTimeout(timer);
    if (!data.signed_in || data.remaining <= 0) {
      goToLogin();
      return;
    }
    deadline = Date.now() + data.remaining * 1000;
    if (data.remaining > warning + 1) {
      hideWarning();
      timer = later(ask, (data.remaining - warning) * 1000);
    } else {
      showWarning();
      timer = later(ask, data.remaining * 1000 + 500);
    }
  }
  function ask() {
    fetch(keepaliveUrl, { headers: { "X-Background": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(follow)
      .catch(function () { timer = later(ask, 5000); });
  }
  stay.addEventListener("click", function () {
    fetch(keepaliveUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    })
      .then(function (r) { return r.json(); })
      .then(follow)
      .catch(function () { timer = later(ask, 1000); });
  });
  dialog.addEventListener("cancel", function (event) { event.preventDefault(); });
  // A request of the user's own (not polling) restarts the clock on the server.
  // (By the request's headers: after an outerHTML swap the event's element is the
  // polling element's parent.)
  document.addEventListener("htmx:afterRequest", function (event) {
    const config = event.detail.requestConfig;
    if (config && config.headers && config.headers["X-Background"] === "1") return;
    if (event.detail.successful) follow({ signed_in: true, remaining: timeout });
  });
  follow({ signed_in: true, remaining: timeout });
})();
