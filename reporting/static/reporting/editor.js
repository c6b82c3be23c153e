// The report editor: autosave state, macros, the critical-result dialog, the final
// signature's confirmation and shortcuts.
// The page works through htmx; this only adds what htmx does not do by itself.
(function () {
  const form = document.getElementById("report-form");
  const dialog = document.getElementById("critical-dialog");

  function saveState(kind, text) {
    const el = document.getElementById("save-state");
    if (!el) return;
    el.dataset.state = kind;
    el.textContent = text;
  }

  // A refusal (400 invalid, 403 not yours, 409 locked) carries a sentence for the page:
  // swap it in like a success, instead of htmx's default of dropping error responses.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    const status = event.detail.xhr.status;
    if (status === 400 || status === 403 || status === 409) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  if (form) {
    form.addEventListener("htmx:beforeRequest", function (event) {
      if (event.detail.elt === form) saveState("saving", "Saving…");
    });
    form.addEventListener("htmx:sendError", function () {
      saveState("error", "Not saved: the server cannot be reached. Your text is still here; keep typing or press Ctrl+S to try again.");
    });
    form.addEventListener("htmx:responseError", function (event) {
      if (event.detail.xhr.status >= 500) saveState("error", "Not saved: server error " + event.detail.xhr.status + ". Press Ctrl+S to try again.");
    });
  }

  // Macros: insert the chosen text at the cursor of the field, then save.
  document.querySelectorAll("select.macro").forEach(function (picker) {
    picker.addEventListener("input", function (event) { event.stopPropagation(); });
    picker.addEventListener("change", function (event) {
      event.stopPropagation();
      const option = picker.selectedOptions[0];
      const field = document.getElementById(picker.dataset.target);
      if (!option || !option.value || !field) return;
      const text = option.dataset.text || "";
      const start = field.selectionStart ?? field.value.length;
      const end = field.selectionEnd ?? field.value.length;
      field.setRangeText(text, start, end, "end");
      picker.value = "";
      field.focus();
      field.dispatchEvent(new Event("input", { bubbles: true }));
    });
  });

  function pad(n) { return String(n).padStart(2, "0"); }
  function localNow() {
    const d = new Date();
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function openDialog() {
    if (!dialog) return;
    document.getElementById("critical-error").textContent = "";
    const when = document.getElementById("c-when");
    if (!when.value) when.value = localNow();
    dialog.showModal();
    document.getElementById("c-name").focus();
  }
  const opener = document.getElementById("open-critical");
  if (opener) opener.addEventListener("click", openDialog);
  const closer = document.getElementById("close-critical");
  if (closer) closer.addEventListener("click", function () { dialog.close(); });
  const criticalForm = document.getElementById("critical-form");
  if (criticalForm) {
    // The browser's local time becomes an ISO instant with its offset.
    criticalForm.addEventListener("htmx:configRequest", function (event) {
      const local = document.getElementById("c-when").value;
      event.detail.parameters.communicated_at = local ? new Date(local).toISOString() : "";
    });
    criticalForm.addEventListener("htmx:afterRequest", function (event) {
      if (event.detail.successful && event.detail.xhr.status === 200) {
        criticalForm.reset();
        dialog.close();
        document.getElementById("open-critical").focus();
      }
    });
  }

  // Signing final locks the report and releases it to the facility: the button and
  // Ctrl+Enter ask once.  The dialog opens on its confirm button, so Enter signs
  // and Esc (the dialog's own cancel) goes back to the report.
  const signDialog = document.getElementById("sign-final-dialog");
  const signFinal = document.getElementById("sign-final");
  // Where the reader was (the field they typed Ctrl+Enter in, or the button): focus
  // goes back there when the dialog closes, as the browser's own dialog does, so the
  // two never race.
  let signOpener = null;
  function askToSignFinal() {
    if (!signDialog || signDialog.open || (dialog && dialog.open)) return;
    signOpener = document.activeElement;
    signDialog.showModal();
    document.getElementById("confirm-sign-final").focus();
  }
  if (signDialog) {
    signFinal.addEventListener("click", askToSignFinal);
    // htmx posts on the confirm button's click; the dialog only has to go away.
    document.getElementById("confirm-sign-final").addEventListener("click", function () { signDialog.close(); });
    document.getElementById("cancel-sign-final").addEventListener("click", function () { signDialog.close(); });
    signDialog.addEventListener("keydown", function (event) {
      // A held Enter (the tail of Ctrl+Enter) must not sign: only a fresh press does.
      if (event.key === "Enter" && (event.repeat || event.ctrlKey || event.metaKey)) event.preventDefault();
    });
    signDialog.addEventListener("close", function () {
      const back = signOpener && document.contains(signOpener) ? signOpener : signFinal;
      setTimeout(function () { back.focus(); }, 0);
    });
  }

  document.addEventListener("keydown", function (event) {
    const mod = event.ctrlKey || event.metaKey;
    if (mod && event.key === "s" && form) {
      event.preventDefault();
      htmx.trigger(form, "save-now");
    } else if (mod && event.key === "Enter" && form) {
      event.preventDefault();
      if (!event.repeat) askToSignFinal();
    } else if (event.altKey && (event.key === "c" || event.code === "KeyC") && dialog) {
      event.preventDefault();
      openDialog();
    }
  });
})();
