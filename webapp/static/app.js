// Progressive enhancement only: every page works without JavaScript.
"use strict";

// Forms with data-confirm ask before submitting (the server also has a confirmation page).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset ? form.dataset.confirm : null;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A link inside a form with data-confirm (the trash icon): without JavaScript it opens the
// confirmation page; with it, ask here and then POST the form.
document.addEventListener("click", (event) => {
  const link = event.target.closest ? event.target.closest("a[data-confirm-submit]") : null;
  if (!link) {
    return;
  }
  const form = link.closest("form");
  if (!form) {
    return;
  }
  event.preventDefault();
  if (window.confirm(form.dataset.confirm || "Are you sure?")) {
    form.submit();
  }
});

// A table filter box (data-filter-table="<table id>"): narrows the rows as you type and says
// "No matches found"; the form's submit button does the same on the server without JavaScript.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-filter-table]").forEach((input) => {
    const table = document.getElementById(input.dataset.filterTable);
    if (!table) {
      return;
    }
    const noMatches = table.querySelector("[data-no-matches]");
    const apply = () => {
      const needle = input.value.trim().toLowerCase();
      let visible = 0;
      table.querySelectorAll("tr[data-filter-row]").forEach((row) => {
        const hit = !needle || row.textContent.toLowerCase().includes(needle);
        row.classList.toggle("hidden", !hit);
        if (hit) {
          visible += 1;
        }
      });
      if (noMatches) {
        noMatches.classList.toggle("hidden", visible > 0);
      }
    };
    input.addEventListener("input", apply);
  });
});
