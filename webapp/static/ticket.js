// The HTML view of a mail is as tall as its content. The mail's HTML sits in an iframe with
// sandbox="allow-same-origin" (no scripts can run in it), so this page may read its height.
// Without JavaScript the frame keeps its fixed height and scrolls.
"use strict";

(() => {
  const fit = (frame) => {
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement || !frame.offsetParent) {
      return; // not loaded yet, or inside a closed <details>
    }
    // Measure from a small height, so the frame can also shrink to a short mail.
    frame.height = "40";
    const height = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
    frame.height = String(height + 2);
  };

  const fitAll = () => document.querySelectorAll("iframe.article-html").forEach(fit);

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("iframe.article-html").forEach((frame) => {
      frame.addEventListener("load", () => fit(frame));
      const details = frame.closest("details");
      if (details) {
        details.addEventListener("toggle", () => fit(frame));
      }
      fit(frame);
    });
  });
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(fitAll, 100);
  });
})();
