// crossdvp console: keeps a page's live region fresh without reloads.
//
// A page marks one element with data-live and data-src (an HTML fragment URL). Every
// data-interval-ms the fragment is fetched and swapped in; keyboard focus inside the region is
// restored on the element with the same id. Relative ages ([data-time-s]) and deadline countdowns
// ([data-deadline-s]) tick every second against the server's clock (data-now-s), not the browser's.
"use strict";

(function () {
  let clockOffsetS = 0; // server time minus browser time, in seconds

  function syncClock(root) {
    const el = root.querySelector("[data-now-s]") || document.body;
    const serverNow = Number(el.dataset.nowS);
    if (Number.isFinite(serverNow)) {
      clockOffsetS = serverNow - Date.now() / 1000;
    }
  }

  function nowS() {
    return Math.floor(Date.now() / 1000 + clockOffsetS);
  }

  function duration(seconds) {
    seconds = Math.abs(seconds);
    if (seconds < 60) return seconds + " s";
    let minutes = Math.floor(seconds / 60);
    const secs = seconds % 60;
    if (minutes < 60) return minutes + " min " + String(secs).padStart(2, "0") + " s";
    let hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 24) return hours + " h " + String(minutes).padStart(2, "0") + " min";
    const days = Math.floor(hours / 24);
    hours = hours % 24;
    return days + " d " + hours + " h";
  }

  function age(timeS, now) {
    const delta = now - timeS;
    if (delta === 0) return "just now";
    return delta > 0 ? duration(delta) + " ago" : "in " + duration(delta);
  }

  function countdown(deadlineS, now) {
    if (deadlineS > now) return duration(deadlineS - now) + " left";
    if (deadlineS === now) return "due now";
    return "passed " + duration(now - deadlineS) + " ago";
  }

  function utc(timeS) {
    return new Date(timeS * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function tick() {
    const now = nowS();
    document.querySelectorAll("[data-time-s]").forEach(function (el) {
      el.textContent = age(Number(el.dataset.timeS), now);
    });
    document.querySelectorAll("[data-deadline-s]").forEach(function (el) {
      const deadline = Number(el.dataset.deadlineS);
      el.textContent = countdown(deadline, now);
      el.classList.toggle("passed", deadline <= now);
    });
    const clock = document.querySelector("[data-clock]");
    if (clock) clock.textContent = utc(now);
  }

  function setIndicator(ok, text) {
    const el = document.getElementById("live-indicator");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("offline", !ok);
  }

  function fragmentUrl(region) {
    const url = new URL(region.dataset.src, window.location.origin);
    const formId = region.dataset.form;
    if (formId) {
      const form = document.getElementById(formId);
      new FormData(form).forEach(function (value, key) {
        if (value) url.searchParams.set(key, value);
      });
    }
    return url;
  }

  function swap(region, html) {
    const active = document.activeElement;
    const focusId = active && region.contains(active) ? active.id : null;
    region.innerHTML = html;
    syncClock(region);
    if (focusId) {
      const again = document.getElementById(focusId);
      if (again) again.focus({ preventScroll: true });
    }
    announce(region);
    region.dispatchEvent(new CustomEvent("console:updated"));
  }

  // The region is replaced every poll; a screen reader hears only a changed summary line, once.
  let lastAnnounced = null;
  function announce(region) {
    const summary = region.querySelector("[data-announce]");
    const announcer = document.getElementById("live-announcer");
    if (!summary || !announcer) return;
    const text = summary.textContent.replace(/\s+/g, " ").trim();
    if (lastAnnounced !== null && text !== lastAnnounced) announcer.textContent = text;
    lastAnnounced = text;
  }

  function startLive(region) {
    const intervalMs = Number(region.dataset.intervalMs) || 1000;
    let last = null;
    let timer = null;

    async function refresh() {
      clearTimeout(timer);
      try {
        const response = await fetch(fragmentUrl(region), {
          cache: "no-store",
          headers: { Accept: "text/html" },
        });
        // 404 on a settlement page is a normal answer (not known yet): render it too.
        if (!response.ok && response.status !== 404) throw new Error("HTTP " + response.status);
        const html = await response.text();
        if (html !== last) {
          last = html;
          swap(region, html);
        }
        setIndicator(true, "live");
      } catch (err) {
        setIndicator(false, "console unreachable — retrying");
      }
      tick();
      timer = setTimeout(refresh, intervalMs);
    }

    const formId = region.dataset.form;
    if (formId) {
      const form = document.getElementById(formId);
      const apply = function () {
        const url = new URL(form.action, window.location.origin);
        new FormData(form).forEach(function (value, key) {
          if (value) url.searchParams.set(key, value);
        });
        history.replaceState(null, "", url.pathname + url.search);
        refresh();
      };
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        apply();
      });
      form.addEventListener("change", apply);
      let debounce = null;
      form.addEventListener("input", function () {
        clearTimeout(debounce);
        debounce = setTimeout(apply, 250);
      });
    }
    timer = setTimeout(refresh, intervalMs);
  }

  document.addEventListener("DOMContentLoaded", function () {
    syncClock(document);
    document.querySelectorAll("[data-live]").forEach(startLive);
    tick();
    setInterval(tick, 1000);
  });
})();
