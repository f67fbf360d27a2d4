// OAuth2 profile screens: copy the redirect URI, show the URL fields only for Custom and
// the tenant only where there is one (not for Google).
// Progressive enhancement: without JavaScript the URI can be selected and every field shows.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest ? event.target.closest("[data-copy-target]") : null;
  if (!button) {
    return;
  }
  const id = button.dataset.copyTarget;
  const input = document.getElementById(id);
  const status = document.querySelector(`[data-copy-status="${id}"]`);
  if (!input) {
    return;
  }
  const done = (text) => {
    if (status) {
      status.textContent = text;
    }
  };
  input.select();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(() => done("Copied."), () => done("Press Ctrl+C to copy."));
  } else {
    done(document.execCommand("copy") ? "Copied." : "Press Ctrl+C to copy.");
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const provider = document.getElementById("provider");
  const custom = document.querySelector("[data-provider-custom]");
  const tenant = document.querySelector("[data-provider-tenant]");
  if (!provider || !custom) {
    return;
  }
  const apply = () => {
    custom.classList.toggle("hidden", provider.value !== "Custom");
    if (tenant) {
      tenant.classList.toggle("hidden", provider.value === "Google");
    }
  };
  provider.addEventListener("change", apply);
  apply();
});

// The key and certificate fields only for the certificate credential, the secret only for
// the secret one.
document.addEventListener("DOMContentLoaded", () => {
  const credential = document.getElementById("credential");
  const fields = document.querySelector("[data-credential-certificate]");
  const secret = document.querySelector("[data-credential-secret]");
  if (!credential || !fields) {
    return;
  }
  const apply = () => {
    fields.classList.toggle("hidden", credential.value !== "certificate");
    if (secret) {
      secret.classList.toggle("hidden", credential.value === "certificate");
    }
  };
  credential.addEventListener("change", apply);
  apply();
});
