import { HubError } from './hub-errors.js';

/**
 * A token bucket: `ratePerSecond` sends a second, bursts up to one second's worth. IoT Hub
 * meters its per-second limits over short windows and lets brief bursts through; a bucket
 * refilled continuously is the closest simple model.
 */
class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly ratePerSecond: number,
    now: number,
  ) {
    this.tokens = ratePerSecond;
    this.updatedAt = now;
  }

  take(now: number): boolean {
    const elapsed = Math.max(0, now - this.updatedAt);
    this.tokens = Math.min(this.ratePerSecond, this.tokens + (elapsed * this.ratePerSecond) / 1000);
    this.updatedAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Puts back a token taken for a message that was refused for another reason. */
  giveBack(): void {
    this.tokens = Math.min(this.ratePerSecond, this.tokens + 1);
  }

  /** Milliseconds until one whole token is available. */
  waitMs(): number {
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSecond);
  }
}

export interface D2cRateLimits {
  /** Device-to-cloud sends a second across the hub (IoT Hub S1: about 100 per unit). */
  perHubPerSecond?: number | undefined;
  /** Device-to-cloud sends a second for any one device. */
  perDevicePerSecond?: number | undefined;
}

/** Refuses sends over the hub-wide or per-device rate with IoT Hub's throttling error. */
export class D2cRateLimiter {
  private hub: TokenBucket | undefined;
  private readonly devices = new Map<string, TokenBucket>();

  constructor(
    private readonly limits: D2cRateLimits,
    private readonly now: () => number,
  ) {}

  get enabled(): boolean {
    return this.limits.perHubPerSecond !== undefined || this.limits.perDevicePerSecond !== undefined;
  }

  /** Takes one send from the buckets, or throws ThrottlingException naming which limit and when to retry. */
  admit(deviceId: string): void {
    const now = this.now();
    const { perHubPerSecond, perDevicePerSecond } = this.limits;
    let device: TokenBucket | undefined;
    if (perDevicePerSecond !== undefined) {
      device = this.devices.get(deviceId);
      if (!device) {
        device = new TokenBucket(perDevicePerSecond, now);
        this.devices.set(deviceId, device);
      }
      if (!device.take(now)) {
        throw new HubError('ThrottlingException', `device ${deviceId} is over ${perDevicePerSecond} device-to-cloud sends a second; retry in ${device.waitMs()} ms`);
      }
    }
    if (perHubPerSecond !== undefined) {
      this.hub ??= new TokenBucket(perHubPerSecond, now);
      if (!this.hub.take(now)) {
        device?.giveBack();
        throw new HubError('ThrottlingException', `the hub is over ${perHubPerSecond} device-to-cloud sends a second; retry in ${this.hub.waitMs()} ms`);
      }
    }
  }
}

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function nextUtcMidnight(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
}

/**
 * IoT Hub's daily message quota in billed 4 KB units, reset at 00:00 UTC on the hub's clock.
 * Units are reserved when a message is admitted (so a batch awaiting its commit cannot
 * overshoot) and released if the commit fails.
 */
export class DailyQuota {
  private day: string;
  private used: number;

  constructor(
    readonly limitUnits: number | undefined,
    private readonly now: () => number,
    /** Units already used on `day` (persisted by the meter across restarts). */
    usedOn: (day: string) => number,
  ) {
    this.day = utcDay(now());
    this.used = usedOn(this.day);
  }

  /** The UTC day the units are counted against, after rolling over at midnight. */
  currentDay(): string {
    const today = utcDay(this.now());
    if (today !== this.day) {
      this.day = today;
      this.used = 0;
    }
    return this.day;
  }

  reserve(units: number): string {
    const day = this.currentDay();
    if (this.limitUnits !== undefined && this.used + units > this.limitUnits) {
      const resetsAt = new Date(nextUtcMidnight(this.now())).toISOString();
      throw new HubError('IotHubQuotaExceeded', `daily quota of ${this.limitUnits} units used (${this.used} so far today); it resets at ${resetsAt}`);
    }
    this.used += units;
    return day;
  }

  release(day: string, units: number): void {
    if (day === this.day) this.used = Math.max(0, this.used - units);
  }

  status(): { limitUnits: number | null; usedUnits: number; day: string; resetsAt: string } {
    const day = this.currentDay();
    return { limitUnits: this.limitUnits ?? null, usedUnits: this.used, day, resetsAt: new Date(nextUtcMidnight(this.now())).toISOString() };
  }
}
