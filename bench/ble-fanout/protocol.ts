/** IPC between run.ts (the gateway side) and child.ts (dbus-daemon + fake BlueZ). */

export type ParentMessage =
  | { readonly type: 'sample'; readonly id: number }
  /** Stop notifying (without disconnecting) and report the final emitted count. */
  | { readonly type: 'quiesce'; readonly id: number }
  | { readonly type: 'stop' };

export type ChildMessage =
  | { readonly type: 'ready'; readonly busAddress: string; readonly daemonPid: number | undefined }
  | { readonly type: 'failed'; readonly message: string }
  | {
      readonly type: 'sample';
      readonly id: number;
      /** Readings (values, two per heart-rate notification) emitted so far. */
      readonly emitted: number;
      readonly cpuMicros: number;
      readonly eluActiveMs: number;
      readonly eluIdleMs: number;
    }
  | { readonly type: 'quiesced'; readonly id: number; readonly emitted: number };

/** `F1:00:00:00:00:<i>`, upper case as pairings want it. */
export function wearableAddress(i: number): string {
  return `F1:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`.toUpperCase();
}
