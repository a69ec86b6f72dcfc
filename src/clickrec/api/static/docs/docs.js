// The interactive API reference: Swagger UI over this server's own schema, served from
// the package (no CDN). "Authorize" takes a clickrec key (Bearer) for "Try it out"; the
// key stays in this page's memory and is sent to this server alone.
"use strict";
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
