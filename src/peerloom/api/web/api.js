// The daemon's HTTP API (the contract in /api/v1/openapi.json) and the token that opens it.

const TOKEN_KEY = 'peerloom-token';
let unauthorized = () => {};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The token from the page's `#token=...` (saved, then removed from the address bar) or from storage. */
export function loadToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    localStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return localStorage.getItem(TOKEN_KEY);
}

export function saveToken(token) {
  localStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  localStorage.removeItem(TOKEN_KEY);
}

/** Registers what to do when the daemon rejects the token (HTTP 401). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** Calls `METHOD /api/v1/PATH`; a plain object body goes as JSON, FormData as multipart. */
export async function api(method, path, body) {
  const headers = { 'X-Peerloom-Token': localStorage.getItem(TOKEN_KEY) || '' };
  const init = { method, headers };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`api/v1/${path}`, init);
  if (response.status === 401) {
    unauthorized();
    throw new ApiError(401, 'the daemon rejected the API token');
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error || `${response.status} ${response.statusText}`);
  return data;
}

/** The address of the WebSocket at `/api/v1/PATH`, with the token (browsers cannot give a WebSocket headers). */
export function socketUrl(path) {
  const url = new URL(`api/v1/${path}`, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('token', localStorage.getItem(TOKEN_KEY) || '');
  return url.href;
}

/** The WebSocket address of the event stream. */
export function eventsUrl() {
  return socketUrl('events');
}
