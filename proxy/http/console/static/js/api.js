// Calls to the gateway's JSON APIs with the session cookie; state-changing calls carry the CSRF token.
// The console keeps no secret: no key in storage, URL or log; the token lives in this module only.

let csrf = null;
let onSignedOut = () => {};

export function setCsrf(token) { csrf = token; }
export function whenSignedOut(fn) { onSignedOut = fn; }

export class ApiError extends Error {
  constructor(status, body, headers) {
    const err = body && body.error ? body.error : {};
    super(err.message || `The gateway answered ${status}.`);
    this.status = status;
    this.code = err.code || null;
    this.param = err.param || null;
    this.retryAfter = headers ? headers.get("retry-after") : null;
  }
}

export function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (csrf) out["x-csrf-token"] = csrf;
  return out;
}

export async function api(method, path, body, { quiet401 = false } = {}) {
  const init = { method, headers: headers(), credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 204) return null;
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (!r.ok) {
    const e = new ApiError(r.status, data, r.headers);
    if (r.status === 401 && !quiet401) await checkSession();
    throw e;
  }
  return data;
}

// A 401 from some API may mean the session ended, or only that this session's credential cannot call it.
async function checkSession() {
  try {
    const r = await fetch("/ui/api/session", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) onSignedOut();
  } catch { /* offline: leave the page as it is */ }
}

export const get = (path, opts) => api("GET", path, undefined, opts);

/** A sentence for people: what went wrong and what to do. */
export function describe(e) {
  if (!(e instanceof ApiError)) return `Could not reach the gateway (${e.message || e}).`;
  if (e.status === 429) {
    const told = /try again/i.test(e.message);
    const wait = told ? "" : e.retryAfter ? ` Try again in ${e.retryAfter} s.` : " Try again shortly.";
    const what = e.code === "insufficient_quota" ? "Budget exhausted" : "Rate limit reached";
    return `${what} (429): ${e.message}${wait}`;
  }
  if (e.status === 401) return `Not signed in (401): ${e.message}`;
  if (e.status === 403) return `Not allowed (403): ${e.message}`;
  if (e.status === 422) return `Check the field ${e.param ? `“${e.param}”` : ""} (422): ${e.message}`;
  return `Error ${e.status}: ${e.message}`;
}

/** URL query from an object, dropping empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const t = q.toString();
  return t ? `?${t}` : "";
}
