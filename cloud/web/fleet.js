// The operator's fleet page. Plain browser JavaScript, no build step, no external resources.
// Data from the API (gateway ids come from the hub) only ever reaches the page as textContent.
/* global document, window */
'use strict';

(() => {
  const { ApiError, el, messageOf, quiet, tokenFromFragment, createSession } = window.FieldlinkClient;
  const REFRESH_MS = 5000;
  const COMMAND_POLL_MS = 1000;
  const FINAL_STATUSES = new Set(['delivered', 'rejected', 'expired', 'undeliverable', 'failed']);
  const MIN_FOR_S = 1;
  const MAX_FOR_S = 172800;
  const DEFAULT_FOR_S = 300;

  const $ = (id) => {
    const el = document.getElementById(id);
    if (!el) throw new Error(`fleet page: missing #${id}`);
    return el;
  };
  const ui = {
    whoami: $('whoami'),
    signOut: $('sign-out'),
    status: $('status'),
    tokenSection: $('token-section'),
    tokenForm: $('token-form'),
    tokenInput: $('token-input'),
    fleetSection: $('fleet-section'),
    refresh: $('refresh'),
    counts: $('counts'),
    asOf: $('as-of'),
    empty: $('empty'),
    tableWrap: $('table-wrap'),
    body: $('fleet-body'),
  };

  /** @type {{name: string, role: string}|null} */
  let me = null;
  let refreshTimer = 0;
  let loading = false;
  let nextInputId = 0;
  /** gateway id -> row parts, kept across refreshes so typed values and focus survive. */
  const rows = new Map();

  // ---------------------------------------------------------------- helpers

  function say(message, kind = 'info') {
    ui.status.textContent = message;
    ui.status.dataset.kind = kind;
  }

  function pad2(n) {
    return String(n).padStart(2, '0');
  }

  function clockTime(date) {
    return `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 90) return `${m} min`;
    const h = Math.floor(s / 3600);
    if (h < 48) return `${h} h`;
    return `${Math.floor(s / 86400)} d`;
  }

  /** "2 min ago" / "in 30 s", relative to the server's asOf so a skewed client clock does not matter. */
  function relative(iso, nowMs) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso;
    const diffS = (nowMs - t) / 1000;
    if (Math.abs(diffS) < 5) return 'just now';
    return diffS >= 0 ? `${duration(diffS)} ago` : `in ${duration(-diffS)}`;
  }

  // ---------------------------------------------------------------- token and session

  function clearFleet() {
    clearTimeout(refreshTimer);
    refreshTimer = 0;
    for (const row of rows.values()) clearTimeout(row.pollTimer);
    rows.clear();
    ui.body.replaceChildren();
    ui.counts.textContent = '';
    ui.asOf.textContent = '';
    ui.asOf.removeAttribute('title');
  }

  const auth = createSession({
    ui: { ...ui, content: ui.fleetSection },
    say,
    onSignedOut: () => {
      me = null;
      clearFleet();
    },
    onSignedIn: async (who) => {
      me = { name: String(who.name), role: String(who.role) };
      ui.fleetSection.hidden = false;
      say('');
      await refresh();
    },
  });
  const { api } = auth;

  // ---------------------------------------------------------------- fleet table

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => void refresh(), REFRESH_MS);
  }

  async function refresh() {
    if (!auth.token || loading) return;
    const mySession = auth.epoch;
    loading = true;
    ui.refresh.disabled = true;
    try {
      const data = await api('GET', '/v1/gateways?limit=100');
      if (mySession !== auth.epoch) return;
      render(data);
      if (ui.status.dataset.kind === 'fleet-error') say('');
    } catch (err) {
      if (quiet(err)) return;
      say(`Could not load the fleet: ${messageOf(err)}`, 'fleet-error');
    } finally {
      loading = false;
      ui.refresh.disabled = false;
      if (mySession === auth.epoch && auth.token) scheduleRefresh();
    }
  }

  function render(data) {
    const gateways = Array.isArray(data.gateways) ? data.gateways : [];
    const asOf = typeof data.asOf === 'string' ? data.asOf : new Date().toISOString();
    const nowMs = Number.isNaN(Date.parse(asOf)) ? Date.now() : Date.parse(asOf);
    // A stale view is the last good one while IoT Hub cannot be reached: say so, with why.
    const stale = data.stale === true;
    ui.asOf.textContent = `as of ${clockTime(new Date(nowMs))}${stale ? ' (stale: IoT Hub not reachable)' : ''}`;
    ui.asOf.title = stale && typeof data.refreshError === 'string' ? `${asOf}: ${data.refreshError}` : asOf;
    ui.asOf.classList.toggle('stale', stale);
    const total = typeof data.total === 'number' ? data.total : gateways.length;
    ui.counts.textContent = `showing ${gateways.length} of ${total}${data.nextCursor ? ' (first page)' : ''}`;
    ui.empty.hidden = gateways.length > 0;
    ui.tableWrap.hidden = gateways.length === 0;

    const seen = new Set();
    for (const gw of gateways) {
      const id = String(gw.id);
      seen.add(id);
      let row = rows.get(id);
      if (!row) {
        row = createRow(id);
        rows.set(id, row);
      }
      updateRow(row, gw, nowMs);
      ui.body.append(row.tr); // keeps the API's order; moving a node keeps its state
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        clearTimeout(row.pollTimer);
        row.tr.remove();
        rows.delete(id);
      }
    }
  }

  function createRow(id) {
    const n = nextInputId++;
    const cells = {
      id: el('th', { scope: 'row', className: 'gw-id', text: id }),
      health: el('td'),
      power: el('td'),
      checkIn: el('td'),
      outbox: el('td'),
      sources: el('td'),
      config: el('td'),
      actions: el('td', { className: 'actions' }),
    };
    const forS = el('input', {
      type: 'number',
      id: `for-s-${n}`,
      min: String(MIN_FOR_S),
      max: String(MAX_FOR_S),
      step: '1',
      value: String(DEFAULT_FOR_S),
      inputmode: 'numeric',
      dataset: { testid: `for-s-${id}` },
    });
    const wake = el('button', { type: 'button', text: 'Wake', dataset: { testid: `wake-${id}` } });
    const measure = el('button', { type: 'button', className: 'secondary', text: 'Measure now', dataset: { testid: `measure-${id}` } });
    const cmdStatus = el('span', { className: 'cmd-status', dataset: { testid: `command-status-${id}` } });
    const cmdNote = el('span', { className: 'cmd-note', dataset: { testid: `command-note-${id}` } });
    const feedback = el('p', { className: 'cmd-feedback', 'aria-live': 'polite' }, cmdStatus, cmdNote);
    cells.actions.append(
      el('div', { className: 'wake-row' }, el('label', { for: `for-s-${n}`, text: 'stay online (s)' }), forS, wake),
      el('div', { className: 'wake-row' }, measure),
      feedback,
    );
    const tr = el('tr', { dataset: { testid: `gateway-row-${id}` } }, ...Object.values(cells));
    const row = { id, tr, cells, forS, wake, measure, cmdStatus, cmdNote, pollTimer: 0, busy: false };
    wake.addEventListener('click', () => void onWake(row));
    measure.addEventListener('click', () => void send(row, { type: 'measure' }));
    applyRole(row);
    return row;
  }

  function applyRole(row) {
    const operator = me !== null && me.role === 'operator';
    const why = operator ? '' : `Only operators can send commands; you are signed in as ${me ? me.role : 'nobody'}.`;
    for (const control of [row.wake, row.measure, row.forS]) {
      control.disabled = !operator || (row.busy && control !== row.forS);
      if (why) control.title = why;
      else control.removeAttribute('title');
    }
  }

  function updateRow(row, gw, nowMs) {
    const c = row.cells;

    const health = typeof gw.health === 'string' ? gw.health : 'unknown';
    const reasons = Array.isArray(gw.healthReasons) ? gw.healthReasons.map(String) : [];
    const badge = el('span', { className: `badge health-${/^[a-z]+$/.test(health) ? health : 'unknown'}`, text: health, dataset: { testid: `health-${row.id}` } });
    if (reasons.length) badge.title = reasons.join('; ');
    c.health.replaceChildren(badge);
    if (reasons.length) c.health.append(el('span', { className: 'reasons', text: reasons.join('; ') }));

    const power = gw.power ?? {};
    const state = typeof power.state === 'string' ? power.state : 'unknown';
    let link;
    if (gw.connected) link = 'connected';
    else if (state === 'standby' || health === 'ok' || health === 'degraded') {
      const next = typeof power.nextCheckIn === 'string' ? Date.parse(power.nextCheckIn) : NaN;
      link = Number.isNaN(next) ? 'asleep' : `asleep, next check-in ${clockTime(new Date(next))}`;
    } else link = 'not connected';
    c.power.replaceChildren(el('span', { className: 'power-state', text: state }), el('span', { className: 'sub', text: link }));
    if (typeof power.nextCheckIn === 'string') c.power.title = `next check-in ${power.nextCheckIn}`;
    else c.power.removeAttribute('title');
    if (typeof power.lastWakeReason === 'string') c.power.append(el('span', { className: 'sub', text: `woke: ${power.lastWakeReason}` }));

    if (typeof power.lastCheckIn === 'string') {
      c.checkIn.replaceChildren(el('time', { datetime: power.lastCheckIn, title: power.lastCheckIn, text: relative(power.lastCheckIn, nowMs) }));
    } else c.checkIn.textContent = 'never';

    if (gw.outbox && typeof gw.outbox.depth === 'number') {
      const age = typeof gw.outbox.oldestAgeS === 'number' ? `, oldest ${duration(gw.outbox.oldestAgeS)}` : '';
      c.outbox.textContent = `${gw.outbox.depth} queued${age}`;
    } else c.outbox.textContent = 'not reported';

    const sources = Array.isArray(gw.sourcesWithErrors) ? gw.sourcesWithErrors.map(String) : [];
    c.sources.textContent = sources.length ? sources.join(', ') : 'none';
    c.sources.className = sources.length ? 'has-errors' : '';

    const configStatus = gw.config && typeof gw.config.status === 'string' ? gw.config.status : 'none';
    c.config.replaceChildren(el('span', { className: `config config-${/^[a-z]+$/.test(configStatus) ? configStatus : 'none'}`, text: configStatus }));
    if (gw.firmware) c.config.append(el('span', { className: 'sub', text: `firmware ${gw.firmware}` }));

    applyRole(row);
  }

  // ---------------------------------------------------------------- commands

  function onWake(row) {
    const raw = row.forS.value.trim();
    const forS = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isInteger(forS) || forS < MIN_FOR_S || forS > MAX_FOR_S) {
      row.forS.setAttribute('aria-invalid', 'true');
      const message = `Stay online must be a whole number of seconds from ${MIN_FOR_S} to ${MAX_FOR_S}.`;
      setCommand(row, '', message);
      say(`${row.id}: ${message}`, 'error');
      row.forS.focus();
      return Promise.resolve();
    }
    row.forS.removeAttribute('aria-invalid');
    return send(row, { type: 'wake', forS });
  }

  function setCommand(row, status, note) {
    row.cmdStatus.textContent = status;
    row.cmdStatus.className = status ? `cmd-status status-${status}` : 'cmd-status';
    row.cmdNote.textContent = note;
  }

  async function send(row, body) {
    if (row.busy) return;
    const mySession = auth.epoch;
    clearTimeout(row.pollTimer);
    row.busy = true;
    applyRole(row);
    setCommand(row, '', `${body.type === 'wake' ? 'Waking' : 'Asking for a measurement'}…`);
    try {
      const res = await api('POST', `/v1/gateways/${encodeURIComponent(row.id)}/commands`, body);
      if (mySession !== auth.epoch) return;
      const cmd = res.command;
      const notes = [];
      if (res.coalesced) notes.push('(joined the wake already queued)');
      if (typeof res.note === 'string' && res.note) notes.push(res.note);
      setCommand(row, String(cmd.status), notes.join(' '));
      say(`${row.id}: ${body.type} command ${cmd.status}.`);
      if (!FINAL_STATUSES.has(cmd.status)) pollCommand(row, String(cmd.id), notes.join(' '), 0);
    } catch (err) {
      if (quiet(err)) return;
      const message = messageOf(err);
      setCommand(row, '', message);
      say(`${row.id}: ${message}`, 'error');
    } finally {
      row.busy = false;
      if (rows.get(row.id) === row) applyRole(row);
    }
  }

  function pollCommand(row, commandId, note, failures) {
    const mySession = auth.epoch;
    row.pollTimer = setTimeout(async () => {
      if (mySession !== auth.epoch || rows.get(row.id) !== row) return;
      try {
        const cmd = await api('GET', `/v1/commands/${encodeURIComponent(commandId)}`);
        if (mySession !== auth.epoch) return;
        const reason = typeof cmd.statusReason === 'string' && cmd.statusReason ? cmd.statusReason : '';
        setCommand(row, String(cmd.status), [note, reason].filter(Boolean).join(' '));
        if (FINAL_STATUSES.has(cmd.status)) say(`${row.id}: ${cmd.type} command ${cmd.status}.`);
        else pollCommand(row, commandId, note, 0);
      } catch (err) {
        if (quiet(err) || (err instanceof ApiError && err.status === 404)) return;
        say(`${row.id}: could not read the command's status: ${messageOf(err)}`, 'error');
        // Transient: keep following it, backing off up to 5 s.
        if (failures < 30) pollCommand(row, commandId, note, failures + 1);
      }
    }, failures === 0 ? COMMAND_POLL_MS : Math.min(5000, COMMAND_POLL_MS * 2 ** failures));
  }

  // ---------------------------------------------------------------- wiring

  ui.refresh.addEventListener('click', () => void refresh());

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && auth.token) void refresh();
  });

  auth.resume(tokenFromFragment());
})();
