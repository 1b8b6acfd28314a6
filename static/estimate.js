// The new-run form's duration estimate: asks /api/estimate for the form's current values when a
// field that changes it is edited (the first time for a configuration the server times a few
// training steps, so answers can take seconds), and shows the "Start anyway" box when the run is
// estimated above an hour. Without this script the estimate is shown after starting.
"use strict";
(function () {
  const form = document.getElementById("new-run");
  const headline = document.getElementById("estimate-headline");
  const note = document.getElementById("estimate-note");
  const confirmRow = document.getElementById("confirm-long-row");
  if (!form || !headline || !window.fetch) return;
  // Only these change how long a run takes; other edits need no new estimate.
  const relevant = ["dataset", "labels", "images", "val_labels", "test_labels", "split", "val_fraction",
    "test_fraction", "per_class", "max_images", "image_size", "model", "norm", "width", "epochs",
    "batch_size", "device", "precision"];
  let asked = 0;
  let timer = null;

  function query() {
    const params = new URLSearchParams();
    relevant.forEach(function (name) {
      const field = form.elements.namedItem(name);
      if (!field) return;
      if (field.type === "checkbox") params.set(name, field.checked ? "true" : "false");
      else if (field.value.trim() !== "") params.set(name, field.value.trim());
    });
    return params.toString();
  }

  function show(body) {
    headline.textContent = body.headline || "No estimate.";
    note.textContent = body.summary || "";
    if (confirmRow) confirmRow.hidden = !body.needs_confirmation;
  }

  function refresh() {
    const mine = ++asked;
    headline.textContent = "Estimating (the first time for a configuration, a few training steps are timed)…";
    fetch("/api/estimate?" + query(), { headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (reply) {
        if (mine !== asked) return; // a newer edit is being estimated
        if (reply.ok) show(reply.body);
        else show({ headline: "No estimate: " + (reply.body.error || "the server refused it"), summary: "" });
      })
      .catch(function () {
        if (mine === asked) show({ headline: "No estimate: the server could not be reached.", summary: "" });
      });
  }

  form.addEventListener("change", function (event) {
    if (!event.target || relevant.indexOf(event.target.name) < 0) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  });
  refresh();
})();
