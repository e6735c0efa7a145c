import t from 'tap';
import type { HubTwin, JsonObject } from '../../../cloud/src/fleet-hub.js';
import { checkInIntervalS, configView, desiredSettings, summarize } from '../../../cloud/src/gateway-view.js';

// How one gateway is judged from its twin: health from the check-in schedule (asleep on time is
// healthy), the reasons for degraded, and whether the desired config was applied.

const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);
const S = 1000;
const MIN = 60 * S;
const iso = (ms: number) => new Date(ms).toISOString();

function twin(reported: JsonObject = {}, extra: Partial<HubTwin> = {}): HubTwin {
  return {
    deviceId: 'gw-1',
    etag: 'e1',
    desired: { $version: 1 },
    reported: { $version: 1, ...reported },
    tags: {},
    connectionState: 'Disconnected',
    lastActivityTime: undefined,
    status: 'enabled',
    ...extra,
  };
}
/** Asleep, checked in `agoMs` ago, every `intervalS` with a `windowS` online window. */
const asleep = (agoMs: number, intervalS = 3600, windowS = 120, more: JsonObject = {}) =>
  twin({ power: { state: 'standby', lastCheckIn: iso(NOW - agoMs), checkInIntervalS: intervalS, onlineWindowS: windowS }, ...more });

t.test('health from the check-in schedule', async (t) => {
  const never = summarize(twin(), NOW);
  t.equal(never.health, 'unknown', 'never seen');
  t.match(never.healthReasons, [/never checked in/]);
  t.equal(never.power.lastCheckIn, null);
  t.equal(never.power.nextCheckIn, null);

  t.equal(summarize(twin({}, { connectionState: 'Connected' }), NOW).health, 'ok', 'connected, never reported: ok');
  t.same(summarize(twin({}, { connectionState: 'Connected' }), NOW).healthReasons, []);
  const connectedLongAgo = twin({ power: { lastCheckIn: iso(NOW - 24 * 60 * MIN), checkInIntervalS: 600 } }, { connectionState: 'Connected' });
  t.equal(summarize(connectedLongAgo, NOW).health, 'ok', 'connected now is ok however old the last check-in');
  t.equal(summarize(connectedLongAgo, NOW).connected, true);

  // Interval 3600 s, window 120 s, grace max(60 s, 10 % of 3600 s = 360 s): due 4080 s after.
  const due = (3600 + 120 + 360) * S;
  t.equal(summarize(asleep(10 * MIN), NOW).health, 'ok', 'asleep and on time: a sleeping gateway is not a fault');
  t.equal(summarize(asleep(10 * MIN), NOW).connected, false);
  t.equal(summarize(asleep(due), NOW).health, 'ok', 'exactly at the deadline: still ok');
  const late = summarize(asleep(due + 1), NOW);
  t.equal(late.health, 'late', 'past interval + window + grace');
  t.match(late.healthReasons, [new RegExp(iso(NOW - 1))]);
  // Silent once three check-ins are missed: due + 2 intervals.
  t.equal(summarize(asleep(due + 2 * 3600 * S), NOW).health, 'late', 'two more intervals: still late');
  const silent = summarize(asleep(due + 2 * 3600 * S + 1), NOW);
  t.equal(silent.health, 'silent', 'past 3 intervals');
  t.match(silent.healthReasons, [/missed 3\+ check-ins/]);

  // Short interval: the grace is at least a minute.
  const shortDue = (60 + 30 + 60) * S;
  t.equal(summarize(asleep(shortDue, 60, 30), NOW).health, 'ok');
  t.equal(summarize(asleep(shortDue + 1, 60, 30), NOW).health, 'late', 'grace of at least 60 s, not 6 s');

  // The schedule: reported, else desired, else defaults.
  const desiredOnly = twin({ power: { lastCheckIn: iso(NOW - 20 * MIN) } }, { desired: { $version: 2, checkInIntervalS: 600, onlineWindowS: 60 } });
  t.equal(checkInIntervalS(desiredOnly), 600);
  t.equal(summarize(desiredOnly, NOW).power.checkInIntervalS, 600);
  t.equal(summarize(desiredOnly, NOW).health, 'late', '20 min > 600 + 60 + 60 s');
  t.equal(checkInIntervalS(twin()), 3600, 'default');
  t.equal(checkInIntervalS(twin({ power: { checkInIntervalS: 900 } }, { desired: { $version: 2, checkInIntervalS: 600 } })), 900, 'reported wins');
});

t.test('the hub’s last activity counts as seen', async (t) => {
  const stale = asleep(5 * 3600 * S);
  t.equal(summarize(stale, NOW).health, 'silent');
  const active = { ...stale, lastActivityTime: iso(NOW - 5 * MIN) };
  t.equal(summarize(active, NOW).health, 'ok', 'recent activity although the reported check-in is old');
  t.equal(summarize(active, NOW).power.lastCheckIn, iso(NOW - 5 * 3600 * S), 'lastCheckIn is still the reported one');
  const onlyActivity = twin({}, { lastActivityTime: iso(NOW - 5 * MIN) });
  t.equal(summarize(onlyActivity, NOW).health, 'ok', 'never reported, but the hub saw it');
  t.equal(summarize(twin({}, { lastActivityTime: iso(NOW - 3 * 3600 * S) }), NOW).health, 'late');
  t.equal(summarize(twin({}, { lastActivityTime: 'not a date' }), NOW).health, 'unknown');
});

t.test('degraded: on time but something is wrong, with a reason for each', async (t) => {
  const recent = 10 * MIN;
  const cases: [string, JsonObject, Partial<HubTwin>, RegExp][] = [
    ['source disconnected', { sources: { 'ble:hr': { connected: false }, 'serial:t': { connected: true } } }, {}, /sources not connected: ble:hr/],
    ['clock untrusted', { clock: { trusted: false } }, {}, /clock not trusted/],
    ['uplink failures', {}, {}, /3 uplink failures/],
    ['old outbox', { outbox: { depth: 40, oldestAgeS: 2 * 3600 + 120 + 1 } }, {}, /oldest unsent reading is 7321 s old/],
    [
      'config rejected',
      { config: { appliedVersion: 1, desiredVersion: 2, status: 'rejected', errors: [{ path: '/x', message: 'no' }] } },
      { desired: { $version: 2, checkInIntervalS: 3600 } },
      /rejected the desired config/,
    ],
  ];
  for (const [label, more, extra, reason] of cases) {
    const base = asleep(recent, 3600, 120, more);
    const power = label === 'uplink failures' ? { power: { ...(base.reported.power as JsonObject), uplinkFailures: 3 } } : {};
    const s = summarize({ ...base, ...extra, reported: { ...base.reported, ...power } }, NOW);
    t.equal(s.health, 'degraded', label);
    t.match(s.healthReasons, [reason], label);
    t.equal(s.healthReasons.length, 1, `${label}: one reason`);
  }
  const fine = summarize(asleep(recent, 3600, 120, { outbox: { depth: 3, oldestAgeS: 2 * 3600 + 120 }, clock: { trusted: true }, sources: { a: { connected: true } } }), NOW);
  t.equal(fine.health, 'ok', 'a backlog within two intervals + window, a trusted clock, connected sources');
  t.same(fine.healthReasons, []);
  t.same(fine.outbox, { depth: 3, oldestAgeS: 7320 });

  const many = summarize(asleep(recent, 3600, 120, { clock: { trusted: false }, sources: { b: { connected: false }, a: { connected: false } } }), NOW);
  t.equal(many.health, 'degraded');
  t.equal(many.healthReasons.length, 2, 'every reason listed');

  // Late beats degraded: the reason given is the missed check-in.
  const lateAndBroken = summarize(asleep(3 * 3600 * S, 3600, 120, { clock: { trusted: false } }), NOW);
  t.equal(lateAndBroken.health, 'late');
  t.equal(lateAndBroken.healthReasons.length, 1);
});

t.test('summary fields: next check-in, sources with errors, firmware, power', async (t) => {
  const last = NOW - 10 * MIN;
  const s = summarize(
    twin({
      power: { state: 'standby', lastCheckIn: iso(last), lastWakeReason: 'schedule', checkInIntervalS: 900 },
      sources: {
        'ble:ok': { connected: true, errors: 0 },
        'ble:errs': { connected: true, errors: 2 },
        'serial:sampling': { connected: true, samplingErrors: 1 },
        'firmata:down': { connected: false },
      },
      firmware: { version: '2.0.1' },
      outbox: { depth: 12 },
    }),
    NOW,
  );
  t.equal(s.id, 'gw-1');
  t.equal(s.power.nextCheckIn, iso(last + 900 * S), 'nextCheckIn = lastCheckIn + interval');
  t.equal(s.power.lastCheckIn, iso(last));
  t.equal(s.power.state, 'standby');
  t.equal(s.power.lastWakeReason, 'schedule');
  t.equal(s.power.checkInIntervalS, 900);
  t.same([...s.sourcesWithErrors].sort(), ['ble:errs', 'firmata:down', 'serial:sampling']);
  t.equal(s.firmware, '2.0.1');
  t.same(s.outbox, { depth: 12, oldestAgeS: null });
  t.same(s.config, { status: 'none' });
  t.equal(s.health, 'degraded', 'a disconnected source');
  t.match(s.healthReasons, [/firmata:down/]);
  t.notMatch(s.healthReasons.join(' '), /ble:errs/, 'only disconnected sources are a health reason');

  const bare = summarize(twin(), NOW);
  t.equal(bare.firmware, null);
  t.equal(bare.outbox, null);
  t.same(bare.sourcesWithErrors, []);
  t.same(bare.power, { state: null, lastCheckIn: null, lastWakeReason: null, checkInIntervalS: 3600, nextCheckIn: null });
});

t.test('configView: none, pending, applied, rejected', async (t) => {
  const none = configView(twin());
  t.same(none, { etag: 'e1', desired: {}, desiredVersion: 1, reported: null, status: 'none', errors: [] });

  const desired = { $version: 5, $metadata: { $lastUpdated: 'x' }, checkInIntervalS: 600 };
  t.same(desiredSettings(twin({}, { desired })), { checkInIntervalS: 600 }, 'no $-keys');
  const pending = configView(twin({}, { desired }));
  t.equal(pending.status, 'pending', 'never acknowledged');
  t.same(pending.desired, { checkInIntervalS: 600 });
  t.equal(pending.desiredVersion, 5);
  t.equal(pending.reported, null);

  const ack = (appliedVersion: number, desiredVersion: number, status: string, errors: unknown[] = []) => ({ config: { appliedVersion, desiredVersion, status, errors } });
  t.equal(configView(twin(ack(4, 4, 'applied'), { desired })).status, 'pending', 'acknowledged an older version');
  const applied = configView(twin(ack(5, 5, 'applied'), { desired }));
  t.equal(applied.status, 'applied');
  t.same(applied.reported, { appliedVersion: 5, desiredVersion: 5, status: 'applied', errors: [] });
  t.same(applied.errors, []);
  t.equal(configView(twin(ack(6, 6, 'applied'), { desired })).status, 'applied', 'acknowledged a newer version');

  const errors = [{ path: '/checkInIntervalS', message: 'must be >= 10' }];
  const rejected = configView(twin(ack(4, 5, 'rejected', errors), { desired }));
  t.equal(rejected.status, 'rejected');
  t.same(rejected.errors, errors);
  t.same(rejected.reported?.errors, errors);
  // Rejected an older version, then the newer one applied.
  t.equal(configView(twin(ack(5, 5, 'rejected', errors), { desired })).status, 'applied', 'applied version caught up');
  t.same(configView(twin(ack(5, 5, 'applied', errors), { desired })).errors, [], 'errors only when rejected');

  t.equal(configView(twin(ack(1, 1, 'applied'))).status, 'applied', 'no desired settings, but acknowledged');

  // Every setting removed (desired empty at a newer version): the gateway has not applied that yet.
  const cleared = twin(ack(5, 5, 'applied'), { desired: { $version: 6 } });
  t.equal(configView(cleared).status, 'pending', 'settings removed at v6, gateway acknowledged only v5');
  t.equal(summarize(cleared, NOW).config.status, 'pending');
  t.equal(configView(twin(ack(6, 6, 'applied'), { desired: { $version: 6 } })).status, 'applied');
});

t.test('reported fields of the wrong type do not throw', async (t) => {
  const weird: JsonObject[] = [
    { power: 'standby' },
    { power: { lastCheckIn: 12345, checkInIntervalS: 'hourly', onlineWindowS: null, state: 7, uplinkFailures: 'many' } },
    { power: { lastCheckIn: 'yesterday' } },
    { power: [1, 2, 3] },
    { sources: ['ble:a'] },
    { sources: { a: null, b: 'down', c: { connected: 'no', errors: '3' } } },
    { sources: 'none' },
    { outbox: 'full' },
    { outbox: { depth: 'deep', oldestAgeS: 'old' } },
    { outbox: null },
    { clock: 'wrong' },
    { firmware: 'v1' },
    { firmware: { version: 3 } },
    { config: 'applied' },
    { config: { appliedVersion: 'x', desiredVersion: 'y', status: 5, errors: 'none' } },
    { config: { desiredVersion: 2, errors: 'none' } },
  ];
  for (const reported of weird) {
    const tw = twin(reported, { desired: { $version: 'two', checkInIntervalS: 'x' } as JsonObject });
    const label = JSON.stringify(reported);
    t.doesNotThrow(() => summarize(tw, NOW), label);
    t.doesNotThrow(() => configView(tw), label);
    const s = summarize(tw, NOW);
    t.equal(s.power.checkInIntervalS, 3600, `${label}: defaults when the interval is not a number`);
    t.ok(Array.isArray(s.sourcesWithErrors) && Array.isArray(s.healthReasons), label);
  }
  const odd = summarize(twin({ power: { lastCheckIn: 12345 }, firmware: { version: 3 } }), NOW);
  t.equal(odd.power.lastCheckIn, null, 'a non-string check-in is not a time');
  t.equal(odd.firmware, null);
  t.equal(odd.health, 'unknown');
  const cfg = configView(twin({ config: { desiredVersion: 2, errors: 'none' } }, { desired: { $version: 2, a: 1 } }));
  t.same(cfg.reported, { appliedVersion: 0, desiredVersion: 2, status: 'unknown', errors: [] });
  t.same(configView(twin({}, { desired: { $version: 'two' } as JsonObject })).desiredVersion, 0);
});
