// Live updates for the compare page: while one of its runs is queued or running, follows
// /compare/events (one Server-Sent Events stream for all compared runs), redraws the charts when
// an epoch lands and updates the status badges. The page works without it.
"use strict";
(function () {
  const legend = document.getElementById("compare-runs");
  if (!legend || !window.EventSource || legend.dataset.live !== "true") return;

  const statuses = {};
  document.querySelectorAll("[data-status-of]").forEach(function (badge) {
    statuses[badge.dataset.statusOf] = badge.textContent.trim();
  });

  // The ids in data-runs are already URL-encoded and comma-separated.
  const source = new EventSource(
    "/compare/events?runs=" + legend.dataset.runs + "&after=" + encodeURIComponent(legend.dataset.after || "0"));

  // Each event's data is {"run_id": ..., "payload": {...}}.
  function parse(event) {
    try {
      const data = JSON.parse(event.data);
      return data && typeof data === "object" ? data : {};
    } catch (_) {
      return {};
    }
  }

  // Several runs' epochs may land together; one redraw per second at most.
  let redrawTimer = null;
  function refreshCharts() {
    if (redrawTimer !== null) return;
    redrawTimer = setTimeout(function () {
      redrawTimer = null;
      const stamp = Date.now();
      document.querySelectorAll("img.live-chart").forEach(function (img) {
        const url = new URL(img.src, window.location.href);
        url.searchParams.set("t", stamp);
        img.src = url.toString();
      });
    }, 1000);
  }

  function stillLive() {
    return Object.keys(statuses).some(function (id) {
      return statuses[id] === "queued" || statuses[id] === "running";
    });
  }

  function showStatus(event) {
    const data = parse(event);
    const payload = data.payload || {};
    if (typeof data.run_id !== "string" || typeof payload.status !== "string") return;
    statuses[data.run_id] = payload.status;
    document.querySelectorAll("[data-status-of]").forEach(function (badge) {
      if (badge.dataset.statusOf !== data.run_id) return;
      badge.textContent = payload.status;
      badge.className = "badge status-" + payload.status.replace(/[^a-z]/g, "");
    });
  }

  source.addEventListener("epoch", refreshCharts);
  // Step points change only the step and wall-time charts (redrawn at most once a second).
  source.addEventListener("step", function () {
    const axis = document.getElementById("x-axis");
    if (axis && axis.value !== "epoch") refreshCharts();
  });
  source.addEventListener("status", showStatus);
  source.addEventListener("done", function (event) {
    showStatus(event);
    refreshCharts();
    if (!stillLive()) source.close();
  });
})();
