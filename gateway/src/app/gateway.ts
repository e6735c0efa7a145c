/**
 * The gateway at run time (design §4): sources → stamp, alarm and thinning → outbox, and the
 * uplink under the power state machine: forward the outbox, take C2D commands, keep the twin in
 * step, report state. Everything outside comes in through ports; gateway/src/main.ts wires the
 * real adapters, tests wire fakes or the same adapters against a local hub.
 */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { Sample } from '../../../sensors/contract/reading.js';
import { parseCommandBody, type Command } from '../contract/commands.js';
import type { GatewaySettings } from '../contract/gateway-config.js';
import type { DeepReadonly } from '../../../common/config.js';
import type { PowerConfig, PowerEvent, PowerState } from '../domain/power-state.js';
import { isAlarm, ReportThinner } from '../domain/reading-policy.js';
import {
  applyDesiredPatch,
  configAck,
  initialReconcileState,
  reconcileDesiredDocument,
  type JsonObject,
  type ReconcileResult,
  type ReconcileState,
  type SettingsValidator,
  type VersionedDesired,
} from '../domain/twin-reconcile.js';
import type { AppliedConfigStore } from '../ports/applied-config-store.js';
import type { BootClock, ClockTrust } from '../ports/clock-trust.js';
import type { GatewaySource } from '../ports/gateway-source.js';
import type { Outbox, OutboxStats } from '../ports/outbox.js';
import type { IncomingCommand, Uplink, UplinkError } from '../ports/uplink.js';
import { Forwarder, type ForwarderOptions } from './forwarder.js';
import { PowerRunner } from './power-runner.js';
import { reportedState, type SourceActivity } from './reported-state.js';

export type Settings = DeepReadonly<GatewaySettings>;

export interface GatewayRuntimeOptions {
  readonly gatewayId: string;
  readonly firmwareVersion: string;
  /** The config file's settings, defaults applied. */
  readonly fileSettings: Settings;
  readonly validate: SettingsValidator<Settings>;
  readonly appliedConfig: AppliedConfigStore;
  /** What `appliedConfig` held at boot (the caller loaded it to size the outbox). */
  readonly storedDesired: VersionedDesired | undefined;
  readonly outbox: Outbox;
  readonly uplink: Uplink;
  readonly sources: readonly GatewaySource[];
  readonly clock: Clock;
  readonly clockTrust: ClockTrust;
  readonly bootClock: BootClock;
  readonly log: Logger;
  /** Failed opens retry after this, doubling (defaults 5 s .. 10 min). */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** Reported state is refreshed this often while online (default 60 s). */
  readonly reportEveryMs?: number;
  /**
   * While online, a paired device's state change (connecting → receiving, error) is reported
   * within about this long (default 1 s), at most once per this interval: someone pairing with
   * a phone waits for it, and the periodic refresh alone could take a minute.
   */
  readonly deviceStateReportMs?: number;
  /**
   * Online, committed readings are forwarded after this delay (default 5 s), so one message
   * carries a few seconds of them instead of one each; asleep they wait for a trigger.
   */
  readonly onlineForwardDelayMs?: number;
  /** The outbox size is checked against the high watermark at most this often (default 1 s). */
  readonly watermarkCheckMs?: number;
  /** Forwarder tuning (backoffs, in-flight window) for tests and benchmarks. */
  readonly forwarder?: Partial<Pick<ForwarderOptions, 'maxInFlight' | 'peekRows' | 'throttle' | 'auth' | 'network' | 'quotaSlackMs' | 'random'>>;
  /** Retries of a sampling setting a device did not take (default 10 s). */
  readonly samplingRetryMs?: number;
}

/** A compact view for status lines and tests. */
export interface GatewayStatus {
  readonly phase: PowerState['phase'];
  readonly clockTrusted: boolean;
  readonly outboxDepth: number | undefined;
  /** Readings IoT Hub accepted since start. */
  readonly readingsSent: number;
  readonly messagesSent: number;
  readonly readingsCommitted: number;
  readonly lastCheckInMs: number | undefined;
  readonly commandsCompleted: number;
  readonly commandsRejected: number;
  readonly configVersion: number;
  readonly configStatus: 'applied' | 'rejected';
}

function powerConfig(s: Settings, o: GatewayRuntimeOptions): PowerConfig {
  return {
    checkInIntervalMs: s.checkInIntervalS * 1000,
    onlineWindowMs: s.onlineWindowS * 1000,
    retryBaseMs: o.retryBaseMs ?? 5000,
    retryMaxMs: o.retryMaxMs ?? 600_000,
  };
}

function samePowerConfig(a: PowerConfig, b: PowerConfig): boolean {
  return a.checkInIntervalMs === b.checkInIntervalMs && a.onlineWindowMs === b.onlineWindowMs && a.retryBaseMs === b.retryBaseMs && a.retryMaxMs === b.retryMaxMs;
}

/**
 * `source/address=state` of every paired device, sorted, marked once it has a value (the phone
 * shows "receiving" with the value): a change is what a prompt report is for.
 */
function deviceStateKey(bySource: readonly (readonly [string, Record<string, Record<string, unknown>> | undefined])[]): string {
  const states: string[] = [];
  for (const [configId, devices] of bySource) {
    for (const [address, d] of Object.entries(devices ?? {})) states.push(`${configId}/${address}=${String(d.state)}${d.lastValue === null || d.lastValue === undefined ? '' : '+value'}`);
  }
  return states.sort().join(',');
}

export class GatewayRuntime {
  readonly #o: GatewayRuntimeOptions;
  readonly #log: Logger;
  readonly #power: PowerRunner;
  #reconcile: ReconcileState<Settings>;
  readonly #thinner = new ReportThinner();
  readonly #activity = new Map<string, { readings: number; lastSeenMs: number | undefined; samplingErrors: number }>();
  readonly #stop = new AbortController();
  #pumps: Promise<void>[] = [];
  #drain: AbortController | undefined;
  #online: AbortController | undefined;
  #unsubscribe: (() => void)[] = [];
  #lastStats: OutboxStats | undefined;
  #lastWatermarkCheck = Number.NEGATIVE_INFINITY;
  #watermarkCheck: Promise<void> | undefined;
  /** The pending online forward (onlineForwardDelayMs), one at a time. */
  #forwardTimer: Promise<void> | undefined;
  #lastCheckInMs: number | undefined;
  #lastUplinkError: { kind: string; message: string; atMs: number } | undefined;
  #readingsThinned = 0;
  #readingsCommitted = 0;
  #readingsSent = 0;
  #messagesSent = 0;
  #commandsCompleted = 0;
  #commandsRejected = 0;
  #appendsInFlight = new Set<Promise<unknown>>();
  /** deviceStateKey() as last reported: a change reports early. */
  #reportedDeviceStates = '';
  #samplingRetry = new Map<string, AbortController>();
  #deferredCommands: IncomingCommand[] = [];
  /** Desired patches received while the post-open reconcile runs; undefined when not held. */
  #heldPatches: JsonObject[] | undefined;
  #clockWork: Promise<void> = Promise.resolve();
  #stopped: Promise<void> | undefined;

  private constructor(o: GatewayRuntimeOptions, reconcile: ReconcileState<Settings>) {
    this.#o = o;
    this.#log = o.log.child({ component: 'gateway', gatewayId: o.gatewayId });
    this.#reconcile = reconcile;
    for (const s of o.sources) this.#activity.set(s.configId, { readings: 0, lastSeenMs: undefined, samplingErrors: 0 });
    this.#power = new PowerRunner({
      config: powerConfig(reconcile.effective, o),
      clockTrusted: o.clockTrust.trusted,
      clock: o.clock,
      log: this.#log,
      handlers: {
        openUplink: () => this.#openUplink(),
        closeUplink: () => this.#closeUplink(),
        drainOutbox: () => this.#startDrain(),
        reconcileTwin: () => void this.#reconcileTwin(),
        transitioned: (from, to) => this.#transitioned(from, to),
      },
    });
  }

  /**
   * Builds the runtime from the config in effect at the last shutdown (applied-config store) and
   * starts it: sources sampling, clock watched, first check-in scheduled.
   */
  static async start(o: GatewayRuntimeOptions): Promise<GatewayRuntime> {
    const reconcile = initialReconcileState(o.fileSettings, o.storedDesired, o.validate);
    const rt = new GatewayRuntime(o, reconcile);
    if (reconcile.problems.length > 0) rt.#log.warn({ problems: reconcile.problems }, 'stored desired properties no longer valid; using the config file settings');
    await rt.#start();
    return rt;
  }

  get settings(): Settings {
    return this.#reconcile.effective;
  }

  get powerState(): PowerState {
    return this.#power.state;
  }

  status(): GatewayStatus {
    const ack = configAck(this.#reconcile).config;
    return {
      phase: this.#power.state.phase,
      clockTrusted: this.#power.state.clockTrusted,
      outboxDepth: this.#lastStats?.depth,
      readingsSent: this.#readingsSent,
      messagesSent: this.#messagesSent,
      readingsCommitted: this.#readingsCommitted,
      lastCheckInMs: this.#lastCheckInMs,
      commandsCompleted: this.#commandsCompleted,
      commandsRejected: this.#commandsRejected,
      configVersion: ack.appliedVersion,
      configStatus: ack.status,
    };
  }

  /** A local wake request (button, CLI): check in now. */
  wakeNow(): boolean {
    return this.#power.dispatch({ type: 'localWakeRequest' });
  }

  /** Local pairing mode: online now and for `forS`, so pairings made on a phone apply at once. */
  pairingMode(forS: number): boolean {
    this.#log.info({ forS }, 'pairing mode: online for pairings');
    return this.#power.dispatch({ type: 'pairingMode', forS });
  }

  /** Fresh outbox figures (also refreshes what `status()` shows). */
  async outboxStats(): Promise<OutboxStats> {
    this.#lastStats = await this.#o.outbox.stats();
    return this.#lastStats;
  }

  async #start(): Promise<void> {
    const { uplink, clockTrust } = this.#o;
    this.#unsubscribe.push(
      uplink.onCommand((c) => void this.#onCommand(c)),
      uplink.onDesiredPatch((p) => this.#onDesiredPatch(p)),
      uplink.onDisconnect((e) => this.#onDisconnect(e)),
      clockTrust.onChange((trusted) => this.#onClockTrust(trusted)),
    );
    await clockTrust.start();
    await this.outboxStats().catch((err: unknown) => this.#log.warn({ err }, 'outbox stats unavailable'));
    for (const source of this.#o.sources) {
      this.#pumps.push(this.#pump(source));
      this.#applySampling(source, this.#reconcile.effective);
    }
    this.#power.start();
    void this.#resampleLoop();
    this.#log.info({ sources: this.#o.sources.map((s) => s.configId), clockTrusted: clockTrust.trusted, phase: this.#power.state.phase }, 'gateway started');
  }

  // ---- readings -------------------------------------------------------------------------

  async #pump(gs: GatewaySource): Promise<void> {
    const signal = this.#stop.signal;
    try {
      for await (const sample of gs.source.samples(signal)) this.#ingest(gs, sample);
    } catch (err) {
      if (!signal.aborted) this.#log.error({ err, source: gs.configId }, 'source stopped with an error');
    }
  }

  #ingest(gs: GatewaySource, sample: Sample): void {
    const settings = this.#reconcile.effective;
    const alarm = sample.flags.alarm === true || isAlarm(sample.kind, sample.value, settings.alarms);
    const sampling = settings.sampling[gs.family];
    if (!this.#thinner.keep(sample.source, this.#o.clock.monotonicMs(), sampling.reportIntervalS * 1000, sampling.sampleIntervalS * 1000, alarm)) {
      this.#readingsThinned++;
      return;
    }
    const stamped = this.#stamp(alarm ? { ...sample, flags: { ...sample.flags, alarm: true } } : sample);
    const append = this.#o.outbox.append([stamped]).then(
      () => {
        this.#readingsCommitted++;
        const a = this.#activity.get(gs.configId);
        if (a !== undefined) {
          a.readings++;
          a.lastSeenMs = this.#o.clock.now();
        }
        if (alarm) this.#wakeFor({ type: 'alarmReading', source: sample.source });
        this.#checkWatermark();
        this.#forwardSoon();
      },
      (err: unknown) => {
        if (!this.#stop.signal.aborted) this.#log.error({ err, source: sample.source }, 'reading not committed to the outbox');
      },
    );
    this.#appendsInFlight.add(append);
    void append.finally(() => this.#appendsInFlight.delete(append));
  }

  /** Untrusted wall clock: boot-relative time and the boot id (re-based when the clock syncs). */
  #stamp(sample: Sample): Sample {
    if (this.#o.clockTrust.trusted) return sample;
    const { bootClock } = this.#o;
    return { ...sample, ts: Math.round(bootClock.sinceBootMs()), bootId: bootClock.bootId, flags: { ...sample.flags, clockUnsynced: true } };
  }

  /**
   * Wake triggers from readings. While an outage is being retried on the backoff schedule, they
   * do not open again on every reading: the retry timer decides (no reconnect storm).
   */
  #wakeFor(event: PowerEvent): void {
    const s = this.#power.state;
    if (s.phase === 'standby' && s.failures > 0) return;
    if (s.phase === 'stopped') return;
    this.#power.dispatch(event);
  }

  #checkWatermark(): void {
    const now = this.#o.clock.monotonicMs();
    if (this.#watermarkCheck !== undefined || now - this.#lastWatermarkCheck < (this.#o.watermarkCheckMs ?? 1000)) return;
    this.#lastWatermarkCheck = now;
    this.#watermarkCheck = this.outboxStats()
      .then((stats) => {
        if (stats.bytes >= this.#reconcile.effective.outbox.highWatermarkBytes) this.#wakeFor({ type: 'outboxHighWatermark' });
      })
      .catch((err: unknown) => this.#log.warn({ err }, 'outbox stats failed'))
      .finally(() => (this.#watermarkCheck = undefined));
  }

  /** Online: forward what was just committed after a short batching delay. */
  #forwardSoon(): void {
    // #online exists only while online; its abort (leaving online) cancels the pending forward.
    const signal = this.#online?.signal;
    if (this.#forwardTimer !== undefined || signal === undefined || signal.aborted) return;
    this.#forwardTimer = this.#o.clock
      .sleep(this.#o.onlineForwardDelayMs ?? 5000, signal)
      .then(
        () => void this.#power.dispatch({ type: 'readingsQueued' }),
        () => undefined,
      )
      .finally(() => (this.#forwardTimer = undefined));
  }

  #applySampling(gs: GatewaySource, settings: Settings): void {
    this.#samplingRetry.get(gs.configId)?.abort();
    const ac = new AbortController();
    this.#samplingRetry.set(gs.configId, ac);
    const wanted = settings.sampling[gs.family];
    const attempt = async (): Promise<void> => {
      for (let tries = 0; !ac.signal.aborted && !this.#stop.signal.aborted; tries++) {
        try {
          await gs.applySampling(wanted);
          this.#log.info({ source: gs.configId, ...wanted }, 'sampling applied');
          return;
        } catch (err) {
          const a = this.#activity.get(gs.configId);
          if (a !== undefined) a.samplingErrors++;
          if (tries === 0) this.#log.warn({ err, source: gs.configId }, 'device did not take the sampling setting; retrying');
          // 1, 2, 4 … s up to samplingRetryMs: a port that opens a moment later gets it at once.
          const retryMs = Math.min(this.#o.samplingRetryMs ?? 10_000, 1000 * 2 ** tries);
          await this.#o.clock.sleep(retryMs, ac.signal).catch(() => undefined);
        }
      }
    };
    void attempt().finally(() => {
      if (this.#samplingRetry.get(gs.configId) === ac) this.#samplingRetry.delete(gs.configId);
    });
  }

  /** Re-sends sampling to devices that reconnected since (they start at their own default). */
  async #resampleLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.#o.clock.sleep(this.#o.samplingRetryMs ?? 10_000, signal);
      } catch {
        return;
      }
      for (const gs of this.#o.sources) {
        if (!this.#samplingRetry.has(gs.configId) && gs.samplingStale()) this.#applySampling(gs, this.#reconcile.effective);
      }
    }
  }

  // ---- clock ------------------------------------------------------------------------------

  #onClockTrust(trusted: boolean): void {
    // Serialised: a re-base must finish before the uplink may open (it rewrites timestamps of
    // readings not sent yet) and two flips must not interleave.
    this.#clockWork = this.#clockWork.then(async () => {
      if (this.#stop.signal.aborted) return;
      if (trusted) {
        const { bootClock, clock, outbox } = this.#o;
        const offsetMs = clock.now() - bootClock.sinceBootMs();
        try {
          const n = await outbox.rebaseUnsynced(bootClock.bootId, Math.round(offsetMs));
          this.#log.info({ rebased: n, bootId: bootClock.bootId }, 'wall clock trusted; boot-relative readings re-based');
        } catch (err) {
          this.#log.error({ err }, 're-basing boot-relative readings failed; they stay flagged clockUnsynced');
        }
      } else {
        this.#log.warn('wall clock not trusted: readings get boot-relative time; the uplink stays closed');
      }
      this.#power.dispatch({ type: trusted ? 'clockTrusted' : 'clockUntrusted' });
    });
  }

  // ---- power effects ---------------------------------------------------------------------

  #transitioned(from: PowerState, to: PowerState): void {
    if (to.phase === 'online' && from.phase !== 'online') {
      this.#lastCheckInMs = this.#o.clock.now();
      this.#online = new AbortController();
      void this.#reportLoop(this.#online.signal);
      const deferred = this.#deferredCommands;
      this.#deferredCommands = [];
      for (const c of deferred) void this.#onCommand(c);
    }
    if (from.phase === 'waking' && to.phase !== 'online' && this.#deferredCommands.length > 0) {
      // The open failed: the link is gone and the hub redelivers them at the next check-in.
      this.#deferredCommands = [];
    }
    if (from.phase === 'online' && to.phase !== 'online') {
      this.#online?.abort();
      this.#online = undefined;
      this.#drain?.abort();
      this.#drain = undefined;
    }
    // The uplink failed (table went straight to standby): make sure nothing half-open lingers.
    if ((from.phase === 'online' || from.phase === 'waking') && to.phase === 'standby') {
      void this.#o.uplink.close().catch(() => undefined);
    }
  }

  #openUplink(): void {
    // Until the whole twin is reconciled, hold pushed patches: the SDK pushes the whole desired
    // section as a "patch" on subscribe, and merged as a patch it would keep deleted keys.
    this.#heldPatches ??= [];
    const signal = this.#stop.signal;
    this.#o.uplink.open(signal).then(
      () => this.#power.dispatch({ type: 'uplinkOpened' }),
      (err: unknown) => {
        this.#heldPatches = undefined;
        if (signal.aborted) return;
        this.#noteUplinkError(err);
        if ((err as Partial<UplinkError>)?.kind === 'auth') {
          this.#log.error({ err }, 'IoT Hub refused the gateway credentials (device key, device id, or a wrong clock); retrying on the backoff schedule');
        } else {
          this.#log.warn({ err }, 'uplink open failed');
        }
        this.#power.dispatch({ type: 'uplinkFailed', reason: (err as Error)?.message ?? String(err) });
      },
    );
  }

  #closeUplink(): void {
    // Report what this check-in did before the link goes (bounded by the uplink's deadline).
    const report = this.#o.uplink.isOpen ? this.#report('standby').catch(() => undefined) : Promise.resolve();
    void report
      .then(() => this.#o.uplink.close())
      .then(
        () => this.#power.dispatch({ type: 'uplinkClosed' }),
        (err: unknown) => {
          this.#log.warn({ err }, 'uplink close failed');
          this.#power.dispatch({ type: 'uplinkFailed', reason: 'close failed' });
        },
      );
  }

  #startDrain(): void {
    this.#drain?.abort();
    const ac = new AbortController();
    this.#drain = ac;
    const s = this.#reconcile.effective;
    const forwarder = new Forwarder({
      outbox: this.#o.outbox,
      uplink: this.#o.uplink,
      clock: this.#o.clock,
      packer: { gatewayId: this.#o.gatewayId, encoding: s.packer.encoding, budgetUnits: s.packer.budgetUnits },
      log: this.#log,
      ...this.#o.forwarder,
      onProblem: (error) => this.#noteUplinkError(error),
    });
    forwarder.drain(ac.signal).then(
      (stats) => {
        this.#readingsSent += stats.readingsSent;
        this.#messagesSent += stats.messagesSent;
        if (stats.messagesSent > 0) this.#log.info({ messages: stats.messagesSent, readings: stats.readingsSent, completed: stats.completed }, 'outbox forwarded');
        void this.outboxStats().catch(() => undefined);
        if (stats.completed && this.#drain === ac) {
          this.#drain = undefined;
          this.#power.dispatch({ type: 'outboxDrained' });
        }
      },
      (err: unknown) => {
        // An outbox failure (disk, closed): nothing to forward now; stay online for C2D and the twin.
        if (!ac.signal.aborted) this.#log.error({ err }, 'drain failed');
      },
    );
  }

  #noteUplinkError(err: unknown): void {
    const e = err as Partial<UplinkError> | undefined;
    this.#lastUplinkError = { kind: typeof e?.kind === 'string' ? e.kind : 'other', message: e?.message ?? String(err), atMs: this.#o.clock.now() };
  }

  #onDisconnect(error: UplinkError): void {
    this.#noteUplinkError(error);
    const phase = this.#power.state.phase;
    if (phase === 'online' || phase === 'waking') {
      this.#log.warn({ err: error }, 'uplink lost');
      this.#power.dispatch({ type: 'uplinkFailed', reason: error.message });
    }
  }

  // ---- twin ------------------------------------------------------------------------------

  async #reconcileTwin(): Promise<void> {
    try {
      const twin = await this.#o.uplink.getTwin();
      const result = reconcileDesiredDocument(this.#reconcile, twin.desired, this.#o.validate);
      await this.#settle(result, 'twin');
    } catch (err) {
      this.#log.warn({ err }, 'twin reconcile failed; the next open retries');
    }
    // Held patches older than the document just applied are stale; newer ones apply now.
    const held = this.#heldPatches ?? [];
    this.#heldPatches = undefined;
    for (const p of held) this.#onDesiredPatch(p);
    await this.#report().catch((err: unknown) => this.#log.warn({ err }, 'reporting state failed'));
  }

  #onDesiredPatch(patch: JsonObject): void {
    if (this.#heldPatches !== undefined) {
      this.#heldPatches.push(patch);
      return;
    }
    const result = applyDesiredPatch(this.#reconcile, patch, this.#o.validate);
    void this.#settle(result, 'patch').then(
      () => {
        if (result.resync) return this.#reconcileTwin();
        if (result.outcome !== 'stale') return this.#report();
        return undefined;
      },
      (err: unknown) => this.#log.warn({ err }, 'desired patch not applied'),
    );
  }

  async #settle(result: ReconcileResult<Settings>, from: 'twin' | 'patch'): Promise<void> {
    const previous = this.#reconcile.effective;
    this.#reconcile = result.state;
    if (result.outcome === 'rejected') {
      this.#log.warn({ from, version: result.state.known.version, problems: result.state.problems }, 'desired properties rejected; previous config kept');
      return;
    }
    if (result.outcome !== 'applied') return;
    await this.#o.appliedConfig.save(result.state.applied);
    this.#log.info({ from, version: result.state.applied.version, changed: result.changed }, 'desired properties applied');
    if (result.changed) this.#applySettings(previous, result.state.effective);
  }

  #applySettings(previous: Settings, next: Settings): void {
    const before = powerConfig(previous, this.#o);
    const after = powerConfig(next, this.#o);
    if (!samePowerConfig(before, after)) this.#power.dispatch({ type: 'configChanged', config: after });
    for (const gs of this.#o.sources) {
      const a = previous.sampling[gs.family];
      const b = next.sampling[gs.family];
      if (a.sampleIntervalS !== b.sampleIntervalS) this.#applySampling(gs, next);
    }
    if (JSON.stringify(previous.outbox) !== JSON.stringify(next.outbox)) {
      void this.#o.outbox
        .setLimits(outboxLimits(next))
        .then(() => this.#log.info({ outbox: next.outbox }, 'outbox limits applied'))
        .catch((err: unknown) => this.#log.error({ err }, 'outbox limits not applied'));
    }
    if (JSON.stringify(previous.pairings) !== JSON.stringify(next.pairings)) {
      for (const gs of this.#o.sources) gs.applyPairings?.(next.pairings);
      this.#log.info({ pairings: Object.keys(next.pairings) }, 'pairings applied');
    }
    // Packer settings are read by the next drain; alarms and report intervals per reading.
  }

  /** `phase` overrides the current one: the report sent while closing says where it is going. */
  async #report(phase?: PowerState['phase']): Promise<void> {
    if (!this.#o.uplink.isOpen) return;
    const stats = await this.outboxStats().catch(() => this.#lastStats);
    const sources = new Map<string, SourceActivity>();
    for (const gs of this.#o.sources) {
      const a = this.#activity.get(gs.configId) ?? { readings: 0, lastSeenMs: undefined, samplingErrors: 0 };
      sources.set(gs.configId, { health: gs.health(), ...a, ...(gs.devices === undefined ? {} : { devices: gs.devices() }) });
    }
    const s = this.#power.state;
    const deviceStates = deviceStateKey([...sources].map(([id, a]) => [id, a.devices]));
    await this.#o.uplink.reportProperties(
      reportedState({
        firmwareVersion: this.#o.firmwareVersion,
        phase: phase ?? s.phase,
        lastCheckInMs: this.#lastCheckInMs,
        lastWakeReason: s.wakeReason,
        uplinkFailures: s.failures,
        checkInIntervalS: this.#reconcile.effective.checkInIntervalS,
        onlineWindowS: this.#reconcile.effective.onlineWindowS,
        outbox: stats,
        sources,
        clockTrusted: s.clockTrusted,
        bootId: this.#o.bootClock.bootId,
        lastUplinkError: this.#lastUplinkError,
        readingsThinned: this.#readingsThinned,
        config: configAck(this.#reconcile),
      }),
    );
    this.#reportedDeviceStates = deviceStates;
  }

  /** The periodic refresh, plus an early one whenever a paired device changed state. */
  async #reportLoop(signal: AbortSignal): Promise<void> {
    const every = this.#o.reportEveryMs ?? 60_000;
    const tick = Math.min(every, this.#o.deviceStateReportMs ?? 1000);
    let sinceReportMs = 0;
    while (!signal.aborted) {
      try {
        await this.#o.clock.sleep(tick, signal);
      } catch {
        return;
      }
      sinceReportMs += tick;
      // Cheap enough to poll: a few paired devices, only while online (awake anyway).
      if (sinceReportMs < every && deviceStateKey(this.#o.sources.map((gs) => [gs.configId, gs.devices?.()])) === this.#reportedDeviceStates) continue;
      sinceReportMs = 0;
      await this.#report().catch((err: unknown) => this.#log.warn({ err }, 'reporting state failed'));
    }
  }

  // ---- commands --------------------------------------------------------------------------

  async #onCommand(c: IncomingCommand): Promise<void> {
    // Delivered while the open is finishing: handle it once online, where wake can hold.
    if (this.#power.state.phase === 'waking') {
      this.#deferredCommands.push(c);
      return;
    }
    const parsed = parseCommandBody(c.body);
    if (!parsed.ok) {
      this.#commandsRejected++;
      this.#log.warn({ messageId: c.messageId, reason: parsed.reason, detail: parsed.message }, 'C2D command rejected');
      await c.reject().catch((err: unknown) => this.#log.warn({ err }, 'C2D reject failed'));
      return;
    }
    const problem = this.#commandProblem(parsed.command);
    if (problem !== undefined) {
      this.#commandsRejected++;
      this.#log.warn({ messageId: c.messageId, type: parsed.command.type, detail: problem }, 'C2D command rejected');
      await c.reject().catch((err: unknown) => this.#log.warn({ err }, 'C2D reject failed'));
      return;
    }
    const accepted = this.#perform(parsed.command);
    if (!accepted) {
      // Arrived while the link was going down: hand it back so the next check-in gets it.
      await c.abandon().catch((err: unknown) => this.#log.warn({ err }, 'C2D abandon failed'));
      return;
    }
    this.#commandsCompleted++;
    this.#log.info({ messageId: c.messageId, command: parsed.command }, 'C2D command done');
    await c.complete().catch((err: unknown) => this.#log.warn({ err }, 'C2D complete failed'));
  }

  #matchingSources(names: readonly string[] | undefined): GatewaySource[] {
    if (names === undefined) return [...this.#o.sources];
    return this.#o.sources.filter((gs) => names.some((n) => n === gs.configId || n === gs.source.id || gs.source.id.startsWith(n)));
  }

  /** Why a valid command cannot be done here (unknown source names), or undefined. */
  #commandProblem(command: Command): string | undefined {
    if (command.type !== 'measure' || command.sources === undefined) return undefined;
    const unknown = command.sources.filter((n) => this.#matchingSources([n]).length === 0);
    return unknown.length > 0 ? `no such source: ${unknown.join(', ')}` : undefined;
  }

  #perform(command: Command): boolean {
    switch (command.type) {
      case 'wake':
        return this.#power.dispatch({ type: 'c2dWake', forS: command.forS });
      case 'sleep':
        return this.#power.dispatch({ type: 'c2dSleep' });
      case 'measure':
        for (const gs of this.#matchingSources(command.sources)) {
          gs.source.measureNow().catch((err: unknown) => this.#log.warn({ err, source: gs.configId }, 'measure now failed'));
        }
        return true;
    }
  }

  // ---- shutdown --------------------------------------------------------------------------

  /**
   * Graceful stop (SIGTERM): sources stop, readings handed to the outbox are committed, the
   * uplink is closed, the outbox released. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#shutdown();
    return this.#stopped;
  }

  async #shutdown(): Promise<void> {
    this.#log.info('gateway stopping');
    this.#stop.abort();
    for (const ac of this.#samplingRetry.values()) ac.abort();
    this.#drain?.abort();
    this.#online?.abort();
    this.#power.dispatch({ type: 'shutdown' });
    this.#power.cancelTimers();
    // Bounded: a driver stuck in a kernel call must not keep the gateway from committing.
    const pumpsDone = await Promise.race([
      Promise.allSettled(this.#pumps).then(() => true),
      this.#o.clock.sleep(5000).then(() => false),
    ]);
    if (!pumpsDone) this.#log.error('sources did not stop within 5 s; committing what was received');
    await Promise.allSettled([...this.#appendsInFlight]);
    for (const u of this.#unsubscribe) u();
    await this.#o.outbox.flush().catch((err: unknown) => this.#log.error({ err }, 'final outbox commit failed'));
    await this.#o.uplink.close().catch(() => undefined);
    await this.#clockWork.catch(() => undefined);
    await this.#o.clockTrust.close().catch(() => undefined);
    await this.#o.outbox.close();
    this.#log.info({ committed: this.#readingsCommitted, sent: this.#readingsSent }, 'gateway stopped');
  }
}

/** Outbox limits from settings, in the units the outbox takes. */
export function outboxLimits(s: Settings): { maxBytes: number; minFreeBytes: number; ttlMs: number; commitIntervalMs: number } {
  return { maxBytes: s.outbox.maxBytes, minFreeBytes: s.outbox.minFreeBytes, ttlMs: s.outbox.ttlS * 1000, commitIntervalMs: s.outbox.commitIntervalMs };
}
