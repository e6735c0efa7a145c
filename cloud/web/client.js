/* global document, location, history, window */
/**
 * What the companion's pages share: building DOM nodes, the JSON API with its problem bodies
 * and the bearer token, signing in and out, and taking a token from the URL fragment. Loaded
 * before a page's own script; exposes `window.FieldlinkClient`.
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

  /** An error a page need not show: the sign-in form already says the token was refused, or it is for an earlier sign-in. */
  const quiet = (err) => err instanceof ApiError && (err.status === 401 || err.code === 'STALE');

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  /**
   * `api(method, path, body)` (JSON) and `fetchRaw(path, accept)` (the Response of a 2xx
   * answer, body unread) for a page: `getToken()` the bearer token, `getEpoch()` a number that
   * changes on sign-out (an answer to an older sign-in is thrown away as STALE), and
   * `onUnauthorized(message)` when the companion refuses the token. Problem bodies become ApiErrors.
   */
  function createApi({ getToken, getEpoch, onUnauthorized }) {
    async function request(method, path, accept, body) {
      const epoch = getEpoch();
      const headers = { Accept: accept, Authorization: `Bearer ${getToken()}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
      } catch (err) {
        throw new ApiError(0, 'NETWORK', `The companion did not answer (${messageOf(err)}).`);
      }
      const data = res.ok ? null : parseJson(await res.text());
      if (epoch !== getEpoch()) throw new ApiError(0, 'STALE', 'signed out meanwhile');
      if (res.ok) return res;
      const message = data && typeof data.message === 'string' ? data.message : null;
      if (res.status === 401) {
        const why = message ?? 'The token was not accepted.';
        onUnauthorized(why);
        throw new ApiError(401, 'AUTH_REQUIRED', why);
      }
      if (message !== null) throw new ApiError(res.status, String(data.code ?? ''), message, data.details);
      throw new ApiError(res.status, `HTTP_${res.status}`, `The companion answered HTTP ${res.status}.`);
    }

    async function api(method, path, body) {
      const epoch = getEpoch();
      const text = await (await request(method, path, 'application/json', body)).text();
      if (epoch !== getEpoch()) throw new ApiError(0, 'STALE', 'signed out meanwhile');
      return text ? parseJson(text) : null;
    }

    return { api, fetchRaw: (path, accept) => request('GET', path, accept, undefined) };
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
  function tokenFromFragment(params = takeFragment()) {
    const value = params.get('token');
    return value === null ? null : value.trim() || null;
  }

  /** Shared by the tab's pages, so moving between them keeps the sign-in; gone with the tab. */
  const TOKEN_KEY = 'fieldlink.cloud.token';

  /**
   * The sign-in every page shares: the token and its epoch, the API bound to them, the sign-in
   * form and the sign-out button, and the whoami call. `ui` holds whoami, signOut, tokenSection,
   * tokenForm, tokenInput and content (the page's signed-in part: hidden on sign-out, shown by the
   * page). Hooks: `onSignedOut()` clears the page's own state; `scope(who)` words the role on the
   * whoami line; `onSignedIn(who)` runs once whoami accepted the token.
   */
  function createSession({ ui, say, scope = (who) => String(who.role), onSignedOut, onSignedIn }) {
    /** @type {string|null} */
    let token = null;
    /** Bumped on sign-out so answers to requests made before it are dropped. */
    let epoch = 0;

    function signOut(message) {
      epoch += 1;
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      onSignedOut();
      ui.whoami.textContent = '';
      ui.signOut.hidden = true;
      ui.content.hidden = true;
      ui.tokenSection.hidden = false;
      ui.tokenInput.value = '';
      if (message) say(message, 'error');
      ui.tokenInput.focus();
    }

    const { api, fetchRaw } = createApi({
      getToken: () => token,
      getEpoch: () => epoch,
      onUnauthorized: (message) => signOut(`Signed out: ${message} Enter a valid token.`),
    });

    async function signIn(value) {
      token = value;
      sessionStorage.setItem(TOKEN_KEY, value);
      const mine = epoch;
      ui.tokenSection.hidden = true;
      ui.signOut.hidden = false;
      say('Signing in…');
      let who;
      try {
        who = await api('GET', '/v1/whoami');
      } catch (err) {
        if (quiet(err)) return;
        say(messageOf(err), 'error');
        ui.tokenSection.hidden = false;
        return;
      }
      if (mine !== epoch) return;
      ui.whoami.textContent = `signed in as ${String(who.name)} (${scope(who)})`;
      await onSignedIn(who);
    }

    // An empty token is refused on the spot.
    ui.tokenForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const value = ui.tokenInput.value.trim();
      if (!value) {
        ui.tokenInput.setAttribute('aria-invalid', 'true');
        say('Enter a token.', 'error');
        ui.tokenInput.focus();
        return;
      }
      ui.tokenInput.removeAttribute('aria-invalid');
      ui.tokenInput.value = '';
      void signIn(value);
    });
    ui.signOut.addEventListener('click', () => {
      signOut('');
      say('Signed out.');
    });

    return {
      api,
      fetchRaw,
      get token() {
        return token;
      },
      get epoch() {
        return epoch;
      },
      /** Signs in with `fromFragment`, else the tab's token; without either shows the form. True when signing in. */
      resume(fromFragment) {
        const value = fromFragment ?? sessionStorage.getItem(TOKEN_KEY);
        if (value) void signIn(value);
        else signOut('');
        return Boolean(value);
      },
    };
  }

  window.FieldlinkClient = { ApiError, el, messageOf, quiet, takeFragment, tokenFromFragment, createSession };
})();
