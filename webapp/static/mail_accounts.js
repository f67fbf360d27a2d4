// The mail account form: show the fields that apply to the chosen type, dispatching and
// after-fetch mode, and put the type's default port in the Port placeholder.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("mail-account-form");
  if (!form) {
    return;
  }
  const type = form.querySelector("#type");
  const dispatch = form.querySelector("#dispatch");
  const afterFetch = form.querySelector("#after_fetch");
  const port = form.querySelector("#port");
  const host = form.querySelector("#host");
  const types = JSON.parse(type.dataset.types || "{}");
  const profile = form.querySelector("#oauth2_profile_id");
  const hosts = JSON.parse((profile && profile.dataset.hosts) || "{}");

  const show = (name, visible) => {
    form.querySelectorAll(`[data-show-for="${name}"]`).forEach((el) => {
      el.classList.toggle("hidden", !visible);
    });
  };

  const update = () => {
    const info = types[type.value] || { port: "", imap: false, oauth2: false };
    port.placeholder = String(info.port);
    show("oauth2", info.oauth2);
    show("password", !info.oauth2);
    show("imap", info.imap);
    show("dispatch-queue", dispatch.value === "queue");
    show("after-move", afterFetch.value === "move");
    afterFetch.querySelectorAll("option[value=move]").forEach((o) => {
      o.disabled = !info.imap;
    });
    if (info.oauth2 && !host.value) {
      const byProfile = hosts[profile ? profile.value : ""] || {};
      host.placeholder = byProfile[info.imap ? "imap" : "pop3"] || type.dataset.oauth2Host || "";
    } else {
      host.placeholder = "";
    }
  };

  [type, dispatch, afterFetch, profile].forEach((el) => el && el.addEventListener("change", update));
  update();
});
