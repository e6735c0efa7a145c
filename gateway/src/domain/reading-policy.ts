/**
 * What the gateway does with a sample before it reaches the outbox (design §4): is it an alarm
 * (thresholds from the twin, by reading kind), and is it due for reporting (the report interval
 * thins a source that samples faster than the cloud needs; alarms always pass).
 */
/** Same shape as the config contract's AlarmThreshold (the domain imports no contract). */
export interface AlarmThreshold {
  readonly min?: number;
  readonly max?: number;
}

/** True when `value` is outside the threshold for `kind` (bounds themselves are normal). */
export function isAlarm(kind: string, value: number, alarms: Readonly<Record<string, AlarmThreshold>>): boolean {
  const t = alarms[kind];
  if (t === undefined) return false;
  return (t.min !== undefined && value < t.min) || (t.max !== undefined && value > t.max);
}

/**
 * Keeps one reading per channel (source id) every `intervalMs` on a monotonic clock, plus every
 * alarm. The first reading of a channel always passes, so a restart never hides a value.
 */
export class ReportThinner {
  readonly #lastKept = new Map<string, number>();

  /**
   * Decides and records: call once per sample. `sampleMs` is the device's own interval: a
   * reading counts as due half a sample early, so a device sampling every 30 s reported every
   * 60 s is not thinned to every 90 s because one line arrived a few ms early; and when the
   * report interval is not longer than the sample interval nothing is thinned.
   */
  keep(channel: string, monoMs: number, intervalMs: number, sampleMs: number, alarm: boolean): boolean {
    if (intervalMs <= sampleMs) return true;
    const last = this.#lastKept.get(channel);
    const due = last === undefined || monoMs - last >= intervalMs - sampleMs / 2;
    if (!due && !alarm) return false;
    if (due) this.#lastKept.set(channel, monoMs);
    return true;
  }
}
