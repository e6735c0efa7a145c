/**
 * How an operator sees one gateway: read from its twin (reported state, desired config, the
 * hub's connection state), with health judged from its check-in schedule. A gateway in standby
 * is disconnected by design; it is healthy as long as it checks in when it should.
 */
import type { HubTwin, JsonObject } from './fleet-hub.js';

export const HEALTH_STATES = ['ok', 'degraded', 'late', 'silent', 'unknown'] as const;
export type Health = (typeof HEALTH_STATES)[number];

export const CONFIG_STATES = ['applied', 'pending', 'rejected', 'none'] as const;
export type ConfigState = (typeof CONFIG_STATES)[number];

/** The gateway's defaults (gateway-config.ts) when neither reported nor desired say. */
const DEFAULT_CHECK_IN_S = 3_600;
const DEFAULT_ONLINE_WINDOW_S = 120;
/** A check-in counts as late after its window plus this share of the interval (at least a minute). */
const LATE_GRACE_SHARE = 0.1;
const LATE_GRACE_MIN_MS = 60_000;
/** Missed this many check-ins in a row: silent, not merely late. */
const SILENT_AFTER_MISSED = 3;

export interface GatewaySummary {
  id: string;
  health: Health;
  healthReasons: string[];
  connected: boolean;
  power: {
    state: string | null;
    lastCheckIn: string | null;
    lastWakeReason: string | null;
    checkInIntervalS: number;
    nextCheckIn: string | null;
  };
  outbox: { depth: number; oldestAgeS: number | null } | null;
  sourcesWithErrors: string[];
  config: { status: ConfigState };
  firmware: string | null;
}

export interface ConfigView {
  etag: string;
  desired: JsonObject;
  desiredVersion: number;
  /** What the gateway last acknowledged (reported `config`), or null if it never has. */
  reported: { appliedVersion: number; desiredVersion: number; status: string; errors: unknown[] } | null;
  status: ConfigState;
  errors: unknown[];
}

function obj(value: unknown): JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : {};
}
function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
function timeMs(value: unknown): number | undefined {
  const s = str(value);
  if (s === undefined) return undefined;
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? undefined : ms;
}

/** The desired properties an operator set, without the hub's `$version` / `$metadata`. */
export function desiredSettings(twin: HubTwin): JsonObject {
  return Object.fromEntries(Object.entries(twin.desired).filter(([k]) => !k.startsWith('$')));
}

export function configView(twin: HubTwin): ConfigView {
  const desiredVersion = num(twin.desired.$version) ?? 0;
  const ack = obj(twin.reported.config);
  const hasAck = num(ack.desiredVersion) !== undefined;
  const reported = hasAck
    ? {
        appliedVersion: num(ack.appliedVersion) ?? 0,
        desiredVersion: num(ack.desiredVersion) ?? 0,
        status: str(ack.status) ?? 'unknown',
        errors: Array.isArray(ack.errors) ? ack.errors : [],
      }
    : null;
  let status: ConfigState;
  const desired = desiredSettings(twin);
  const nothingAsked = Object.keys(desired).length === 0;
  // Emptying desired is a change too: only "none" once the gateway has caught up with it.
  if (desiredVersion === 0 || (nothingAsked && (!reported || reported.desiredVersion >= desiredVersion))) status = reported ? 'applied' : 'none';
  else if (!reported || reported.desiredVersion < desiredVersion) status = 'pending';
  else if (reported.status === 'rejected' && reported.appliedVersion < desiredVersion) status = 'rejected';
  else status = 'applied';
  return { etag: twin.etag, desired, desiredVersion, reported, status, errors: status === 'rejected' ? (reported?.errors ?? []) : [] };
}

/** The schedule the gateway says it runs (reported), else what was asked of it (desired), else its defaults. */
function schedule(twin: HubTwin): { intervalS: number; windowS: number } {
  const power = obj(twin.reported.power);
  return {
    intervalS: num(power.checkInIntervalS) ?? num(twin.desired.checkInIntervalS) ?? DEFAULT_CHECK_IN_S,
    windowS: num(power.onlineWindowS) ?? num(twin.desired.onlineWindowS) ?? DEFAULT_ONLINE_WINDOW_S,
  };
}

export function checkInIntervalS(twin: HubTwin): number {
  return schedule(twin).intervalS;
}

export function summarize(twin: HubTwin, nowMs: number): GatewaySummary {
  const reported = twin.reported;
  const power = obj(reported.power);
  const { intervalS, windowS } = schedule(twin);
  const connected = twin.connectionState === 'Connected';
  const lastCheckInMs = timeMs(power.lastCheckIn);
  // The hub's last-activity time also counts: a gateway whose reported write failed still talked.
  const lastSeenMs = Math.max(lastCheckInMs ?? -Infinity, timeMs(twin.lastActivityTime) ?? -Infinity);

  const sourcesWithErrors: string[] = [];
  for (const [id, raw] of Object.entries(obj(reported.sources))) {
    const s = obj(raw);
    if (s.connected === false || (num(s.errors) ?? 0) > 0 || (num(s.samplingErrors) ?? 0) > 0) sourcesWithErrors.push(id);
  }
  const outboxRaw = reported.outbox === null || reported.outbox === undefined ? undefined : obj(reported.outbox);
  const outbox = outboxRaw ? { depth: num(outboxRaw.depth) ?? 0, oldestAgeS: num(outboxRaw.oldestAgeS) ?? null } : null;
  const config = configView(twin).status;

  const reasons: string[] = [];
  let health: Health;
  const intervalMs = intervalS * 1000;
  const dueMs = intervalMs + windowS * 1000 + Math.max(LATE_GRACE_MIN_MS, intervalMs * LATE_GRACE_SHARE);
  if (!Number.isFinite(lastSeenMs)) {
    health = connected ? 'ok' : 'unknown';
    if (!connected) reasons.push('has never checked in');
  } else if (!connected && nowMs - lastSeenMs > dueMs + (SILENT_AFTER_MISSED - 1) * intervalMs) {
    health = 'silent';
    reasons.push(`missed ${SILENT_AFTER_MISSED}+ check-ins (every ${intervalS} s); last seen ${new Date(lastSeenMs).toISOString()}`);
  } else if (!connected && nowMs - lastSeenMs > dueMs) {
    health = 'late';
    reasons.push(`check-in due by ${new Date(lastSeenMs + dueMs).toISOString()} has not happened`);
  } else {
    health = 'ok';
  }
  if (health === 'ok') {
    const down = sourcesWithErrors.filter((id) => obj(obj(reported.sources)[id]).connected === false);
    if (down.length > 0) reasons.push(`sources not connected: ${down.join(', ')}`);
    if (config === 'rejected') reasons.push('rejected the desired config');
    if (obj(reported.clock).trusted === false) reasons.push('clock not trusted');
    if ((num(power.uplinkFailures) ?? 0) > 0) reasons.push(`${num(power.uplinkFailures)} uplink failures before its last check-in`);
    if (outbox?.oldestAgeS !== null && outbox !== null && outbox.oldestAgeS > 2 * intervalS + windowS) {
      reasons.push(`oldest unsent reading is ${outbox.oldestAgeS} s old (backlog not draining)`);
    }
    if (reasons.length > 0) health = 'degraded';
  }

  const nextCheckInMs = lastCheckInMs === undefined ? undefined : lastCheckInMs + intervalMs;
  return {
    id: twin.deviceId,
    health,
    healthReasons: reasons,
    connected,
    power: {
      state: str(power.state) ?? null,
      lastCheckIn: lastCheckInMs === undefined ? null : new Date(lastCheckInMs).toISOString(),
      lastWakeReason: str(power.lastWakeReason) ?? null,
      checkInIntervalS: intervalS,
      nextCheckIn: nextCheckInMs === undefined ? null : new Date(nextCheckInMs).toISOString(),
    },
    outbox,
    sourcesWithErrors,
    config: { status: config },
    firmware: str(obj(reported.firmware).version) ?? null,
  };
}
