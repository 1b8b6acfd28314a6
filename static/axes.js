// The charts' x-axis (epoch, step or wall time), remembered per page kind (run pages, the compare
// page) in localStorage. The server never sees localStorage, so a page opened fresh (no ?x=) is
// drawn on the epoch axis and this script moves its charts to the remembered axis at once; an
// axis in the address (?x=, a shared link) wins and becomes the remembered one. A cookie would
// travel with every request, chart images included, and could not tell the two page kinds apart
// without path tricks. Without JavaScript the select and "Redraw" still work through ?x=.
"use strict";
(function () {
  const select = document.getElementById("x-axis");
  if (!select) return;
  const key = "cxr8.x." + (select.dataset.page || "page");
  const known = Array.prototype.map.call(select.options, function (o) { return o.value; });

  function remember(axis) {
    try { window.localStorage.setItem(key, axis); } catch (_) { /* private mode: not remembered */ }
  }

  function remembered() {
    try { return window.localStorage.getItem(key); } catch (_) { return null; }
  }

  function withAxis(href, axis) {
    const url = new URL(href, window.location.href);
    if (axis === "epoch") url.searchParams.delete("x"); else url.searchParams.set("x", axis);
    return url.toString();
  }

  function apply(axis) {
    select.value = axis;
    document.querySelectorAll("img.live-chart").forEach(function (img) {
      const next = withAxis(img.src, axis);
      if (next !== img.src) img.src = next;
    });
    window.history.replaceState(null, "", withAxis(window.location.href, axis));
  }

  if (new URLSearchParams(window.location.search).has("x")) {
    remember(select.value);
  } else {
    const saved = remembered();
    if (saved && saved !== select.value && known.indexOf(saved) >= 0) apply(saved);
  }
  select.addEventListener("change", function () {
    remember(select.value);
    apply(select.value);
  });
})();
