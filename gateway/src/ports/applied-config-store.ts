import type { VersionedDesired } from '../domain/twin-reconcile.js';

/**
 * Where the gateway keeps the desired document it last applied, so a reboot in standby (no
 * uplink, no twin) uses it. `load` resolves undefined when nothing was saved or what was saved
 * is unusable (the implementation reports that); `save` replaces the stored document atomically
 * — after a crash, `load` returns the old document or the new one, never a mix. Failures reject
 * with APPLIED_CONFIG_STORE_FAILED.
 */
export interface AppliedConfigStore {
  load(): Promise<VersionedDesired | undefined>;
  save(applied: VersionedDesired): Promise<void>;
}
