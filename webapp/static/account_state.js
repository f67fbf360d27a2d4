// Keeps account rows current (Mail Accounts list, an account's page, Status) without a page
// reload: polls the JSON endpoint named by data-account-states, often while a fetch is queued
// or running and rarely otherwise. When a run ends, the sections marked data-live-section
// (what needs attention, the run history, oversized mail) are redrawn from the page itself.
// Progressive enhancement only: without JavaScript the pages show the state at load time.
"use strict";

(() => {
  const FAST = 1500; // ms between polls while a fetch is queued or running
  const SLOW = 30000;

  const rows = () => Array.from(document.querySelectorAll("[data-account-row]"));

  const setText = (row, selector, text) => {
    const el = row.querySelector(selector);
    if (el && el.textContent !== text) {
      el.textContent = text;
    }
  };

  // Redraw the live sections from a fresh copy of this page (same origin, escaped server-side).
  const refreshSections = async () => {
    const sections = document.querySelectorAll("[data-live-section][id]");
    if (!sections.length) {
      return;
    }
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) {
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    sections.forEach((section) => {
      const replacement = fresh.getElementById(section.id);
      if (replacement) {
        section.replaceChildren(...Array.from(replacement.childNodes));
      }
    });
  };

  const apply = (accounts) => {
    let pending = false;
    let finished = false;
    accounts.forEach((account) => {
      pending = pending || account.pending;
      document.querySelectorAll(`[data-account-row="${account.id}"]`).forEach((row) => {
        const badge = row.querySelector("[data-badge]");
        if (badge) {
          finished = finished || (badge.dataset.pending === "1" && !account.pending);
          badge.className = `badge badge-${account.badge}`;
          badge.dataset.pending = account.pending ? "1" : "0";
          setText(row, "[data-badge]", account.badge_name);
        }
        setText(row, "[data-badge-text]", account.text);
        setText(row, "[data-last-run]", account.last_run);
        setText(row, "[data-next-run]", account.next_run);
      });
    });
    return { pending, finished };
  };

  const start = () => {
    const holder = document.querySelector("[data-account-states]");
    if (!holder) {
      return;
    }
    const url = holder.dataset.accountStates;
    let timer = null;
    const schedule = (delay) => {
      window.clearTimeout(timer);
      timer = window.setTimeout(poll, delay);
    };
    const poll = async () => {
      const ids = [...new Set(rows().map((row) => row.dataset.accountRow))];
      if (!ids.length) {
        return;
      }
      const query = ids.map((id) => `id=${encodeURIComponent(id)}`).join("&");
      try {
        const response = await fetch(`${url}?${query}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        const type = response.headers.get("Content-Type") || "";
        if (!response.ok || !type.includes("json")) {
          schedule(SLOW); // signed out, or the server is restarting
          return;
        }
        const state = apply((await response.json()).accounts);
        if (state.finished) {
          await refreshSections();
        }
        schedule(state.pending ? FAST : SLOW);
      } catch (error) {
        schedule(SLOW);
      }
    };
    const pendingNow = rows().some((row) => {
      const badge = row.querySelector("[data-badge]");
      return badge && badge.dataset.pending === "1";
    });
    schedule(pendingNow ? FAST : SLOW);
  };

  document.addEventListener("DOMContentLoaded", start);
})();
