/**
 * Runs the pure power table (domain/power-state.ts): feeds it events one at a time, keeps the
 * state, runs its timers on the injected Clock, and hands the other effects to the gateway.
 *
 * Events raised while an event is being handled (an effect handler reporting back at once) are
 * queued and handled after it, so the table always sees one event at a time in order.
 */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import {
  initialPower,
  next,
  PowerTransitionError,
  timerEvents,
  type PowerConfig,
  type PowerEffect,
  type PowerEvent,
  type PowerState,
  type TimerName,
} from '../domain/power-state.js';

/** The effects the runner does not perform itself; each starts work and returns at once. */
export interface PowerEffectHandlers {
  openUplink(): void;
  closeUplink(): void;
  drainOutbox(): void;
  reconcileTwin(): void;
  /** Called after every transition that changed the state (phase changes and flags). */
  transitioned(from: PowerState, to: PowerState, event: PowerEvent): void;
}

export class PowerRunner {
  #state: PowerState;
  readonly #timers = new Map<TimerName, AbortController>();
  readonly #queue: PowerEvent[] = [];
  #busy = false;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #handlers: PowerEffectHandlers;
  #initialEffects: readonly PowerEffect[];

  constructor(opts: { config: PowerConfig; clockTrusted: boolean; clock: Clock; log: Logger; handlers: PowerEffectHandlers }) {
    const t = initialPower(opts.config, opts.clockTrusted);
    this.#state = t.state;
    this.#initialEffects = t.effects;
    this.#clock = opts.clock;
    this.#log = opts.log;
    this.#handlers = opts.handlers;
  }

  get state(): PowerState {
    return this.#state;
  }

  /** Runs the boot effects (the first check-in timer). */
  start(): void {
    const effects = this.#initialEffects;
    this.#initialEffects = [];
    for (const e of effects) this.#perform(e);
  }

  /**
   * Feeds an event. Returns false when the current phase does not accept it (logged): events
   * come from timers, sockets and operators, and one arriving in a phase the table does not
   * expect (a C2D wake racing the uplink's close) must not bring the gateway down.
   */
  dispatch(event: PowerEvent): boolean {
    if (this.#busy) {
      this.#queue.push(event);
      return true;
    }
    this.#busy = true;
    try {
      const accepted = this.#step(event);
      for (let queued = this.#queue.shift(); queued !== undefined; queued = this.#queue.shift()) this.#step(queued);
      return accepted;
    } finally {
      this.#busy = false;
    }
  }

  /** Stops every timer (after a `shutdown` event, or when the gateway is torn down). */
  cancelTimers(): void {
    for (const ac of this.#timers.values()) ac.abort();
    this.#timers.clear();
  }

  #step(event: PowerEvent): boolean {
    const from = this.#state;
    let t;
    try {
      t = next(from, event);
    } catch (e) {
      if (!(e instanceof PowerTransitionError)) throw e;
      this.#log.warn({ phase: from.phase, event: event.type }, 'power event ignored: not expected in this phase');
      return false;
    }
    this.#state = t.state;
    for (const effect of t.effects) this.#perform(effect);
    if (t.state !== from) this.#handlers.transitioned(from, t.state, event);
    return true;
  }

  #perform(effect: PowerEffect): void {
    switch (effect.type) {
      case 'startTimer':
        this.#startTimer(effect.name, effect.ms);
        return;
      case 'cancelTimer':
        this.#timers.get(effect.name)?.abort();
        this.#timers.delete(effect.name);
        return;
      case 'log':
        this.#log.info({ phase: this.#state.phase, ...(effect.reason === undefined ? {} : { reason: effect.reason }) }, effect.msg);
        return;
      case 'openUplink':
        this.#handlers.openUplink();
        return;
      case 'closeUplink':
        this.#handlers.closeUplink();
        return;
      case 'drainOutbox':
        this.#handlers.drainOutbox();
        return;
      case 'reconcileTwin':
        this.#handlers.reconcileTwin();
        return;
    }
  }

  #startTimer(name: TimerName, ms: number): void {
    this.#timers.get(name)?.abort();
    const ac = new AbortController();
    this.#timers.set(name, ac);
    this.#clock.sleep(ms, ac.signal).then(
      () => {
        if (this.#timers.get(name) !== ac) return;
        this.#timers.delete(name);
        this.dispatch({ type: timerEvents[name] });
      },
      () => undefined, // aborted: cancelled or restarted
    );
  }
}
