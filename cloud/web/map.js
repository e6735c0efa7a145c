// The fleet map page (/map). Plain browser JavaScript, no build step, no external resources.
// Region names come from a geolocation database: they only ever reach the page as textContent
// or attribute values; the map itself is the companion's SVG, parsed as XML (never as HTML).
/* global document, window, history, location, DOMParser */
'use strict';

(() => {
  const { el, messageOf, quiet, tokenFromFragment, createSession } = window.FieldlinkClient;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const LEVELS = ['country', 'region', 'city'];
  const MONTHS = ['6', '12', '18', '24'];

  const $ = (id) => {
    const node = document.getElementById(id);
    if (!node) throw new Error(`map page: missing #${id}`);
    return node;
  };
  const ui = {
    whoami: $('whoami'),
    signOut: $('sign-out'),
    status: $('status'),
    tokenSection: $('token-section'),
    tokenForm: $('token-form'),
    tokenInput: $('token-input'),
    mapSection: $('map-section'),
    controls: $('map-controls'),
    level: $('level'),
    months: $('months'),
    refresh: $('refresh'),
    download: $('download-csv'),
    asOf: $('as-of'),
    map: $('map'),
    summary: $('map-summary'),
    empty: $('empty'),
    tableWrap: $('table-wrap'),
    body: $('regions-body'),
    unlocated: $('unlocated'),
  };

  /** Bumped per load so a slow answer for an earlier level cannot overwrite a newer one. */
  let loadSeq = 0;
  /** Bumped per map request (a load, or a re-fetch after a resize): only the newest map is shown. */
  let mapSeq = 0;
  /** The width (px) the shown map was drawn for; 0 before the first. */
  let mapWidth = 0;

  const countryNames = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], { type: 'region' }) : null;

  function say(message, kind = 'info') {
    ui.status.textContent = message;
    ui.status.dataset.kind = kind;
  }

  // ---------------------------------------------------------------- token and session

  function clearView() {
    ui.map.replaceChildren();
    mapWidth = 0;
    ui.body.replaceChildren();
    ui.summary.textContent = '';
    ui.unlocated.textContent = '';
    ui.asOf.textContent = '';
  }

  const auth = createSession({
    ui: { ...ui, content: ui.mapSection },
    say,
    onSignedOut: clearView,
    onSignedIn: async () => {
      ui.mapSection.hidden = false;
      say('');
      await load();
    },
  });
  const { api, fetchRaw } = auth;

  // ---------------------------------------------------------------- loading

  function query() {
    return `level=${encodeURIComponent(ui.level.value)}&months=${encodeURIComponent(ui.months.value)}`;
  }

  /** Keeps the choice in the address (shareable, survives a reload) without adding history entries. */
  function rememberChoice() {
    history.replaceState(history.state, '', `${location.pathname}?${query()}`);
  }

  /**
   * The width to draw the map at: the map box's CSS width, so the companion lays out the legend
   * and labels for the screen rather than at 960 px scaled down (unreadable on a phone). Rounded
   * to 10 px (the server caches projections per width); the default while the box is not laid out.
   */
  function mapWidthPx() {
    const w = ui.map.clientWidth;
    if (!w) return 960;
    return Math.min(1600, Math.max(320, Math.round(w / 10) * 10));
  }

  /** The SVG text for `q` at the map box's width; resolves to `{ text, width, seq }`. */
  async function fetchMap(q) {
    const width = mapWidthPx();
    const seq = ++mapSeq;
    const res = await fetchRaw(`/v1/analytics/map.svg?${q}&width=${width}`, 'image/svg+xml');
    return { text: await res.text(), width, seq };
  }

  async function load() {
    if (!auth.token) return;
    const mySession = auth.epoch;
    const seq = ++loadSeq;
    const q = query();
    ui.map.setAttribute('aria-busy', 'true');
    ui.refresh.disabled = true;
    say('Loading…');
    const [data, svg] = await Promise.allSettled([
      api('GET', `/v1/analytics/regions?${q}`),
      fetchMap(q),
    ]);
    if (mySession !== auth.epoch || seq !== loadSeq) return;
    ui.map.setAttribute('aria-busy', 'false');
    ui.refresh.disabled = false;
    const problems = [];
    for (const [what, result] of [['the regions', data], ['the map', svg]]) {
      if (result.status === 'rejected') {
        const err = result.reason;
        if (quiet(err)) return;
        problems.push(`Could not load ${what}: ${messageOf(err)}`);
      }
    }
    if (data.status === 'fulfilled') renderTable(data.value);
    if (svg.status === 'fulfilled') {
      try {
        if (svg.value.seq === mapSeq) showMap(svg.value.text, svg.value.width);
      } catch (err) {
        problems.push(`Could not show the map: ${messageOf(err)}`);
      }
    } else {
      ui.map.replaceChildren();
      mapWidth = 0;
    }
    say(problems.join(' '), problems.length ? 'error' : 'info');
  }

  /**
   * The SVG text parsed as XML and imported into the page. Under the page's CSP (no inline
   * scripts or styles) the map uses presentation attributes only; anything scriptable is
   * dropped anyway, so a map is only ever a picture.
   */
  function showMap(text, width) {
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const root = doc.documentElement;
    if (root.nodeName !== 'svg' || doc.getElementsByTagName('parsererror').length) throw new Error('the companion sent a map that is not SVG');
    for (const node of [...root.querySelectorAll('script, foreignObject, style')]) node.remove();
    for (const node of [root, ...root.querySelectorAll('*')]) {
      for (const { name } of [...node.attributes]) if (/^on/i.test(name) || name === 'style') node.removeAttribute(name);
    }
    const svg = document.importNode(root, true);
    svg.setAttribute('focusable', 'false');
    ui.map.replaceChildren(svg);
    mapWidth = width;
  }

  /**
   * After a resize (debounced) the map is drawn again only when the box changed by over 20 %
   * (a phone turned, a window halved): between, the SVG just scales. The table is left alone.
   */
  async function redrawMap() {
    if (!auth.token || ui.mapSection.hidden || !mapWidth || ui.map.getAttribute('aria-busy') === 'true') return;
    const width = mapWidthPx();
    if (Math.abs(width - mapWidth) <= 0.2 * mapWidth) return;
    const mySession = auth.epoch;
    const seq = loadSeq;
    let map;
    try {
      map = await fetchMap(query());
    } catch (err) {
      if (quiet(err)) return;
      if (mySession === auth.epoch && seq === loadSeq) say(`Could not redraw the map: ${messageOf(err)}`, 'error');
      return;
    }
    if (mySession !== auth.epoch || seq !== loadSeq || map.seq !== mapSeq) return;
    try {
      showMap(map.text, map.width);
    } catch (err) {
      say(`Could not show the map: ${messageOf(err)}`, 'error');
    }
  }

  // ---------------------------------------------------------------- regions table

  function countryName(code) {
    try {
      return (countryNames && countryNames.of(code)) || code;
    } catch {
      return code;
    }
  }

  /** "Japan", "Osaka, Japan", "Osaka, Osaka, Japan"; "(no region)" where the database had none. */
  function regionName(r, level) {
    const parts = [];
    if (level === 'city') parts.push(r.city ? String(r.city) : '(no city)');
    if (level !== 'country') parts.push(r.region ? String(r.region) : '(no region)');
    parts.push(countryName(String(r.country)));
    return parts.join(', ');
  }

  /**
   * A small line of onboardings per month, built node by node, with the numbers as its text
   * alternative. The last month is the current one, still in progress: its segment is dashed so
   * a month that has only just begun does not read as a collapse.
   */
  function sparkline(trend) {
    const values = trend.map((m) => (typeof m.onboarded === 'number' ? m.onboarded : 0));
    const w = 96;
    const h = 24;
    const max = Math.max(1, ...values);
    const step = values.length > 1 ? (w - 4) / (values.length - 1) : 0;
    const points = values.map((v, i) => `${(2 + i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`);
    const label = `${trend.map((m, i) => `${String(m.month)}: ${values[i]}`).join(', ')}${values.length ? ' (the last month so far)' : ''}`;
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'sparkline');
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.setAttribute('width', String(w));
    svg.setAttribute('height', String(h));
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', `Onboarded per month: ${label}`);
    const title = document.createElementNS(SVG_NS, 'title');
    title.textContent = label;
    svg.append(title);
    const line = (cls, pts) => {
      const node = document.createElementNS(SVG_NS, 'polyline');
      node.setAttribute('class', cls);
      node.setAttribute('points', pts.join(' '));
      svg.append(node);
    };
    if (points.length > 1) line('complete', points.slice(0, -1));
    if (points.length > 1) line('partial', points.slice(-2));
    const lastPoint = points.at(-1);
    if (lastPoint) {
      const [cx, cy] = lastPoint.split(',');
      const dot = document.createElementNS(SVG_NS, 'circle');
      dot.setAttribute('cx', cx);
      dot.setAttribute('cy', cy);
      dot.setAttribute('r', '2');
      svg.append(dot);
    }
    return svg;
  }

  const count = (n) => (typeof n === 'number' && Number.isFinite(n) ? String(n) : '–');

  function renderTable(data) {
    const level = LEVELS.includes(data.level) ? data.level : ui.level.value;
    const regions = Array.isArray(data.regions) ? data.regions : [];
    const total = regions.reduce((s, r) => s + (typeof r.devices === 'number' ? r.devices : 0), 0);
    const countries = new Set(regions.map((r) => r.country)).size;
    const declining = regions.filter((r) => r.declining === true);
    ui.summary.textContent =
      `${total} located device${total === 1 ? '' : 's'} in ${countries} ${countries === 1 ? 'country' : 'countries'}` +
      (declining.length ? `; declining: ${declining.map((r) => regionName(r, level)).join('; ')}.` : '; none declining.');
    ui.asOf.textContent = typeof data.asOf === 'string' ? `as of ${data.asOf.slice(0, 16).replace('T', ' ')} UTC` : '';
    ui.empty.hidden = regions.length > 0;
    ui.tableWrap.hidden = regions.length === 0;

    const rows = regions.map((r) => {
      const key = String(r.key);
      const trend = Array.isArray(r.trend) ? r.trend : [];
      const trendCell = el('td');
      if (r.declining === true) {
        const since = typeof r.decliningSince === 'string' ? ` since ${r.decliningSince}` : '';
        trendCell.append(el('span', { className: 'badge declining-badge', text: `▼ declining${since}`, dataset: { testid: `declining-${key}` } }));
      } else trendCell.append(el('span', { className: 'sub', text: 'steady or growing' }));
      const tr = el(
        'tr',
        { className: r.declining === true ? 'declining' : '', dataset: { testid: `region-row-${key}`, key } },
        el('th', { scope: 'row', className: 'region-name', text: regionName(r, level), title: key }),
        el('td', { className: 'num', text: count(r.devices) }),
        el('td', { className: 'num', text: count(r.active) }),
        el('td', { text: typeof r.accuracyKm === 'number' ? `± ${Math.round(r.accuracyKm)} km` : 'unknown' }),
        el('td', {}, sparkline(trend)),
        trendCell,
        el('td', { className: 'num', text: count(r.overridden) }),
      );
      return tr;
    });
    ui.body.replaceChildren(...rows);

    const u = data.unlocated ?? {};
    const parts = [
      [u.private, 'behind a private address (no public IP seen)'],
      [u.reserved, 'on a reserved address'],
      [u.unresolved, 'at an address the database does not know'],
      [u.unknown, 'never seen connecting'],
    ].filter(([n]) => typeof n === 'number' && n > 0);
    const unlocated = parts.reduce((s, [n]) => s + n, 0);
    ui.unlocated.textContent = unlocated
      ? `Not on the map: ${unlocated} device${unlocated === 1 ? '' : 's'} without a location: ${parts.map(([n, why]) => `${n} ${why}`).join('; ')}.`
      : 'Every device has a location.';
  }

  // ---------------------------------------------------------------- CSV

  async function downloadCsv() {
    if (!auth.token) return;
    const level = ui.level.value;
    const months = ui.months.value;
    ui.download.disabled = true;
    say('Preparing the CSV…');
    try {
      const res = await fetchRaw(`/v1/analytics/regions.csv?${query()}`, 'text/csv');
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const link = el('a', { href: url, download: `fleet-regions-${level}-${months}m.csv`, hidden: '' });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      say('CSV downloaded.');
    } catch (err) {
      if (quiet(err)) return;
      say(`Could not download the CSV: ${messageOf(err)}`, 'error');
    } finally {
      ui.download.disabled = false;
    }
  }

  // ---------------------------------------------------------------- wiring

  const params = new URLSearchParams(location.search);
  if (LEVELS.includes(params.get('level'))) ui.level.value = params.get('level');
  if (MONTHS.includes(params.get('months'))) ui.months.value = params.get('months');

  ui.controls.addEventListener('submit', (event) => event.preventDefault());
  for (const select of [ui.level, ui.months]) {
    select.addEventListener('change', () => {
      rememberChoice();
      void load();
    });
  }
  ui.refresh.addEventListener('click', () => void load());
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => void redrawMap(), 400);
  });
  ui.download.addEventListener('click', () => void downloadCsv());

  auth.resume(tokenFromFragment());
})();
