/* global document, location, history, window */
/**
 * What the companion's pages share: building DOM nodes, the JSON API with its problem bodies
 * and the bearer token, and taking a token from the URL fragment. Loaded before a page's own
 * script; exposes `window.FieldlinkClient`.
 */
'use strict';

(function () {
  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details;
    }
  }

  /** A node with props (className, text, dataset, attributes) and children; text only, never HTML. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (key === 'className') node.className = value;
        else if (key === 'text') node.textContent = value;
        else if (key === 'dataset') Object.assign(node.dataset, value);
        else node.setAttribute(key, value);
      }
    }
    for (const child of children) node.append(child);
    return node;
  }

  const messageOf = (err) => (err instanceof Error ? err.message : String(err));

  /**
   * `api(method, path, body)` for a page: `getToken()` the bearer token, `getEpoch()` a number
   * that changes on sign-out (an answer to an older sign-in is thrown away as STALE), and
   * `onUnauthorized(message)` when the companion refuses the token.
   */
  function createApi({ getToken, getEpoch, onUnauthorized }) {
    return async function api(method, path, body) {
      const epoch = getEpoch();
      const headers = { Accept: 'application/json', Authorization: `Bearer ${getToken()}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
      } catch (err) {
        throw new ApiError(0, 'NETWORK', `The companion did not answer (${messageOf(err)}).`);
      }
      let data = null;
      const text = await res.text();
      if (text) {
        try {
          data = JSON.parse(text);
        } catch {
          data = null;
        }
      }
      if (epoch !== getEpoch()) throw new ApiError(0, 'STALE', 'signed out meanwhile');
      if (res.status === 401) {
        const message = data && typeof data.message === 'string' ? data.message : 'The token was not accepted.';
        onUnauthorized(message);
        throw new ApiError(401, 'AUTH_REQUIRED', message);
      }
      if (!res.ok) {
        if (data && typeof data.message === 'string') throw new ApiError(res.status, String(data.code ?? ''), data.message, data.details);
        throw new ApiError(res.status, `HTTP_${res.status}`, `The companion answered HTTP ${res.status}.`);
      }
      return data;
    };
  }

  /**
   * The fragment's parameters (`#token=…`, a label's `#gateway=…&code=…`), or an empty set; the
   * fragment is dropped at once (history, bookmarks, screenshots). Secrets travel there because
   * browsers never send the fragment to a server.
   */
  function takeFragment() {
    if (!location.hash || location.hash.length < 2) return new URLSearchParams();
    const params = new URLSearchParams(location.hash.slice(1));
    history.replaceState(history.state, '', `${location.pathname}${location.search}`);
    return params;
  }

  /** The token in `#token=…`, or null (the fragment is dropped). */
  function tokenFromFragment() {
    const value = takeFragment().get('token');
    return value === null ? null : value.trim() || null;
  }

  /**
   * The sign-in form and the sign-out button every page has: an empty token is refused on the
   * spot; a token is handed to `onToken` (the page stores it and starts); sign-out calls `onSignOut`.
   */
  function wireSignIn({ form, input, signOut, say, onToken, onSignOut }) {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) {
        input.setAttribute('aria-invalid', 'true');
        say('Enter a token.', 'error');
        input.focus();
        return;
      }
      input.removeAttribute('aria-invalid');
      input.value = '';
      onToken(value);
    });
    signOut.addEventListener('click', () => {
      onSignOut();
      say('Signed out.');
    });
  }

  window.FieldlinkClient = { ApiError, el, createApi, takeFragment, tokenFromFragment, messageOf, wireSignIn };
})();
