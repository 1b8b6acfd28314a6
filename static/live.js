// Live updates for a run page: follows /runs/{id}/events (Server-Sent Events), appends finished
// epochs to the table, refreshes the charts, and moves the progress bar. The page works without it.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  const runId = live.dataset.run;
  const keys = live.dataset.keys ? live.dataset.keys.split(",") : [];
  const planned = Number(live.dataset.planned) || 0;
  if (live.dataset.finished === "true") return;

  const source = new EventSource(
    "/runs/" + encodeURIComponent(runId) + "/events?after=" + encodeURIComponent(live.dataset.after || "0"));

  function parse(event) {
    try { return JSON.parse(event.data); } catch (_) { return {}; }
  }

  function format(value) {
    if (typeof value !== "number") return "–";
    if (!isFinite(value)) return String(value);
    if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
    if (Number.isInteger(value)) return String(value);
    return value.toFixed(4);
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function setProgress(fraction, text) {
    const bar = document.getElementById("progress");
    if (bar && isFinite(fraction)) bar.value = Math.max(0, Math.min(100, fraction * 100));
    const label = document.getElementById("progress-text");
    if (label && text) label.textContent = text;
  }

  function refreshCharts() {
    const stamp = Date.now();
    document.querySelectorAll("img.live-chart").forEach(function (img) {
      const url = new URL(img.src, window.location.href);
      url.searchParams.set("t", stamp);
      img.src = url.toString();
    });
  }

  function logEvent(event, payload) {
    const body = document.querySelector("#events tbody");
    if (!body) return;
    const row = document.createElement("tr");
    const details = typeof payload.message === "string" ? payload.message : JSON.stringify(payload);
    [event.lastEventId, new Date().toISOString(), event.type, details].forEach(function (text, i) {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (i === 0) cell.className = "num";
      if (i === 3) cell.className = "details";
      row.appendChild(cell);
    });
    body.insertBefore(row, body.firstChild);
  }

  source.addEventListener("progress", function (event) {
    const p = parse(event);
    const step = typeof p.step === "number" ? p.step : p.batch;
    const steps = typeof p.steps === "number" ? p.steps : p.of;
    let fraction = typeof p.fraction === "number" ? p.fraction : NaN;
    if (isNaN(fraction) && planned > 0 && typeof p.epoch === "number") {
      const within = typeof step === "number" && steps > 0 ? step / steps : 0;
      fraction = (p.epoch - 1 + within) / planned;
    }
    let text = typeof p.epoch === "number"
      ? "epoch " + p.epoch + " / " + planned + (steps ? ", batch " + step + " / " + steps : "")
      : "";
    if (typeof p.images_per_sec === "number") text += ", " + p.images_per_sec.toFixed(0) + " img/s";
    if (typeof p.loss === "number") text += ", loss " + p.loss.toFixed(4);
    if (typeof p.eta_seconds === "number") text += ", ETA " + formatDuration(p.eta_seconds);
    // Set against the estimate made before the run started.
    const etaNow = document.getElementById("eta-now");
    if (etaNow && typeof p.eta_seconds === "number") etaNow.textContent = "ETA now " + formatDuration(p.eta_seconds);
    setProgress(fraction, text);
  });

  // Step points grow the step and wall-time charts; redraw at most every 2 s however fast the
  // run reports them (each redraw reloads every chart image).
  let stepRedraw = null;
  source.addEventListener("step", function () {
    const axis = document.getElementById("x-axis");
    if (!axis || axis.value === "epoch" || stepRedraw !== null) return;
    stepRedraw = setTimeout(function () {
      stepRedraw = null;
      refreshCharts();
    }, 2000);
  });

  source.addEventListener("epoch", function (event) {
    const p = parse(event);
    const metrics = p.metrics && typeof p.metrics === "object" ? p.metrics : p;
    const epoch = typeof p.epoch === "number" ? p.epoch : metrics.epoch;
    const body = document.querySelector("#epochs tbody");
    if (body) {
      const row = document.createElement("tr");
      const first = document.createElement("td");
      const link = document.createElement("a");
      link.href = "?epoch=" + encodeURIComponent(epoch);
      link.textContent = String(epoch);
      first.appendChild(link);
      row.appendChild(first);
      keys.forEach(function (key) {
        const cell = document.createElement("td");
        cell.className = "num";
        cell.textContent = format(metrics[key]);
        row.appendChild(cell);
      });
      body.appendChild(row);
      const empty = document.getElementById("no-epochs");
      if (empty) empty.remove();
    }
    if (planned > 0 && typeof epoch === "number") {
      setProgress(epoch / planned, epoch + " / " + planned + " epochs");
    }
    logEvent(event, p);
    refreshCharts();
  });

  function showStatus(event) {
    const p = parse(event);
    const badge = document.getElementById("status");
    if (badge && typeof p.status === "string") {
      badge.textContent = p.status;
      badge.className = "badge status-" + p.status.replace(/[^a-z]/g, "");
    }
    logEvent(event, p);
  }
  source.addEventListener("status", showStatus);
  source.addEventListener("done", function (event) {
    showStatus(event);
    source.close();
    refreshCharts();
  });
})();
