// The phone pairing page. Plain browser JavaScript, no build step, no external resources; the QR
// decoder is jsQR's browser build, served by the companion. Data from the API and from scanned
// codes only ever reaches the page as textContent.
/* global document, jsQR, window */
'use strict';

(() => {
  const { ApiError, el, messageOf, quiet, takeFragment, tokenFromFragment, createSession } = window.FieldlinkClient;
  const SESSION_KEY = 'fieldlink.pair.session';
  const LABEL_CODE_KEY = 'fieldlink.pair.labelCode';
  const POLL_MS = 1000;
  const SCAN_MS = 150;
  const SCAN_MAX_WIDTH = 640;
  const ADDRESS = /^[0-9A-F]{2}(:[0-9A-F]{2}){5}$/i;
  const PROFILES = { heart_rate: 'Heart-rate wristband', health_thermometer: 'Skin-temperature patch', environmental_sensing: 'Environment sensor' };

  const $ = (id) => {
    const el = document.getElementById(id);
    if (!el) throw new Error(`pairing page: missing #${id}`);
    return el;
  };
  const ui = {
    whoami: $('whoami'),
    signOut: $('sign-out'),
    status: $('status'),
    tokenSection: $('token-section'),
    tokenForm: $('token-form'),
    tokenInput: $('token-input'),
    gatewaySection: $('gateway-section'),
    codeForm: $('code-form'),
    codeInput: $('code-input'),
    codeSubmit: $('code-submit'),
    scanLabel: $('scan-label'),
    sessionInfo: $('session-info'),
    scanner: $('scanner'),
    scannerHeading: $('scanner-heading'),
    scannerHint: $('scanner-hint'),
    video: $('scan-video'),
    scanStop: $('scan-stop'),
    deviceSection: $('device-section'),
    deviceForm: $('device-form'),
    addressInput: $('address-input'),
    addressError: $('address-error'),
    profileSelect: $('profile-select'),
    nameInput: $('name-input'),
    deviceSubmit: $('device-submit'),
    scanDevice: $('scan-device'),
    listSection: $('list-section'),
    devicesEmpty: $('devices-empty'),
    list: $('device-list'),
  };

  /** The open pairing session: { id, gateway, expiresAtMs } (client clock), or null. */
  let pairing = null;
  let pollTimer = 0;
  let polling = false;
  /** address -> list item parts, kept across polls so focus survives. */
  const devices = new Map();
  /** The camera while scanning: { stream, timer, mode, lastMiss }. */
  let scan = null;

  // ---------------------------------------------------------------- helpers

  function say(message, kind = 'info') {
    ui.status.textContent = message;
    ui.status.dataset.kind = kind;
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  const hhmm = (date) => `${pad2(date.getHours())}:${pad2(date.getMinutes())}`;

  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso;
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 5) return 'just now';
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    return `at ${hhmm(new Date(t))}`;
  }

  // ---------------------------------------------------------------- token and sign-in

  /** "pairing, site Osaka plant, until 18:00": what this token may do, and for how long. */
  function scopeOf(who) {
    const parts = [String(who.role)];
    if (typeof who.site === 'string') parts.push(`site ${who.site}`);
    else if (who.role === 'pairing') parts.push('all sites');
    if (typeof who.expiresAt === 'string') {
      const at = new Date(who.expiresAt);
      const sameDay = at.toDateString() === new Date().toDateString();
      parts.push(`until ${sameDay ? '' : `${at.getFullYear()}-${pad2(at.getMonth() + 1)}-${pad2(at.getDate())} `}${hhmm(at)}`);
    }
    return parts.join(', ');
  }

  const auth = createSession({
    ui: { ...ui, content: ui.gatewaySection },
    say,
    scope: scopeOf,
    onSignedOut: () => {
      sessionStorage.removeItem(SESSION_KEY);
      stopScan();
      closeSession();
    },
    onSignedIn,
  });
  const { api } = auth;

  async function onSignedIn(who) {
    if (who.role !== 'pairing' && who.role !== 'operator') {
      say(`Pairing needs a pairing or operator token; this one is ${String(who.role)}.`, 'error');
      return;
    }
    ui.gatewaySection.hidden = false;
    say('');
    // Opened from a gateway label's link: pair with that gateway straight away.
    const labelled = sessionStorage.getItem(LABEL_CODE_KEY);
    if (labelled) {
      sessionStorage.removeItem(LABEL_CODE_KEY);
      ui.codeInput.value = labelled.toUpperCase();
      void onCode(labelled);
      return;
    }
    // A reload in the same tab picks up the session it had.
    const saved = sessionStorage.getItem(SESSION_KEY);
    if (saved) {
      try {
        const myEpoch = auth.epoch;
        const view = await api('GET', `/v1/pairing/sessions/${encodeURIComponent(saved)}`);
        if (myEpoch !== auth.epoch) return;
        if (Date.parse(view.session.expiresAt) > Date.now()) {
          openSession(view);
          return;
        }
      } catch (err) {
        if (quiet(err)) return;
      }
      sessionStorage.removeItem(SESSION_KEY);
    }
    ui.codeInput.focus();
  }

  // ---------------------------------------------------------------- step 1: the session

  async function onCode(code) {
    const value = code.trim().toUpperCase();
    if (!value) {
      ui.codeInput.setAttribute('aria-invalid', 'true');
      say('Enter the code from the gateway\'s label, or scan it.', 'error');
      ui.codeInput.focus();
      return;
    }
    ui.codeInput.removeAttribute('aria-invalid');
    ui.codeSubmit.disabled = true;
    say('Looking for the gateway…');
    try {
      const view = await api('POST', '/v1/pairing/sessions', { code: value });
      closeSession();
      openSession(view);
      ui.addressInput.focus();
    } catch (err) {
      if (quiet(err)) return;
      ui.codeInput.setAttribute('aria-invalid', 'true');
      if (err instanceof ApiError && err.status === 404) say('No gateway has this code; check the label.', 'error');
      else say(messageOf(err), 'error');
      ui.codeInput.focus();
    } finally {
      ui.codeSubmit.disabled = false;
    }
  }

  function openSession(view) {
    const s = view.session;
    pairing = { id: String(s.id), gateway: String(s.gateway), expiresAtMs: Date.parse(s.expiresAt) };
    sessionStorage.setItem(SESSION_KEY, pairing.id);
    ui.codeInput.value = '';
    ui.deviceSection.hidden = false;
    ui.listSection.hidden = false;
    render(view);
    say(`${ui.sessionInfo.textContent}.`);
    schedulePoll();
  }

  function closeSession() {
    stopPolling();
    pairing = null;
    devices.clear();
    ui.list.replaceChildren();
    ui.sessionInfo.hidden = true;
    ui.sessionInfo.textContent = '';
    ui.deviceSection.hidden = true;
    ui.listSection.hidden = true;
  }

  function expired() {
    return pairing !== null && !Number.isNaN(pairing.expiresAtMs) && Date.now() >= pairing.expiresAtMs;
  }

  function onExpired() {
    stopPolling();
    sessionStorage.removeItem(SESSION_KEY);
    ui.deviceSection.hidden = true;
    ui.sessionInfo.textContent = `The pairing session with ${pairing ? pairing.gateway : 'the gateway'} has expired; enter the code again to go on.`;
    ui.sessionInfo.dataset.online = 'expired';
    say('The pairing session has expired; enter the code again to go on.', 'error');
  }

  function renderSessionInfo(view) {
    const online = view.gatewayOnline === true;
    let text = `Pairing with ${pairing.gateway} — `;
    if (online) text += 'online';
    else {
      const next = typeof view.nextCheckIn === 'string' ? Date.parse(view.nextCheckIn) : NaN;
      text += Number.isNaN(next)
        ? 'asleep: it will pick this up at its next check-in'
        : `asleep: it will pick this up at its next check-in around ${hhmm(new Date(next))}`;
    }
    ui.sessionInfo.textContent = text;
    ui.sessionInfo.dataset.online = String(online);
    ui.sessionInfo.hidden = false;
  }

  // ---------------------------------------------------------------- polling

  function stopPolling() {
    clearTimeout(pollTimer);
    pollTimer = 0;
  }

  function schedulePoll() {
    stopPolling();
    if (!pairing || document.visibilityState === 'hidden') return;
    if (expired()) {
      onExpired();
      return;
    }
    pollTimer = setTimeout(() => void poll(), POLL_MS);
  }

  async function poll() {
    if (!pairing || polling) return;
    const mine = pairing;
    polling = true;
    try {
      const view = await api('GET', `/v1/pairing/sessions/${encodeURIComponent(mine.id)}`);
      if (pairing !== mine) return;
      render(view);
      if (ui.status.dataset.kind === 'poll-error') say('');
    } catch (err) {
      if (quiet(err) || pairing !== mine) return;
      if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
        onExpired();
        return;
      }
      say(`Could not refresh the devices: ${messageOf(err)}`, 'poll-error');
    } finally {
      polling = false;
      if (pairing === mine && auth.token && !ui.deviceSection.hidden) schedulePoll();
    }
  }

  // ---------------------------------------------------------------- the device list

  function render(view) {
    if (!pairing) return;
    renderSessionInfo(view);
    const list = Array.isArray(view.session.devices) ? view.session.devices : [];
    const seen = new Set();
    for (const d of list) {
      const address = String(d.address).toUpperCase();
      seen.add(address);
      let item = devices.get(address);
      if (!item) {
        item = createItem(address);
        devices.set(address, item);
      }
      updateItem(item, d);
      ui.list.append(item.li);
    }
    for (const [address, item] of devices) {
      if (!seen.has(address) && !item.busy) {
        item.li.remove();
        devices.delete(address);
      }
    }
    ui.devicesEmpty.hidden = devices.size > 0;
  }

  function createItem(address) {
    const name = el('span', { className: 'device-name' });
    const addr = el('span', { className: 'device-address', text: address });
    const state = el('span', { className: 'state', dataset: { testid: `device-state-${address}` } });
    const detail = el('span', { className: 'sub', dataset: { testid: `device-detail-${address}` } });
    const unpair = el('button', { type: 'button', className: 'secondary', text: 'Unpair', dataset: { testid: `unpair-${address}` } });
    const li = el('li', { className: 'device', dataset: { testid: `device-${address}` } }, el('div', null, name, addr, state), unpair, detail);
    const item = { address, li, name, state, detail, unpair, busy: false };
    unpair.addEventListener('click', () => void onUnpair(item));
    return item;
  }

  function updateItem(item, d) {
    const profile = PROFILES[d.profile] ?? String(d.profile);
    const label = typeof d.name === 'string' && d.name ? d.name : profile;
    item.name.textContent = label;
    item.name.title = profile;
    item.unpair.setAttribute('aria-label', `Unpair ${label} (${item.address})`);
    const state = typeof d.state === 'string' ? d.state : 'unknown';
    item.state.textContent = state;
    item.state.className = `state state-${/^[a-z-]+$/.test(state) ? state : 'unknown'}`;
    const parts = [];
    if (state === 'waiting-for-gateway') parts.push('the gateway takes it when it is next online');
    // The last value the gateway reported for it: what someone pairing wants to see.
    if (typeof d.lastValue === 'number') parts.push(`${Number.isInteger(d.lastValue) ? d.lastValue : d.lastValue.toFixed(1)}${typeof d.lastUnit === 'string' && d.lastUnit ? ` ${d.lastUnit}` : ''}`);
    if (typeof d.lastSeen === 'string') parts.push(`seen ${ago(d.lastSeen)}`);
    if (typeof d.battery === 'number') parts.push(`battery ${Math.round(d.battery)} %`);
    if (typeof d.rssi === 'number') parts.push(`signal ${Math.round(d.rssi)} dBm`);
    if (typeof d.error === 'string' && d.error) parts.push(d.error);
    item.detail.textContent = parts.join(' · ');
    item.detail.classList.toggle('device-error', state === 'error');
  }

  async function onUnpair(item) {
    if (!pairing || item.busy) return;
    const mine = pairing;
    item.busy = true;
    item.unpair.disabled = true;
    say(`Unpairing ${item.address}…`);
    try {
      await api('DELETE', `/v1/pairing/sessions/${encodeURIComponent(mine.id)}/devices/${encodeURIComponent(item.address)}`);
      if (pairing !== mine) return;
      item.li.remove();
      devices.delete(item.address);
      ui.devicesEmpty.hidden = devices.size > 0;
      say(`Unpaired ${item.address}; the gateway forgets it when it next applies its settings.`);
      ui.addressInput.focus();
    } catch (err) {
      if (quiet(err)) return;
      say(`${item.address}: ${messageOf(err)}`, 'error');
    } finally {
      item.busy = false;
      item.unpair.disabled = false;
    }
  }

  // ---------------------------------------------------------------- step 2: add a device

  function addressProblem(value) {
    if (!value) return 'Enter the device\'s Bluetooth address.';
    if (!ADDRESS.test(value)) return `"${value}" is not a Bluetooth address: use six pairs of 0–9 or A–F separated by colons, e.g. AA:BB:CC:DD:EE:FF.`;
    return '';
  }

  function showAddressProblem(message) {
    ui.addressError.textContent = message;
    ui.addressError.hidden = !message;
    if (message) ui.addressInput.setAttribute('aria-invalid', 'true');
    else ui.addressInput.removeAttribute('aria-invalid');
  }

  async function onAddDevice() {
    if (!pairing) return;
    const address = ui.addressInput.value.trim().toUpperCase();
    const problem = addressProblem(address);
    showAddressProblem(problem);
    if (problem) {
      say(problem, 'error');
      ui.addressInput.focus();
      return;
    }
    const body = { address, profile: ui.profileSelect.value };
    const name = ui.nameInput.value.trim();
    if (name) body.name = name;
    const mine = pairing;
    ui.deviceSubmit.disabled = true;
    say(`Adding ${address}…`);
    try {
      const view = await api('POST', `/v1/pairing/sessions/${encodeURIComponent(mine.id)}/devices`, body);
      if (pairing !== mine) return;
      render(view);
      ui.addressInput.value = '';
      ui.nameInput.value = '';
      say(`Added ${address}. ${view.gatewayOnline ? 'The gateway is connecting to it.' : 'The gateway connects to it at its next check-in.'}`);
      ui.addressInput.focus();
    } catch (err) {
      if (quiet(err)) return;
      if (err instanceof ApiError && err.status === 409 && err.details && typeof err.details.gateway === 'string') {
        const message = `${address} is already paired to gateway ${err.details.gateway}; unpair it there first.`;
        showAddressProblem(message);
        say(message, 'error');
      } else if (err instanceof ApiError && err.status === 410) {
        onExpired();
      } else say(messageOf(err), 'error');
    } finally {
      ui.deviceSubmit.disabled = false;
    }
  }

  // ---------------------------------------------------------------- QR scanning

  /**
   * A gateway label: `https://…/pair#gateway=<id>&code=<code>` (labels printed with the
   * companion's URL), `fieldlink:pair?gateway=<id>&code=<code>`, or a bare code -> the code, else null.
   */
  function codeFromQr(text) {
    const t = text.trim();
    if (/^fieldlink:pair\?/i.test(t)) {
      const code = new URLSearchParams(t.slice(t.indexOf('?') + 1)).get('code');
      return code ? code.trim() : null;
    }
    if (/^https?:\/\/[^#]*\/pair#/i.test(t)) {
      const code = new URLSearchParams(t.slice(t.indexOf('#') + 1)).get('code');
      return code ? code.trim() : null;
    }
    return /^[A-Z0-9]{4,8}(-[A-Z0-9]{4,8})+$/i.test(t) ? t : null;
  }

  /** `fieldlink:device?address=…&profile=…` (or a bare address) -> { address, profile }, else null. */
  function deviceFromQr(text) {
    const t = text.trim();
    if (/^fieldlink:device\?/i.test(t)) {
      const params = new URLSearchParams(t.slice(t.indexOf('?') + 1));
      const address = (params.get('address') ?? '').trim().toUpperCase();
      if (!ADDRESS.test(address)) return null;
      const profile = params.get('profile');
      return { address, profile: profile && Object.hasOwn(PROFILES, profile) ? profile : null };
    }
    return ADDRESS.test(t) ? { address: t.toUpperCase(), profile: null } : null;
  }

  function stopScan() {
    if (!scan) return;
    clearInterval(scan.timer);
    for (const track of scan.stream.getTracks()) track.stop();
    ui.video.srcObject = null;
    ui.scanner.hidden = true;
    const back = scan.mode === 'gateway' ? ui.scanLabel : ui.scanDevice;
    scan = null;
    ui.scanLabel.disabled = false;
    ui.scanDevice.disabled = false;
    return back;
  }

  async function startScan(mode) {
    if (scan) stopScan();
    const field = mode === 'gateway' ? ui.codeInput : ui.addressInput;
    const what = mode === 'gateway' ? 'code' : 'address';
    const media = globalThis.navigator ? globalThis.navigator.mediaDevices : undefined;
    if (!media || typeof media.getUserMedia !== 'function') {
      say(`The camera is not available here: it needs a secure connection (HTTPS or localhost) and camera support in the browser. Type the ${what} instead.`, 'error');
      field.focus();
      return;
    }
    if (typeof jsQR !== 'function') {
      say(`The QR decoder did not load. Type the ${what} instead.`, 'error');
      field.focus();
      return;
    }
    ui.scanLabel.disabled = true;
    ui.scanDevice.disabled = true;
    say('Opening the camera…');
    let stream;
    try {
      stream = await media.getUserMedia({ video: { facingMode: { ideal: 'environment' } }, audio: false });
    } catch (err) {
      ui.scanLabel.disabled = false;
      ui.scanDevice.disabled = false;
      const name = err && typeof err === 'object' && 'name' in err ? err.name : '';
      const why =
        name === 'NotAllowedError' || name === 'SecurityError'
          ? 'camera permission was refused'
          : name === 'NotFoundError' || name === 'OverconstrainedError'
            ? 'no camera was found'
            : `the camera could not be opened (${messageOf(err)})`;
      say(`Cannot scan: ${why}. Type the ${what} instead.`, 'error');
      field.focus();
      return;
    }
    const canvas = document.createElement('canvas');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    scan = { stream, mode, timer: 0, lastMiss: '' };
    ui.scannerHeading.textContent = mode === 'gateway' ? 'Scan the gateway label' : 'Scan the device';
    ui.scannerHint.textContent =
      mode === 'gateway' ? 'Hold the QR code on the gateway\'s label inside the frame.' : 'Hold the QR code on the wearable or its box inside the frame.';
    ui.scanner.hidden = false;
    ui.video.srcObject = stream;
    try {
      await ui.video.play();
    } catch {
      // autoplay of a muted inline video is allowed; frames are read anyway once they arrive
    }
    say('Camera on: point it at the QR code.');
    ui.scanStop.focus();
    const mine = scan;
    scan.timer = setInterval(() => {
      if (scan !== mine || !ctx) return;
      const w = ui.video.videoWidth;
      const h = ui.video.videoHeight;
      if (ui.video.readyState < 2 || !w || !h) return;
      const scale = Math.min(1, SCAN_MAX_WIDTH / w);
      canvas.width = Math.round(w * scale);
      canvas.height = Math.round(h * scale);
      ctx.drawImage(ui.video, 0, 0, canvas.width, canvas.height);
      const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const found = jsQR(image.data, image.width, image.height, { inversionAttempts: 'attemptBoth' });
      if (!found || typeof found.data !== 'string') return;
      onScanned(mode, found.data);
    }, SCAN_MS);
  }

  function onScanned(mode, text) {
    if (mode === 'gateway') {
      const code = codeFromQr(text);
      if (!code) return scanMiss('That QR code is not a Fieldlink gateway label.', text);
      stopScan();
      ui.codeInput.value = code.toUpperCase();
      void onCode(code);
      return;
    }
    const device = deviceFromQr(text);
    if (!device) return scanMiss('That QR code does not carry a Bluetooth address.', text);
    stopScan();
    ui.addressInput.value = device.address;
    if (device.profile) ui.profileSelect.value = device.profile;
    void onAddDevice();
  }

  function scanMiss(message, text) {
    if (!scan || scan.lastMiss === text) return;
    scan.lastMiss = text;
    say(message, 'error');
  }

  // ---------------------------------------------------------------- wiring

  ui.codeForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void onCode(ui.codeInput.value);
  });
  ui.deviceForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void onAddDevice();
  });
  ui.addressInput.addEventListener('input', () => {
    if (ui.addressInput.getAttribute('aria-invalid') === 'true' && !addressProblem(ui.addressInput.value.trim())) showAddressProblem('');
  });

  ui.scanLabel.addEventListener('click', () => void startScan('gateway'));
  ui.scanDevice.addEventListener('click', () => void startScan('device'));
  ui.scanStop.addEventListener('click', () => {
    const back = stopScan();
    say('Scanning stopped.');
    if (back) back.focus();
  });
  ui.scanner.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      const back = stopScan();
      say('Scanning stopped.');
      if (back) back.focus();
    }
  });

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') {
      stopPolling();
      stopScan();
    } else if (pairing && auth.token && !ui.deviceSection.hidden) void poll();
  });

  const fragment = takeFragment();
  // A gateway label's link (phone camera app): remembered across the sign-in, used once.
  const labelCode = fragment.get('code')?.trim() || null;
  if (labelCode) sessionStorage.setItem(LABEL_CODE_KEY, labelCode);
  if (!auth.resume(tokenFromFragment(fragment)) && labelCode) {
    const gateway = fragment.get('gateway');
    say(`Label of gateway${gateway ? ` ${gateway}` : ''} scanned. Sign in with your pairing link or token to pair devices with it.`);
  }
})();
