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
