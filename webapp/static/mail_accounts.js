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

// Test connection / List folders: without JavaScript the buttons POST the form and the page
// comes back with the result; here the same test answers as JSON, so the page (and the
// password typed) stay as they are. The folders found fill the IMAP Folder suggestions and a
// picker next to the result.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("mail-account-form");
  if (!form || !form.dataset.tryUrl || !window.fetch) {
    return;
  }
  const result = document.getElementById("connection-result");
  const choices = document.getElementById("folder-choices");
  const folderField = form.querySelector("#folder");

  const paragraph = (text, className) => {
    const p = document.createElement("p");
    p.className = className;
    p.textContent = text;
    return p;
  };

  const picker = (folders) => {
    const select = document.createElement("select");
    select.id = "folder-picker";
    select.setAttribute("aria-label", "Pick the IMAP folder");
    select.append(new Option("Pick the IMAP folder…", ""));
    folders.forEach((name) => select.append(new Option(name, name)));
    select.addEventListener("change", () => {
      if (select.value && folderField) {
        folderField.value = select.value;
      }
    });
    return select;
  };

  const show = (answer) => {
    result.replaceChildren(
      paragraph(answer.message, "flash " + (answer.ok ? "flash-success" : "flash-error")),
    );
    result.firstChild.dataset.tryMessage = "";
    Object.entries(answer.errors || {}).forEach(([name, message]) => {
      const label = form.querySelector(`label[for="${name}"]`);
      const text = (label ? label.textContent.replace(/\s*\*$/, "") + ": " : "") + message;
      result.append(paragraph(text, "error"));
    });
    choices.replaceChildren(...(answer.folders || []).map((name) => new Option(name, name)));
    if ((answer.folders || []).length) {
      result.append(picker(answer.folders));
    }
    result.classList.remove("hidden");
  };

  form.addEventListener("click", async (event) => {
    const button = event.target.closest ? event.target.closest("[data-try]") : null;
    if (!button) {
      return;
    }
    event.preventDefault();
    const data = new FormData(form);
    data.append(button.name, button.value);
    button.disabled = true;
    result.replaceChildren(paragraph("Connecting…", "muted"));
    result.classList.remove("hidden");
    try {
      const response = await fetch(form.dataset.tryUrl, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      show(await response.json());
    } catch (error) {
      show({ ok: false, message: "The test could not be run: " + error, folders: [] });
    } finally {
      button.disabled = false;
    }
  });
});
