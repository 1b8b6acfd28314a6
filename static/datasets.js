// Data set page: follows a cache build by polling the data set's JSON until it is ready or failed.
// Without this script the page shows the state at render time (reload to refresh).
(function () {
  "use strict";
  const section = document.getElementById("cache");
  if (!section || section.dataset.state !== "building") return;
  const bar = document.getElementById("cache-progress");
  const text = document.getElementById("cache-text");
  const error = document.getElementById("cache-error");
  const POLL_MS = 1000;

  function show(cache) {
    if (cache.total > 0) {
      bar.max = cache.total;
      bar.value = cache.done;
    }
    const size = cache.size ? cache.size + " px" : "";
    if (cache.state === "building") {
      text.textContent = "building at " + size + ": " + cache.done + " of " + cache.total + " images";
    } else if (cache.state === "ready") {
      bar.value = bar.max;
      text.textContent = "ready at " + size + " (" + cache.done + " images)";
    } else if (cache.state === "failed") {
      text.textContent = "the cache build at " + size + " failed; training will try again";
      error.textContent = cache.error || "unknown error";
      error.hidden = false;
    }
    section.dataset.state = cache.state;
  }

  function poll() {
    fetch(section.dataset.api, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (body) {
        show(body.cache);
        if (body.cache.state === "building") setTimeout(poll, POLL_MS);
      })
      // A dropped connection (server restarting) is retried more slowly.
      .catch(function () { setTimeout(poll, POLL_MS * 5); });
  }
  setTimeout(poll, POLL_MS);
})();
