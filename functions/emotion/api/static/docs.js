// /docs: Swagger UI on the service's own OpenAPI description. Loaded from the service (no CDN); every URL is
// relative to the page, so the docs and "Try it out" also work behind an API Gateway stage prefix.
(() => {
  "use strict";
  const root = document.getElementById("swagger-ui");
  // The folder the docs page is served from, e.g. https://host/prod/ behind a stage, http://127.0.0.1:8000/ locally.
  const base = new URL(".", window.location.href).href.replace(/\/$/, "");

  fetch(root.dataset.spec, { headers: { accept: "application/json" } })
    .then((response) => {
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      return response.json();
    })
    .then((spec) => {
      // Requests go where the page is (the spec itself names no server).
      if (!spec.servers || !spec.servers.length) spec.servers = [{ url: base }];
      window.ui = window.SwaggerUIBundle({
        spec,
        domNode: root,
        deepLinking: true,
        presets: [window.SwaggerUIBundle.presets.apis],
        layout: "BaseLayout",
        defaultModelsExpandDepth: 0,
        tryItOutEnabled: false,
      });
    })
    .catch((error) => {
      root.textContent = `The API description could not be loaded (${error.message}).`;
    });
})();
