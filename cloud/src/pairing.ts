/**
 * Phone pairing sessions (issue 8): someone on site types the gateway's pairing code from its
 * label, gets a session for that gateway, and adds or removes Bluetooth devices through it. Each
 * change is a merge patch on the gateway's desired `pairings` plus a coalesced wake, so a
 * sleeping gateway takes it at its next check-in and an online one stays online for it. The
 * session view reads the gateway twin fresh and says, per device, where it is: waiting for the
 * gateway, connecting, receiving, or in error.
 *
 * The code itself is never stored, logged or audited; failed lookups are counted per token and
 * refused over a limit (a 10-symbol code is not guessable at 10 tries per 10 minutes).
 */
import { randomUUID } from 'node:crypto';
import { FieldlinkError } from '../../common/errors.js';
import type { Principal } from './auth.js';
import type { HubTwin, JsonObject } from './fleet-hub.js';
import { checkInIntervalS, configView, summarize, type ConfigView } from './gateway-view.js';
import { gatewayForPairingCode } from './pairing-lookup.js';
import type { CompanionServices } from './services.js';
import type { PairingDeviceRecord, PairingSessionRecord } from './store.js';

const PAIRING_SESSION_TTL_MS = 30 * 60_000;
/** Failed code lookups allowed per token within the window; the next is refused until one ages out. */
const PAIRING_MAX_FAILURES = 10;
const PAIRING_FAILURE_WINDOW_MS = 10 * 60_000;
/** How long a gateway woken for a pairing change stays online (s): enough to connect and report. */
const PAIRING_WAKE_S = 120;

export const PAIRING_DEVICE_STATES = ['waiting-for-gateway', 'connecting', 'receiving', 'error'] as const;
export type PairingDeviceState = (typeof PAIRING_DEVICE_STATES)[number];

export interface PairingDeviceView {
  address: string;
  profile: string;
  name: string | null;
  state: PairingDeviceState;
  lastSeen?: string;
  lastValue?: number;
  /** Reading kind and unit of lastValue, e.g. heart_rate / bpm. */
  lastKind?: string;
  lastUnit?: string;
  battery?: number;
  rssi?: number;
  error?: string;
}

export interface PairingSessionView {
  session: { id: string; gateway: string; created: string; expiresAt: string; devices: PairingDeviceView[] };
  gatewayOnline: boolean;
  nextCheckIn: string | null;
}

function obj(value: unknown): JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : {};
}

/** What the gateway reports for the device (`sources.<id>.devices.<address>`, ble-wearables-source.ts), from any source. */
function reportedDevice(twin: HubTwin, address: string): JsonObject | undefined {
  for (const source of Object.values(obj(twin.reported.sources))) {
    const d = obj(source).devices;
    const device = obj(d)[address];
    if (device !== undefined) return obj(device);
  }
  return undefined;
}

function deviceView(twin: HubTwin, config: ConfigView, d: PairingDeviceRecord): PairingDeviceView {
  const base = { address: d.address, profile: d.profile, name: d.name };
  if (config.status === 'pending') return { ...base, state: 'waiting-for-gateway' };
  if (config.status === 'rejected') {
    return { ...base, state: 'error', error: `the gateway rejected its desired config: ${JSON.stringify(config.errors).slice(0, 200)}` };
  }
  const r = reportedDevice(twin, d.address);
  if (r === undefined) return { ...base, state: 'connecting' };
  const reported = r.state ?? r.pairing;
  const state: PairingDeviceState = reported === 'receiving' ? 'receiving' : reported === 'error' ? 'error' : 'connecting';
  const view: PairingDeviceView = { ...base, state };
  if (typeof r.lastSeen === 'string') view.lastSeen = r.lastSeen;
  if (typeof r.lastValue === 'number') view.lastValue = r.lastValue;
  if (typeof r.lastKind === 'string') view.lastKind = r.lastKind;
  if (typeof r.lastUnit === 'string') view.lastUnit = r.lastUnit;
  if (typeof r.battery === 'number') view.battery = r.battery;
  if (typeof r.rssi === 'number') view.rssi = r.rssi;
  if (state === 'error') view.error = typeof r.reason === 'string' ? r.reason : 'the gateway reports an error for this device';
  return view;
}

function desiredPairings(twin: HubTwin): JsonObject {
  return obj(twin.desired.pairings);
}

/** The site a gateway belongs to (tags.fieldlink.site, set by provisioning), or null. */
function gatewaySite(twin: HubTwin): string | null {
  const site = obj(twin.tags.fieldlink).site;
  return typeof site === 'string' ? site : null;
}

/** The gateways a principal may pair with: a site-scoped pairing token sees its site's only. */
function pairable(principal: Principal, twins: readonly HubTwin[]): readonly HubTwin[] {
  return principal.site === null ? twins : twins.filter((t) => gatewaySite(t) === principal.site);
}

export class PairingService {
  /** Monotonic ms of each failed lookup, per token id, within the window. */
  private readonly failures = new Map<number, number[]>();

  constructor(private readonly s: CompanionServices) {}

  /** Throws RATE_LIMITED (with retryAfterS) while the token is over its failed-lookup allowance. */
  private checkGuessing(principal: Principal): void {
    const now = this.s.clock.monotonicMs();
    const recent = (this.failures.get(principal.tokenId) ?? []).filter((t) => now - t < PAIRING_FAILURE_WINDOW_MS);
    if (recent.length === 0) this.failures.delete(principal.tokenId);
    else this.failures.set(principal.tokenId, recent);
    if (recent.length < PAIRING_MAX_FAILURES) return;
    const oldest = recent[recent.length - PAIRING_MAX_FAILURES] ?? now;
    const retryAfterS = Math.max(1, Math.ceil((oldest + PAIRING_FAILURE_WINDOW_MS - now) / 1000));
    throw new FieldlinkError('RATE_LIMITED', {
      message: `too many unknown pairing codes from token "${principal.name}" (more than ${PAIRING_MAX_FAILURES} in ${PAIRING_FAILURE_WINDOW_MS / 60_000} min); retry after ${retryAfterS} s`,
      details: { retryAfterS },
    });
  }

  private recordFailure(principal: Principal): void {
    const list = this.failures.get(principal.tokenId) ?? [];
    list.push(this.s.clock.monotonicMs());
    this.failures.set(principal.tokenId, list);
  }

  /** Finds the gateway with this code and opens a session for it. */
  async start(principal: Principal, code: string): Promise<PairingSessionView> {
    this.checkGuessing(principal);
    await this.s.cache.ready();
    // A site-scoped token's code is checked against its site's gateways only: a label from
    // another site is as unknown to it as a mistyped one.
    const gateway = gatewayForPairingCode(pairable(principal, this.s.cache.list()), code);
    if (gateway === undefined) {
      this.recordFailure(principal);
      this.s.log.info({ tokenName: principal.name }, 'pairing code lookup failed');
      throw new FieldlinkError('PAIRING_CODE_UNKNOWN', { message: 'no gateway has this pairing code; check the label' });
    }
    // Fresh, not from the cache (up to a refresh old): the phone is told whether the gateway is online now.
    const twin = await this.s.cache.read(gateway);
    const now = this.s.clock.now();
    const session = this.s.store.insertPairingSession({ id: randomUUID(), gateway, tokenName: principal.name, created: now, expiresAt: now + PAIRING_SESSION_TTL_MS });
    this.s.log.info({ tokenName: principal.name, gateway, session: session.id }, 'pairing session started');
    return this.view(session, twin);
  }

  /** The session if it exists and the caller may use it (its own, or any for an operator); 410 past expiry when `live`. */
  session(principal: Principal, id: string, live: boolean): PairingSessionRecord {
    const session = this.s.store.findPairingSession(id);
    if (!session) throw new FieldlinkError('PAIRING_SESSION_NOT_FOUND', { message: `no pairing session with id "${id}"`, details: { id } });
    if (principal.role !== 'operator' && session.tokenName !== principal.name) {
      throw new FieldlinkError('AUTH_FORBIDDEN', { message: 'this pairing session was started with another token', details: { role: principal.role } });
    }
    if (live && this.s.clock.now() >= session.expiresAt) {
      throw new FieldlinkError('PAIRING_SESSION_EXPIRED', {
        message: `pairing session "${id}" expired at ${new Date(session.expiresAt).toISOString()}; start a new one with the pairing code`,
        details: { id, expiresAt: new Date(session.expiresAt).toISOString() },
      });
    }
    return session;
  }

  /** Adds (or re-profiles) a device: desired pairings, a coalesced wake, the session record. */
  async addDevice(principal: Principal, session: PairingSessionRecord, address: string, profile: string, name: string | undefined): Promise<PairingSessionView> {
    await this.s.cache.ready();
    const elsewhere = this.s.cache.list().find((t) => t.deviceId !== session.gateway && desiredPairings(t)[address] !== undefined);
    if (elsewhere) {
      // Another site's gateway is not named to a token scoped to this one.
      const visible = principal.site === null || gatewaySite(elsewhere) === principal.site;
      throw new FieldlinkError('DEVICE_PAIRED_ELSEWHERE', {
        message: visible
          ? `device ${address} is already paired with gateway "${elsewhere.deviceId}"; unpair it there first`
          : `device ${address} is already paired with a gateway at another site; ask an operator to unpair it there`,
        details: { address, ...(visible ? { gateway: elsewhere.deviceId } : {}) },
      });
    }
    const twin = await this.patch(session.gateway, { [address]: { profile, ...(name === undefined ? {} : { name }) } });
    await this.s.commands.issue(session.gateway, { type: 'wake', forS: PAIRING_WAKE_S }, principal.name, undefined, checkInIntervalS(twin));
    this.s.store.putPairingDevice({ sessionId: session.id, address, profile, name: name ?? null, added: this.s.clock.now() });
    return this.view(session, twin);
  }

  async removeDevice(session: PairingSessionRecord, address: string): Promise<void> {
    if (!this.s.store.listPairingDevices(session.id).some((d) => d.address === address)) {
      throw new FieldlinkError('PAIRING_DEVICE_NOT_FOUND', { message: `device ${address} was not added in this pairing session`, details: { address } });
    }
    await this.patch(session.gateway, { [address]: null });
    this.s.store.deletePairingDevice(session.id, address);
  }

  /** The session with every device's state read fresh from the gateway twin. */
  async fresh(session: PairingSessionRecord): Promise<PairingSessionView> {
    return this.view(session, await this.s.cache.read(session.gateway));
  }

  private async patch(gateway: string, pairings: JsonObject): Promise<HubTwin> {
    const twin = await this.s.cache.about(gateway, this.s.hub.patchDesired(gateway, { pairings }, '*'));
    this.s.cache.put(twin);
    return twin;
  }

  view(session: PairingSessionRecord, twin: HubTwin): PairingSessionView {
    const summary = summarize(twin, this.s.clock.now());
    const config = configView(twin);
    return {
      session: {
        id: session.id,
        gateway: session.gateway,
        created: new Date(session.created).toISOString(),
        expiresAt: new Date(session.expiresAt).toISOString(),
        devices: this.s.store.listPairingDevices(session.id).map((d) => deviceView(twin, config, d)),
      },
      gatewayOnline: summary.connected,
      nextCheckIn: summary.power.nextCheckIn,
    };
  }
}
