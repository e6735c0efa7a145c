/** Builds the fleet-locations pieces (issue 9) around one store and geolocator. */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { FleetHub } from '../fleet-hub.js';
import { ConnectionLogIngest } from './ingest.js';
import type { IpGeolocator } from './ip-geolocation.js';
import type { LocationStore } from './location-store.js';
import type { LocationServices } from './routes-locations.js';
import { LocationTagWriter } from './tag-writer.js';

export function createLocationServices(o: { store: LocationStore; geolocator: IpGeolocator; hub: Pick<FleetHub, 'patchTags'>; clock: Clock; log: Logger; tagsPerSecond?: number }): LocationServices {
  const log = o.log.child({ component: 'locations' });
  const tags = new LocationTagWriter({ store: o.store, hub: o.hub, clock: o.clock, log, ...(o.tagsPerSecond === undefined ? {} : { perSecond: o.tagsPerSecond }) });
  const ingest = new ConnectionLogIngest({ store: o.store, geolocator: o.geolocator, clock: o.clock, log, onLocationsChanged: () => tags.kick() });
  return { store: o.store, geolocator: o.geolocator, ingest, tags };
}
