// The API key, when the gateway has keys on, and the gateway's errors in words.
//
// The key is kept in sessionStorage: for this tab only, gone when it closes, never in
// localStorage or a cookie. A page opened as `/?token=KEY` (the live page's old way) takes the
// key from its address and removes it from there, so it stays out of history and bookmarks.
// Uploads send it as `Authorization: Bearer`; the WebSocket, which cannot carry headers, as
// `?token=`.

const STORAGE_KEY = "hermes-api-key";

function adoptTokenFromAddress() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  if (token) sessionStorage.setItem(STORAGE_KEY, token);
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url);
}

adoptTokenFromAddress();

export function apiKey() {
  return sessionStorage.getItem(STORAGE_KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(STORAGE_KEY, key);
  else sessionStorage.removeItem(STORAGE_KEY);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** What a user should know about each error code of the API (docs/http-api.md#errors). */
const HEADLINES = {
  file_too_large: "The file is too large for this gateway.",
  audio_too_long: "The recording is too long for this gateway.",
  invalid_audio: "The file could not be read as audio.",
  unsupported_file_type: "This is not an audio or video file.",
  server_busy: "The server is busy.",
  model_unavailable: "The speech model is unavailable right now.",
  model_error: "The speech model failed on this file.",
  invalid_api_key: "This gateway needs a valid API key.",
  upload_timeout: "The file took too long to arrive.",
  invalid_value: "An option was refused.",
  invalid_request: "The speech model refused the request.",
  field_too_large: "The prompt is too long.",
  fields_too_large: "The prompt is too long.",
};

// Errors that pass: worth another try later
const RETRYABLE = new Set(["server_busy", "model_unavailable", "model_error"]);

/** An error of the API: its code, a headline, the server's own words and when to retry. */
export class ApiError extends Error {
  constructor({ status = 0, code = "", message = "", requestId = "", retryAfter = null, headline = "" }) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
    this.headline = headline || HEADLINES[code] || (status ? `The gateway answered ${status}.` : "");
  }

  /** When to try again, in words ("" when another try would fail the same way). */
  get advice() {
    if (this.retryAfter !== null) return `Try again in ${this.retryAfter} s.`;
    return RETRYABLE.has(this.code) ? "Try again in a moment." : "";
  }

  /** From an error body (`{"error": {...}}`) and, for a whole response, its status and
   * Retry-After. */
  static from(body, response = null) {
    const error = (body && body.error) || {};
    const retry = response && Number.parseInt(response.headers.get("Retry-After"), 10);
    return new ApiError({
      status: response ? response.status : 0,
      code: error.code || "",
      message: error.message || "",
      requestId: error.request_id || "",
      retryAfter: Number.isFinite(retry) ? retry : null,
    });
  }

  static async of(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON (a proxy's page): the status says enough
    }
    return ApiError.from(body, response);
  }
}

/** Ask the gateway what it serves, with the tab's key: `{model}`, or throws an ApiError
 * (401 `invalid_api_key` when a key is needed or wrong). */
export async function served() {
  const response = await fetch("/v1/models", { headers: authHeaders(), cache: "no-store" });
  if (!response.ok) throw await ApiError.of(response);
  const models = (await response.json()).data || [];
  const own = models.find((model) => model.id !== "whisper-1") || models[0];
  return { model: own ? own.id : "" };
}
