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

// On a narrow screen a list table shows each row as a stacked card (style.css, table.stacked):
// each cell gets its column name as data-label. The explicit roles keep the table readable by
// screen readers once its rows are no longer laid out as a table. Without JavaScript the
// table scrolls inside its own box instead.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.list").forEach((table) => {
    const heads = Array.from(table.querySelectorAll("thead th"));
    if (!heads.length) {
      return;
    }
    table.setAttribute("role", "table");
    table.querySelectorAll("thead, tbody").forEach((group) => group.setAttribute("role", "rowgroup"));
    heads.forEach((th) => th.setAttribute("role", "columnheader"));
    table.querySelectorAll("tr").forEach((row) => {
      row.setAttribute("role", "row");
      if (row.parentElement.tagName === "THEAD") {
        return;
      }
      let column = 0;
      Array.from(row.cells).forEach((cell) => {
        cell.setAttribute("role", cell.tagName === "TH" ? "rowheader" : "cell");
        const span = cell.colSpan || 1;
        if (span === 1 && heads[column]) {
          cell.dataset.label = heads[column].textContent.trim();
        }
        column += span;
      });
    });
    table.classList.add("stacked");
  });
});
