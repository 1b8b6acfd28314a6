// Run management shortcuts: a "Delete…" link normally opens a confirmation page; with JS it asks
// with confirm() and posts the delete directly. Everything works without this file.
"use strict";
(function () {
  document.querySelectorAll("a.delete-link").forEach(function (link) {
    link.addEventListener("click", function (event) {
      const name = link.dataset.name || "this run";
      if (!window.confirm("Delete run " + name + " and its checkpoints?")) {
        event.preventDefault();
        return;
      }
      event.preventDefault();
      const form = document.createElement("form");
      form.method = "post";
      form.action = link.getAttribute("href");
      document.body.appendChild(form);
      form.submit();
    });
  });
})();
