import type { Clock } from '../../common/clock.js';
import { isFieldlinkError, type FieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { translateHubError } from './azure-fleet-hub.js';
import type { FleetHub, HubTwin } from './fleet-hub.js';

export const DEFAULT_FLEET_REFRESH_MS = 30_000;

/**
 * The fleet's twins, held in memory. IoT Hub throttles device queries, so the fleet view is
 * served from here: refreshed on a schedule, and updated in place from every twin the companion
 * itself reads or writes. A failed refresh keeps the previous view and says how old it is.
 */
export class FleetCache {
  private twins = new Map<string, HubTwin>();
  private refreshedAt: number | undefined;
  private lastError: FieldlinkError | undefined;
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private changes = 0;
  /** Twins put (or removed: undefined) while a query runs: newer than what the query returns. */
  private touchedDuringRefresh: Map<string, HubTwin | undefined> | undefined;

  constructor(
    private readonly hub: FleetHub,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly refreshMs = DEFAULT_FLEET_REFRESH_MS,
  ) {}

  /** First refresh now (failure logged, not thrown: the companion starts while the hub is down), then on the schedule. */
  start(): void {
    if (this.timer) return;
    void this.refresh().catch(() => undefined);
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One query of the whole fleet; concurrent callers share it. Rejects with the hub error. */
  refresh(): Promise<void> {
    this.inFlight ??= (async () => {
      this.touchedDuringRefresh = new Map();
      try {
        const twins = await this.hub.listTwins();
        const next = new Map(twins.map((t) => [t.deviceId, t]));
        for (const [id, twin] of this.touchedDuringRefresh) {
          if (twin === undefined) next.delete(id);
          else next.set(id, twin);
        }
        this.twins = next;
        this.changes++;
        this.refreshedAt = this.clock.now();
        this.lastError = undefined;
      } catch (err) {
        this.lastError = translateHubError(err, 'refresh the fleet view');
        this.log.warn({ code: this.lastError.code, reason: this.lastError.message }, 'fleet refresh failed; serving the previous view');
        throw this.lastError;
      }
    })().finally(() => {
      this.inFlight = undefined;
      this.touchedDuringRefresh = undefined;
    });
    return this.inFlight;
  }

  /** Waits for a first successful refresh if there has been none (the first request after start). */
  async ready(): Promise<void> {
    if (this.refreshedAt === undefined) await this.refresh();
  }

  get asOf(): number | undefined {
    return this.refreshedAt;
  }

  get error(): FieldlinkError | undefined {
    return this.lastError;
  }

  /** Grows with every change to the cached twins, so views derived from them can be memoised. */
  get version(): number {
    return this.changes;
  }

  get size(): number {
    return this.twins.size;
  }

  /** Sorted by id, so paging with an `after` cursor is stable. */
  list(): HubTwin[] {
    return [...this.twins.values()].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
  }

  get(id: string): HubTwin | undefined {
    return this.twins.get(id);
  }

  /**
   * Awaits a hub call about gateway `id`. DEVICE_NOT_FOUND means the gateway was deleted behind
   * the companion's back since the last refresh: it is forgotten now, not listed until the next.
   */
  async about<T>(id: string, call: Promise<T>): Promise<T> {
    try {
      return await call;
    } catch (err) {
      if (isFieldlinkError(err, 'DEVICE_NOT_FOUND')) this.remove(id);
      throw err;
    }
  }

  /** The gateway's twin read fresh from the hub, and put here. */
  async read(id: string): Promise<HubTwin> {
    const twin = await this.about(id, this.hub.getTwin(id));
    this.put(twin);
    return twin;
  }

  put(twin: HubTwin): void {
    this.twins.set(twin.deviceId, twin);
    this.touchedDuringRefresh?.set(twin.deviceId, twin);
    this.changes++;
  }

  remove(id: string): void {
    this.touchedDuringRefresh?.set(id, undefined);
    if (this.twins.delete(id)) this.changes++;
  }
}
