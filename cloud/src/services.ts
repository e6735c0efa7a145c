import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import type { Auth } from './auth.js';
import type { CommandService } from './commands.js';
import type { FleetCache } from './fleet-cache.js';
import type { FleetHub } from './fleet-hub.js';
import type { CloudStore } from './store.js';

/** What the companion's routes work with; app.ts builds it. */
export interface CompanionServices {
  store: CloudStore;
  clock: Clock;
  log: Logger;
  auth: Auth;
  hub: FleetHub;
  cache: FleetCache;
  commands: CommandService;
}
