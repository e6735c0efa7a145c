import t from 'tap';
import { isFieldlinkError } from '../../../common/errors.js';
import {
  initialPower,
  next,
  powerEventTypes,
  powerPhases,
  PowerTransitionError,
  type PowerConfig,
  type PowerEffect,
  type PowerEvent,
  type PowerEventType,
  type PowerPhase,
  type PowerState,
  type Transition,
} from '../../../gateway/src/domain/power-state.js';

const C: PowerConfig = { checkInIntervalMs: 3_600_000, onlineWindowMs: 60_000, retryBaseMs: 30_000, retryMaxMs: 900_000 };
const C2: PowerConfig = { ...C, checkInIntervalMs: 600_000 };

const EVENTS: { readonly [E in PowerEventType]: Extract<PowerEvent, { type: E }> } = {
  checkInDue: { type: 'checkInDue' },
  outboxHighWatermark: { type: 'outboxHighWatermark' },
  alarmReading: { type: 'alarmReading', source: 'ble:AA/heart_rate' },
  localWakeRequest: { type: 'localWakeRequest' },
  pairingMode: { type: 'pairingMode', forS: 300 },
  readingsQueued: { type: 'readingsQueued' },
  c2dWake: { type: 'c2dWake', forS: 600 },
  c2dSleep: { type: 'c2dSleep' },
  uplinkOpened: { type: 'uplinkOpened' },
  uplinkFailed: { type: 'uplinkFailed', reason: 'ECONNREFUSED' },
  uplinkClosed: { type: 'uplinkClosed' },
  outboxDrained: { type: 'outboxDrained' },
  onlineWindowElapsed: { type: 'onlineWindowElapsed' },
  wakeElapsed: { type: 'wakeElapsed' },
  clockTrusted: { type: 'clockTrusted' },
  clockUntrusted: { type: 'clockUntrusted' },
  configChanged: { type: 'configChanged', config: C2 },
  shutdown: { type: 'shutdown' },
};

/** One representative state per phase: as the machine leaves it on entering that phase. */
const base: PowerState = { phase: 'standby', config: C, clockTrusted: true, failures: 0, drained: false, windowElapsed: false, holding: false };
const STATES: Record<PowerPhase, PowerState> = {
  standby: base,
  waking: { ...base, phase: 'waking' },
  online: { ...base, phase: 'online' },
  closing: { ...base, phase: 'closing' },
  stopped: { ...base, phase: 'stopped' },
};

const open: PowerEffect = { type: 'openUplink' };
const close: PowerEffect = { type: 'closeUplink' };
const start = (name: 'checkIn' | 'onlineWindow' | 'wakeHold', ms: number): PowerEffect => ({ type: 'startTimer', name, ms });
const cancel = (name: 'checkIn' | 'onlineWindow' | 'wakeHold'): PowerEffect => ({ type: 'cancelTimer', name });
const log = (msg: string, reason?: string): PowerEffect => ({ type: 'log', msg, ...(reason === undefined ? {} : { reason }) });
const wakeFx = (reason: string): PowerEffect[] => [cancel('checkIn'), open, log('waking', reason)];

interface Expect {
  phase: PowerPhase;
  effects: PowerEffect[];
  /** State fields that must differ from the representative state as given. */
  set?: Partial<PowerState>;
}
const THROW = 'throws' as const;
type Row = { readonly [E in PowerEventType]: Expect | typeof THROW };

/** The whole table: every phase × every event. */
const TABLE: Record<PowerPhase, Row> = {
  standby: {
    pairingMode: { phase: 'waking', effects: wakeFx('pairingMode'), set: { wakeReason: 'pairingMode', holdForS: 300 } },
    readingsQueued: { phase: 'standby', effects: [] },
    checkInDue: { phase: 'waking', effects: wakeFx('checkIn'), set: { wakeReason: 'checkIn' } },
    outboxHighWatermark: { phase: 'waking', effects: wakeFx('outboxHighWatermark'), set: { wakeReason: 'outboxHighWatermark' } },
    alarmReading: { phase: 'waking', effects: wakeFx('alarm'), set: { wakeReason: 'alarm' } },
    localWakeRequest: { phase: 'waking', effects: wakeFx('local'), set: { wakeReason: 'local' } },
    c2dWake: THROW,
    c2dSleep: THROW,
    uplinkOpened: THROW,
    uplinkFailed: THROW,
    uplinkClosed: THROW,
    outboxDrained: { phase: 'standby', effects: [] },
    onlineWindowElapsed: THROW,
    wakeElapsed: THROW,
    clockTrusted: { phase: 'standby', effects: [] },
    clockUntrusted: { phase: 'standby', effects: [], set: { clockTrusted: false } },
    configChanged: { phase: 'standby', effects: [], set: { config: C2 } },
    shutdown: { phase: 'stopped', effects: [cancel('checkIn'), log('stopped', 'shutdown')] },
  },
  waking: {
    pairingMode: { phase: 'waking', effects: [], set: { holdForS: 300 } },
    readingsQueued: { phase: 'waking', effects: [] },
    checkInDue: THROW,
    outboxHighWatermark: { phase: 'waking', effects: [] },
    alarmReading: { phase: 'waking', effects: [] },
    localWakeRequest: { phase: 'waking', effects: [] },
    c2dWake: THROW,
    c2dSleep: THROW,
    uplinkOpened: { phase: 'online', effects: [{ type: 'reconcileTwin' }, { type: 'drainOutbox' }, start('onlineWindow', 60_000), log('online')] },
    uplinkFailed: { phase: 'standby', effects: [start('checkIn', 30_000), log('standby', 'uplink failed: ECONNREFUSED')], set: { failures: 1 } },
    uplinkClosed: THROW,
    outboxDrained: { phase: 'waking', effects: [] },
    onlineWindowElapsed: THROW,
    wakeElapsed: THROW,
    clockTrusted: { phase: 'waking', effects: [] },
    clockUntrusted: { phase: 'closing', effects: [close, log('clock no longer trusted; closing', 'clockUntrusted')], set: { clockTrusted: false, wakePending: 'clockTrusted' } },
    configChanged: { phase: 'waking', effects: [], set: { config: C2 } },
    shutdown: { phase: 'stopped', effects: [close, log('stopped', 'shutdown')] },
  },
  online: {
    pairingMode: { phase: 'online', effects: [start('wakeHold', 300_000), log('held online for pairing mode', 'forS=300')], set: { holding: true } },
    readingsQueued: { phase: 'online', effects: [] },
    checkInDue: THROW,
    outboxHighWatermark: { phase: 'online', effects: [] },
    alarmReading: { phase: 'online', effects: [] },
    localWakeRequest: { phase: 'online', effects: [cancel('onlineWindow'), start('onlineWindow', 60_000)] },
    c2dWake: { phase: 'online', effects: [start('wakeHold', 600_000), log('held online by C2D wake', 'forS=600')], set: { holding: true } },
    c2dSleep: { phase: 'closing', effects: [cancel('onlineWindow'), close, log('going to standby', 'c2d sleep')] },
    uplinkOpened: THROW,
    uplinkFailed: { phase: 'standby', effects: [cancel('onlineWindow'), start('checkIn', 30_000), log('standby', 'uplink lost: ECONNREFUSED')], set: { failures: 1 } },
    uplinkClosed: THROW,
    outboxDrained: { phase: 'online', effects: [], set: { drained: true } },
    onlineWindowElapsed: { phase: 'online', effects: [], set: { windowElapsed: true } },
    wakeElapsed: THROW,
    clockTrusted: { phase: 'online', effects: [] },
    clockUntrusted: { phase: 'closing', effects: [cancel('onlineWindow'), close, log('going to standby', 'clockUntrusted')], set: { clockTrusted: false, wakePending: 'clockTrusted' } },
    configChanged: { phase: 'online', effects: [], set: { config: C2 } },
    shutdown: { phase: 'stopped', effects: [cancel('onlineWindow'), close, log('stopped', 'shutdown')] },
  },
  closing: {
    pairingMode: { phase: 'closing', effects: [], set: { wakePending: 'pairingMode', holdForS: 300 } },
    readingsQueued: { phase: 'closing', effects: [] },
    checkInDue: THROW,
    outboxHighWatermark: { phase: 'closing', effects: [], set: { wakePending: 'outboxHighWatermark' } },
    alarmReading: { phase: 'closing', effects: [], set: { wakePending: 'alarm' } },
    localWakeRequest: { phase: 'closing', effects: [], set: { wakePending: 'local' } },
    c2dWake: { phase: 'closing', effects: [], set: { wakePending: 'c2d', holdForS: 600 } },
    c2dSleep: { phase: 'closing', effects: [] },
    uplinkOpened: THROW,
    uplinkFailed: { phase: 'standby', effects: [start('checkIn', 3_600_000), log('standby', 'closed')] },
    uplinkClosed: { phase: 'standby', effects: [start('checkIn', 3_600_000), log('standby', 'closed')] },
    outboxDrained: { phase: 'closing', effects: [] },
    onlineWindowElapsed: THROW,
    wakeElapsed: THROW,
    clockTrusted: { phase: 'closing', effects: [] },
    clockUntrusted: { phase: 'closing', effects: [], set: { clockTrusted: false } },
    configChanged: { phase: 'closing', effects: [], set: { config: C2 } },
    shutdown: { phase: 'stopped', effects: [log('stopped', 'shutdown')] },
  },
  stopped: {
    pairingMode: { phase: 'stopped', effects: [] },
    readingsQueued: { phase: 'stopped', effects: [] },
    checkInDue: THROW,
    outboxHighWatermark: { phase: 'stopped', effects: [] },
    alarmReading: { phase: 'stopped', effects: [] },
    localWakeRequest: { phase: 'stopped', effects: [] },
    c2dWake: { phase: 'stopped', effects: [] },
    c2dSleep: { phase: 'stopped', effects: [] },
    uplinkOpened: { phase: 'stopped', effects: [close] },
    uplinkFailed: { phase: 'stopped', effects: [] },
    uplinkClosed: { phase: 'stopped', effects: [] },
    outboxDrained: { phase: 'stopped', effects: [] },
    onlineWindowElapsed: THROW,
    wakeElapsed: THROW,
    clockTrusted: { phase: 'stopped', effects: [] },
    clockUntrusted: { phase: 'stopped', effects: [] },
    configChanged: { phase: 'stopped', effects: [] },
    shutdown: { phase: 'stopped', effects: [] },
  },
};

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

t.test('every (phase, event) pair: next phase and effects, or a throw', async (t) => {
  t.equal(Object.keys(TABLE).length, powerPhases.length, 'the table covers every phase');
  let pairs = 0;
  for (const phase of powerPhases) {
    t.same(Object.keys(TABLE[phase]).sort(), [...powerEventTypes].sort(), `${phase}: the table lists every event`);
    for (const type of powerEventTypes) {
      pairs++;
      const expected = TABLE[phase][type];
      const state = deepFreeze({ ...STATES[phase] });
      const event = EVENTS[type];
      if (expected === THROW) {
        t.throws(() => next(state, event), { code: 'POWER_TRANSITION_INVALID', phase, event: type }, `${phase} × ${type} throws`);
        continue;
      }
      const got = next(state, event); // deepFreeze makes any mutation of the input throw
      t.equal(got.state.phase, expected.phase, `${phase} × ${type} → ${expected.phase}`);
      t.same(got.effects, expected.effects, `${phase} × ${type} effects`);
      const { phase: _p, ...rest } = got.state;
      const { phase: _q, ...wanted } = { ...STATES[phase], ...expected.set };
      t.strictSame(rest, wanted, `${phase} × ${type} state fields`);
    }
  }
  t.equal(pairs, powerPhases.length * powerEventTypes.length);
  t.comment(`${pairs} pairs: ${powerPhases.length} phases × ${powerEventTypes.length} events`);
});

function run(start: Transition, events: PowerEvent[]): { state: PowerState; steps: Transition[]; effects: PowerEffect[] } {
  const steps: Transition[] = [start];
  let state = start.state;
  for (const e of events) {
    const tr = next(state, e);
    steps.push(tr);
    state = tr.state;
  }
  return { state, steps, effects: steps.flatMap((s) => s.effects) };
}
const E = EVENTS;
const count = (effects: readonly PowerEffect[], type: PowerEffect['type']): number => effects.filter((e) => e.type === type).length;

t.test('a standby cycle: check-in, online, drain, window, close, next check-in', async (t) => {
  const boot = initialPower(C, true);
  t.same(boot.effects, [start('checkIn', 3_600_000)], 'boot schedules the first check-in');
  for (const order of [
    [E.outboxDrained, E.onlineWindowElapsed],
    [E.onlineWindowElapsed, E.outboxDrained],
  ]) {
    const r = run(boot, [E.checkInDue, E.uplinkOpened, ...order]);
    t.equal(r.state.phase, 'closing', 'closes once both drained and the window passed');
    t.same(r.steps.at(-2)?.effects, [], 'not before both');
    t.same(r.steps.at(-1)?.effects, [close, log('going to standby', 'done')]);
    const back = next(r.state, E.uplinkClosed);
    t.equal(back.state.phase, 'standby');
    t.same(back.effects, [start('checkIn', 3_600_000), log('standby', 'closed')]);
    t.equal(count(r.effects, 'openUplink'), 1);
    t.equal(count(r.effects, 'reconcileTwin'), 1, 'the twin is reconciled after every open');
  }
});

t.test('a C2D wake during a check-in keeps the uplink up for forS', async (t) => {
  const online = run(initialPower(C, true), [E.checkInDue, E.uplinkOpened]).state;
  const r = run({ state: online, effects: [] }, [{ type: 'c2dWake', forS: 900 }, E.outboxDrained, E.onlineWindowElapsed]);
  t.equal(r.state.phase, 'online', 'still online after drain and window: the wake holds');
  t.same(r.steps[1]?.effects, [start('wakeHold', 900_000), log('held online by C2D wake', 'forS=900')]);
  const again = next(r.state, { type: 'c2dWake', forS: 60 });
  t.same(again.effects.slice(0, 2), [cancel('wakeHold'), start('wakeHold', 60_000)], 'a second wake restarts the hold');
  const end = next(again.state, E.wakeElapsed);
  t.equal(end.state.phase, 'closing');
  t.same(end.effects, [close, log('going to standby', 'done')]);
  t.throws(() => next(end.state, E.wakeElapsed), { code: 'POWER_TRANSITION_INVALID' });
  // Hold elapsed before the drain finished: wait for the drain.
  const early = run({ state: online, effects: [] }, [{ type: 'c2dWake', forS: 1 }, E.wakeElapsed, E.onlineWindowElapsed]);
  t.equal(early.state.phase, 'online');
  t.equal(next(early.state, E.outboxDrained).state.phase, 'closing');
  // Sleep while held cancels both timers.
  t.same(next(next(online, { type: 'c2dWake', forS: 5 }).state, E.c2dSleep).effects, [cancel('onlineWindow'), cancel('wakeHold'), close, log('going to standby', 'c2d sleep')]);
});

t.test('an alarm while waking does not open twice', async (t) => {
  const r = run(initialPower(C, true), [E.alarmReading, E.alarmReading, E.outboxHighWatermark, E.localWakeRequest, E.uplinkOpened]);
  t.equal(r.state.phase, 'online');
  t.equal(count(r.effects, 'openUplink'), 1, 'one open');
  t.same(r.steps[1]?.effects, wakeFx('alarm'));
});

t.test('new readings while online after the drain finished restart it', async (t) => {
  const drained = run(initialPower(C, true), [E.checkInDue, E.uplinkOpened, E.outboxDrained]).state;
  for (const e of [E.alarmReading, E.outboxHighWatermark, E.readingsQueued]) {
    const tr = next(drained, e);
    t.same(tr.effects, [{ type: 'drainOutbox' }]);
    t.equal(tr.state.drained, false, 'closing waits for this drain too');
    t.equal(next(tr.state, E.onlineWindowElapsed).state.phase, 'online');
  }
});

t.test('pairing mode: wakes a sleeping gateway and holds it online for forS, from any phase', async (t) => {
  const boot = initialPower(C, true);
  const r = run(boot, [{ type: 'pairingMode', forS: 300 }, E.uplinkOpened, E.outboxDrained, E.onlineWindowElapsed]);
  t.same(r.steps[1]?.effects, wakeFx('pairingMode'), 'standby wakes at once');
  t.same(r.steps[2]?.effects.at(-2), start('wakeHold', 300_000), 'online, the hold starts');
  t.equal(r.state.phase, 'online', 'drained and window passed, still held');
  t.equal(next(r.state, E.wakeElapsed).state.phase, 'closing', 'closes when the hold ends');
  // Asked again while held: the hold restarts from now.
  const again = next(r.state, { type: 'pairingMode', forS: 60 });
  t.same(again.effects.slice(0, 2), [cancel('wakeHold'), start('wakeHold', 60_000)]);
  // During an outage backoff (failures > 0) a pairing request still opens: someone is there.
  const failed = run(boot, [E.checkInDue, E.uplinkFailed]).state;
  t.equal(next(failed, { type: 'pairingMode', forS: 30 }).state.phase, 'waking');
  // While closing it is remembered and applied after the reopen.
  const closing = run(boot, [E.checkInDue, E.uplinkOpened, E.outboxDrained, E.onlineWindowElapsed]).state;
  t.equal(closing.phase, 'closing');
  const reopened = run({ state: closing, effects: [] }, [{ type: 'pairingMode', forS: 120 }, E.uplinkClosed, E.uplinkOpened]);
  t.equal(reopened.state.phase, 'online');
  t.ok(reopened.state.holding, 'held after the reopen');
  t.same(reopened.steps.at(-1)?.effects.at(-2), start('wakeHold', 120_000));
});

t.test('readings queued in standby wait; online they are forwarded', async (t) => {
  const boot = initialPower(C, true);
  const asleep = next(boot.state, E.readingsQueued);
  t.equal(asleep.state.phase, 'standby');
  t.same(asleep.effects, [], 'no wake, no drain in standby');
  const opened = run(boot, [E.checkInDue, E.uplinkOpened]).state;
  t.same(next(opened, E.readingsQueued).effects, [], 'online, a drain under way takes them along');
  const drained = next(opened, E.outboxDrained).state;
  t.same(next(drained, E.readingsQueued).effects, [{ type: 'drainOutbox' }], 'online after the drain finished, they are forwarded');
});

t.test('uplink failure backs off to standby with a retry check-in, doubling to a cap', async (t) => {
  let s = next(initialPower(C, true).state, E.checkInDue).state;
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    const failed = next(s, E.uplinkFailed);
    t.equal(failed.state.phase, 'standby');
    const timer = failed.effects.find((e) => e.type === 'startTimer');
    if (timer?.type === 'startTimer') delays.push(timer.ms);
    const retry = next(failed.state, E.checkInDue);
    t.same(retry.effects, wakeFx('retry'), 'the check-in after a failure is a retry');
    s = retry.state;
  }
  t.same(delays, [30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000]);
  const ok = run({ state: s, effects: [] }, [E.uplinkOpened, E.outboxDrained, E.onlineWindowElapsed, E.uplinkClosed]);
  t.equal(ok.state.failures, 0, 'a successful open resets the backoff');
  t.same(ok.steps.at(-1)?.effects, [start('checkIn', 3_600_000), log('standby', 'closed')], 'back to the normal schedule');
  const lost = run({ state: s, effects: [] }, [E.uplinkOpened, { type: 'c2dWake', forS: 10 }, E.uplinkFailed]);
  t.same(lost.steps.at(-1)?.effects, [cancel('onlineWindow'), cancel('wakeHold'), start('checkIn', 30_000), log('standby', 'uplink lost: ECONNREFUSED')], 'losing the link while online also retries');
});

t.test('no uplink until the clock is trusted; a wake waits for it', async (t) => {
  const boot = initialPower(C, false);
  const r = run(boot, [E.checkInDue, E.alarmReading]);
  t.equal(r.state.phase, 'standby');
  t.equal(count(r.effects, 'openUplink'), 0);
  t.equal(r.state.wakePending, 'checkIn', 'the first reason is kept');
  const trusted = next(r.state, E.clockTrusted);
  t.equal(trusted.state.phase, 'waking');
  t.same(trusted.effects, wakeFx('checkIn'));
  t.equal(trusted.state.wakePending, undefined);
  t.equal(trusted.state.wakeReason, 'checkIn', 'the deferred wake keeps its own reason, not "clockTrusted"');
  // Losing trust while online closes, and reopens once trusted again.
  const online = next(trusted.state, E.uplinkOpened).state;
  const untrusted = run({ state: online, effects: [] }, [E.clockUntrusted, E.uplinkClosed]);
  t.equal(untrusted.state.phase, 'standby');
  t.equal(untrusted.state.wakePending, 'clockTrusted');
  t.equal(next(untrusted.state, E.clockTrusted).state.phase, 'waking');
});

t.test('a wake while closing reopens right after the close; a C2D hold applies once online', async (t) => {
  const online = run(initialPower(C, true), [E.checkInDue, E.uplinkOpened]).state;
  const r = run({ state: online, effects: [] }, [E.c2dSleep, E.alarmReading, E.uplinkClosed]);
  t.equal(r.state.phase, 'waking');
  t.same(r.steps.at(-1)?.effects, wakeFx('alarm'));
  const c = run({ state: online, effects: [] }, [E.c2dSleep, { type: 'c2dWake', forS: 120 }, E.uplinkClosed, E.uplinkOpened]);
  t.equal(c.state.phase, 'online');
  t.equal(c.state.holding, true);
  t.equal(c.state.holdForS, undefined);
  t.same(c.steps.at(-1)?.effects, [{ type: 'reconcileTwin' }, { type: 'drainOutbox' }, start('onlineWindow', 60_000), start('wakeHold', 120_000), log('online')]);
  const failed = run({ state: online, effects: [] }, [E.c2dSleep, { type: 'c2dWake', forS: 120 }, E.uplinkClosed, E.uplinkFailed]);
  t.equal(failed.state.holdForS, undefined, 'a failed reopen drops the hold');
});

t.test('shutdown cancels what is running and closes what is open', async (t) => {
  const held = run(initialPower(C, true), [E.checkInDue, E.uplinkOpened, { type: 'c2dWake', forS: 5 }]).state;
  t.same(next(held, E.shutdown).effects, [cancel('onlineWindow'), cancel('wakeHold'), close, log('stopped', 'shutdown')]);
});

t.test('the error is typed and names the pair', async (t) => {
  try {
    next(STATES.standby, E.uplinkOpened);
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof PowerTransitionError);
    t.ok(isFieldlinkError(err, 'POWER_TRANSITION_INVALID'));
    if (err instanceof PowerTransitionError) {
      t.equal(err.phase, 'standby');
      t.equal(err.event, 'uplinkOpened');
      t.equal(err.retryable, false);
      t.match(err.message, /standby does not accept uplinkOpened/);
    }
  }
  t.throws(() => next({ ...STATES.online, windowElapsed: true }, E.onlineWindowElapsed), { code: 'POWER_TRANSITION_INVALID' }, 'a window timer that is not running');
});
