/**
 * The power state machine (design §4): a pure transition table. `next(state, event)` returns
 * the new state and the effects the caller must run (open the uplink, start a timer, …); it
 * performs nothing and reads no clock — durations come from `state.config` and events.
 *
 *   standby ──wake trigger──▶ waking ──uplinkOpened──▶ online ──drained + window + hold over──▶
 *   closing ──uplinkClosed──▶ standby            (waking ──uplinkFailed──▶ standby, retry later)
 *
 * A (phase, event) pair the table does not list throws POWER_TRANSITION_INVALID: such an event
 * means whatever produced it is wrong (e.g. "uplink opened" when none was opening), and the
 * caller should hear about it rather than have it ignored.
 */
import { FieldlinkError } from '../../../common/errors.js';

export type PowerPhase = 'standby' | 'waking' | 'online' | 'closing' | 'stopped';
export const powerPhases: readonly PowerPhase[] = ['standby', 'waking', 'online', 'closing', 'stopped'];

export type TimerName = 'checkIn' | 'onlineWindow' | 'wakeHold';

/** The event a runner feeds when a timer fires. */
export const timerEvents = { checkIn: 'checkInDue', onlineWindow: 'onlineWindowElapsed', wakeHold: 'wakeElapsed' } as const satisfies Record<TimerName, string>;

export type WakeReason = 'checkIn' | 'outboxHighWatermark' | 'alarm' | 'local' | 'pairingMode' | 'c2d' | 'retry' | 'clockTrusted';

export interface PowerConfig {
  /** Standby → wake interval of the check-in schedule. */
  readonly checkInIntervalMs: number;
  /** How long to stay online at least, once opened. */
  readonly onlineWindowMs: number;
  /** First retry after a failed open; doubles per consecutive failure up to retryMaxMs. */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
}

export interface PowerState {
  readonly phase: PowerPhase;
  readonly config: PowerConfig;
  /** The wall clock is trusted; until it is, the uplink stays closed (no SAS from a wrong clock). */
  readonly clockTrusted: boolean;
  /** Why the uplink last woke (set on entering waking; kept until the next wake). */
  readonly wakeReason?: WakeReason;
  /** A wake was asked for while it could not happen (clock untrusted, or closing): done later. */
  readonly wakePending?: WakeReason;
  /** Consecutive failed opens (for backoff); reset when an open succeeds. */
  readonly failures: number;
  /** Online: the outbox is empty as far as the drain knows. */
  readonly drained: boolean;
  /** Online: the online window has passed. */
  readonly windowElapsed: boolean;
  /** Online: a C2D wake holds the uplink open until its timer elapses. */
  readonly holding: boolean;
  /** Closing: the C2D wake that arrived while closing, applied when the uplink reopens. */
  readonly holdForS?: number;
}

export type PowerEvent =
  | { readonly type: 'checkInDue' }
  | { readonly type: 'outboxHighWatermark' }
  | { readonly type: 'alarmReading'; readonly source?: string }
  | { readonly type: 'localWakeRequest' }
  /** Local pairing mode (after boot, or asked on the gateway itself): be online for forS from now. */
  | { readonly type: 'pairingMode'; readonly forS: number }
  /** Readings were committed to the outbox: while online they are forwarded without waiting for a trigger. */
  | { readonly type: 'readingsQueued' }
  | { readonly type: 'c2dWake'; readonly forS: number }
  | { readonly type: 'c2dSleep' }
  | { readonly type: 'uplinkOpened' }
  | { readonly type: 'uplinkFailed'; readonly reason?: string }
  | { readonly type: 'uplinkClosed' }
  | { readonly type: 'outboxDrained' }
  | { readonly type: 'onlineWindowElapsed' }
  | { readonly type: 'wakeElapsed' }
  | { readonly type: 'clockTrusted' }
  | { readonly type: 'clockUntrusted' }
  | { readonly type: 'configChanged'; readonly config: PowerConfig }
  | { readonly type: 'shutdown' };

export type PowerEventType = PowerEvent['type'];
export const powerEventTypes: readonly PowerEventType[] = [
  'checkInDue',
  'outboxHighWatermark',
  'alarmReading',
  'localWakeRequest',
  'pairingMode',
  'readingsQueued',
  'c2dWake',
  'c2dSleep',
  'uplinkOpened',
  'uplinkFailed',
  'uplinkClosed',
  'outboxDrained',
  'onlineWindowElapsed',
  'wakeElapsed',
  'clockTrusted',
  'clockUntrusted',
  'configChanged',
  'shutdown',
];

export type PowerEffect =
  | { readonly type: 'openUplink' }
  | { readonly type: 'closeUplink' }
  /** Starts (or restarts) the named timer; when it fires the runner feeds the matching event. */
  | { readonly type: 'startTimer'; readonly name: TimerName; readonly ms: number }
  /** Idempotent: cancelling a timer that already fired or never started does nothing. */
  | { readonly type: 'cancelTimer'; readonly name: TimerName }
  | { readonly type: 'drainOutbox' }
  | { readonly type: 'reconcileTwin' }
  | { readonly type: 'log'; readonly msg: string; readonly reason?: string };

export interface Transition {
  readonly state: PowerState;
  readonly effects: readonly PowerEffect[];
}

const open = (): PowerEffect => ({ type: 'openUplink' });
const close = (): PowerEffect => ({ type: 'closeUplink' });
const start = (name: TimerName, ms: number): PowerEffect => ({ type: 'startTimer', name, ms });
const cancel = (name: TimerName): PowerEffect => ({ type: 'cancelTimer', name });
const log = (msg: string, reason?: string): PowerEffect => ({ type: 'log', msg, ...(reason === undefined ? {} : { reason }) });

const ONLINE_RESET = { drained: false, windowElapsed: false, holding: false } as const;

/** The machine at boot: standby with the first check-in scheduled. */
export function initialPower(config: PowerConfig, clockTrusted: boolean): Transition {
  return {
    state: { phase: 'standby', config, clockTrusted, failures: 0, ...ONLINE_RESET },
    effects: [start('checkIn', config.checkInIntervalMs)],
  };
}

export function retryDelayMs(config: PowerConfig, failures: number): number {
  return Math.min(config.retryMaxMs, config.retryBaseMs * 2 ** Math.max(0, failures - 1));
}

function without(s: PowerState, ...keys: ('wakePending' | 'holdForS')[]): PowerState {
  const copy: Record<string, unknown> = { ...s };
  for (const k of keys) delete copy[k];
  return copy as unknown as PowerState;
}

/** Standby → waking, or remember the wake until the clock is trusted. */
function wake(s: PowerState, reason: WakeReason): Transition {
  if (!s.clockTrusted) {
    return { state: { ...s, wakePending: s.wakePending ?? reason }, effects: [log('wake deferred until the clock is trusted', reason)] };
  }
  return {
    state: { ...without(s, 'wakePending'), phase: 'waking', wakeReason: reason },
    effects: [cancel('checkIn'), open(), log('waking', reason)],
  };
}

/** Online: close once drained, the window passed and no C2D wake holds the uplink. */
function closeIfDone(s: PowerState, extra: readonly PowerEffect[] = []): Transition {
  if (s.drained && s.windowElapsed && !s.holding) {
    return { state: { ...s, ...ONLINE_RESET, phase: 'closing' }, effects: [...extra, close(), log('going to standby', 'done')] };
  }
  return { state: s, effects: extra };
}

/** Leave online (or waking) for closing at once: timers that belong to online are cancelled. */
function closeNow(s: PowerState, reason: string): Transition {
  const timers = s.phase === 'online' ? [cancel('onlineWindow'), ...(s.holding ? [cancel('wakeHold')] : [])] : [];
  return { state: { ...s, ...ONLINE_RESET, phase: 'closing' }, effects: [...timers, close(), log('going to standby', reason)] };
}

/** Online: new readings to forward; restart the drain if it had finished. */
function redrain(s: PowerState): Transition {
  return s.drained ? { state: { ...s, drained: false }, effects: [{ type: 'drainOutbox' }] } : { state: s, effects: [] };
}

function toStandby(s: PowerState, delayMs: number, why: string): Transition {
  return {
    state: { ...s, ...ONLINE_RESET, phase: 'standby' },
    effects: [start('checkIn', delayMs), log('standby', why)],
  };
}

/** Closing → standby; a wake asked for while closing reopens at once (keeping a C2D hold). */
function closed(s: PowerState): Transition {
  const base: PowerState = { ...s, phase: 'standby' };
  if (s.wakePending !== undefined && s.clockTrusted) return wake(base, s.wakePending);
  return { state: without(base, 'holdForS'), effects: [start('checkIn', s.config.checkInIntervalMs), log('standby', 'closed')] };
}

type Handler = (s: PowerState, e: never) => Transition;
type Table = { readonly [P in PowerPhase]: { readonly [E in PowerEventType]?: (s: PowerState, e: Extract<PowerEvent, { type: E }>) => Transition } };

const same = (s: PowerState): Transition => ({ state: s, effects: [] });
const configure = (s: PowerState, e: { config: PowerConfig }): Transition => ({ state: { ...s, config: e.config }, effects: [] });
const stop = (s: PowerState, effects: PowerEffect[]): Transition => ({
  state: { ...without(s, 'wakePending', 'holdForS'), ...ONLINE_RESET, phase: 'stopped' },
  effects: [...effects, log('stopped', 'shutdown')],
});
const remember = (reason: WakeReason) => (s: PowerState): Transition => ({ state: { ...s, wakePending: s.wakePending ?? reason }, effects: [] });
/** A hold asked for before the link is open (C2D wake, pairing mode): the longest one starts at uplinkOpened. */
const holdOnOpen = (s: PowerState, forS: number): PowerState => ({ ...s, holdForS: Math.max(forS, s.holdForS ?? 0) });
/** Closing: reopen right after, then hold. */
const rememberHold = (reason: WakeReason) => (s: PowerState, e: { readonly forS: number }): Transition => ({ state: { ...holdOnOpen(s, e.forS), wakePending: s.wakePending ?? reason }, effects: [] });
/** Online: "stay up for forS" restarts the hold from now; the window and drain rules still apply as well. */
const holdOnline = (msg: string) => (s: PowerState, e: { readonly forS: number }): Transition => ({
  state: { ...s, holding: true },
  effects: [...(s.holding ? [cancel('wakeHold')] : []), start('wakeHold', e.forS * 1000), log(msg, `forS=${e.forS}`)],
});

const table: Table = {
  standby: {
    checkInDue: (s) => wake(s, s.failures > 0 ? 'retry' : 'checkIn'),
    outboxHighWatermark: (s) => wake(s, 'outboxHighWatermark'),
    alarmReading: (s) => wake(s, 'alarm'),
    localWakeRequest: (s) => wake(s, 'local'),
    // Wakes even while an outage is retried: someone is at the gateway pairing devices now.
    pairingMode: (s, e) => wake(holdOnOpen(s, e.forS), 'pairingMode'),
    // Asleep, readings wait for the next trigger: that is what standby saves.
    readingsQueued: same,
    // A drain still finishing after the uplink failed reports late; nothing to do.
    outboxDrained: same,
    clockTrusted: (s) => (s.wakePending === undefined ? { state: { ...s, clockTrusted: true }, effects: [] } : wake({ ...s, clockTrusted: true }, s.wakePending)),
    clockUntrusted: (s) => ({ state: { ...s, clockTrusted: false }, effects: [] }),
    configChanged: configure,
    shutdown: (s) => stop(s, [cancel('checkIn')]),
  },
  waking: {
    pairingMode: (s, e) => ({ state: holdOnOpen(s, e.forS), effects: [] }),
    // The open drains everything committed so far.
    readingsQueued: same,
    // Already opening: a second trigger must not open twice.
    outboxHighWatermark: same,
    alarmReading: same,
    localWakeRequest: same,
    // Patches sent while asleep are not replayed, so every open reconciles the whole twin.
    uplinkOpened: (s) => ({
      state: { ...without(s, 'holdForS'), ...ONLINE_RESET, phase: 'online', failures: 0, holding: s.holdForS !== undefined },
      effects: [
        { type: 'reconcileTwin' },
        { type: 'drainOutbox' },
        start('onlineWindow', s.config.onlineWindowMs),
        // A C2D wake that arrived while the uplink was closing holds from now.
        ...(s.holdForS === undefined ? [] : [start('wakeHold', s.holdForS * 1000)]),
        log('online'),
      ],
    }),
    uplinkFailed: (s, e) => {
      const failures = s.failures + 1;
      return toStandby(without({ ...s, failures }, 'holdForS'), retryDelayMs(s.config, failures), `uplink failed${e.reason === undefined ? '' : `: ${e.reason}`}`);
    },
    outboxDrained: same,
    // A wrong clock must not mint a SAS token: abandon the open; reopen once trusted.
    clockUntrusted: (s) => ({ state: { ...s, ...ONLINE_RESET, phase: 'closing', clockTrusted: false, wakePending: 'clockTrusted' }, effects: [close(), log('clock no longer trusted; closing', 'clockUntrusted')] }),
    clockTrusted: same,
    configChanged: configure,
    shutdown: (s) => stop(s, [close()]),
  },
  online: {
    outboxHighWatermark: redrain,
    alarmReading: redrain,
    // The link is up (held by a wake or pairing mode): forward now rather than at the next trigger.
    readingsQueued: redrain,
    pairingMode: holdOnline('held online for pairing mode'),
    localWakeRequest: (s) => ({ state: { ...s, windowElapsed: false }, effects: [cancel('onlineWindow'), start('onlineWindow', s.config.onlineWindowMs)] }),
    c2dWake: holdOnline('held online by C2D wake'),
    c2dSleep: (s) => closeNow(s, 'c2d sleep'),
    uplinkFailed: (s, e) => {
      const failures = s.failures + 1;
      const t = toStandby({ ...s, failures }, retryDelayMs(s.config, failures), `uplink lost${e.reason === undefined ? '' : `: ${e.reason}`}`);
      return { state: t.state, effects: [cancel('onlineWindow'), ...(s.holding ? [cancel('wakeHold')] : []), ...t.effects] };
    },
    outboxDrained: (s) => closeIfDone({ ...s, drained: true }),
    // A timer that is not running cannot fire: that would be a bug in the timer runner.
    onlineWindowElapsed: (s, e) => (s.windowElapsed ? invalid(s, e) : closeIfDone({ ...s, windowElapsed: true })),
    wakeElapsed: (s, e) => (s.holding ? closeIfDone({ ...s, holding: false }) : invalid(s, e)),
    clockTrusted: same,
    clockUntrusted: (s) => {
      const t = closeNow(s, 'clockUntrusted');
      return { state: { ...t.state, clockTrusted: false, wakePending: 'clockTrusted' }, effects: t.effects };
    },
    configChanged: configure,
    shutdown: (s) => stop(s, [cancel('onlineWindow'), ...(s.holding ? [cancel('wakeHold')] : []), close()]),
  },
  closing: {
    // Triggers while the uplink closes reopen it right after.
    outboxHighWatermark: remember('outboxHighWatermark'),
    alarmReading: remember('alarm'),
    localWakeRequest: remember('local'),
    pairingMode: rememberHold('pairingMode'),
    readingsQueued: same,
    // A C2D message can be in flight as the link closes: honour it by reopening.
    c2dWake: rememberHold('c2d'),
    c2dSleep: same,
    uplinkClosed: (s) => closed(s),
    // Closing failed: the link is gone either way.
    uplinkFailed: (s) => closed(s),
    outboxDrained: same,
    clockTrusted: (s) => ({ state: { ...s, clockTrusted: true }, effects: [] }),
    clockUntrusted: (s) => ({ state: { ...s, clockTrusted: false }, effects: [] }),
    configChanged: configure,
    // The close under way finishes by itself.
    shutdown: (s) => stop(s, []),
  },
  // After shutdown, late reports from adapters are expected and change nothing; a late open closes.
  stopped: {
    localWakeRequest: same,
    pairingMode: same,
    readingsQueued: same,
    // C2D messages can still be in flight while the link closes.
    c2dWake: same,
    c2dSleep: same,
    uplinkOpened: (s) => ({ state: s, effects: [close()] }),
    uplinkFailed: same,
    uplinkClosed: same,
    outboxDrained: same,
    outboxHighWatermark: same,
    alarmReading: same,
    clockTrusted: same,
    clockUntrusted: same,
    configChanged: same,
    shutdown: same,
  },
};

export class PowerTransitionError extends FieldlinkError {
  constructor(
    readonly phase: PowerPhase,
    readonly event: PowerEventType,
  ) {
    super('POWER_TRANSITION_INVALID', { message: `power state ${phase} does not accept ${event}`, details: { phase, event } });
  }
}

function invalid(s: PowerState, e: PowerEvent): never {
  throw new PowerTransitionError(s.phase, e.type);
}

/** One step of the machine. Throws PowerTransitionError for a pair the table does not list. */
export function next(state: PowerState, event: PowerEvent): Transition {
  const handler = table[state.phase][event.type] as Handler | undefined;
  if (handler === undefined) throw new PowerTransitionError(state.phase, event.type);
  return handler(state, event as never);
}
