// The docs page: Swagger UI on this gateway's OpenAPI document. Its "Try it out" calls go to
// this same origin; with API keys on, "Authorize" takes a key, kept in this page's memory
// only (not in storage), and sent as Authorization: Bearer.
"use strict";

window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  // Swagger UI would ask an outside validator for a badge: nothing leaves this gateway.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
