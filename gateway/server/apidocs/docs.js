// The docs page: Swagger UI on this gateway's OpenAPI document. Its "Try it out" calls go to
// this same origin; with API keys on, "Authorize" takes a key, kept in this page's memory
// only (not in storage), and sent as Authorization: Bearer.
"use strict";

// Swagger UI sends every field of a form, those left empty too ("" for an empty list), where
// its "Send empty value" box says they are left out: leave them out, as any other client
// that does not set them, so that an empty known_speaker_names[] is no name at all.
function withoutEmptyFields(request) {
  if (request.body instanceof FormData) {
    const form = new FormData();
    for (const [name, value] of request.body.entries()) {
      if (value !== "") form.append(name, value);
    }
    request.body = form;
  }
  return request;
}

window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  requestInterceptor: withoutEmptyFields,
  // Swagger UI would ask an outside validator for a badge: nothing leaves this gateway.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
