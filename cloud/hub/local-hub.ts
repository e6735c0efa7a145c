import { createLogger, type Logger } from '../../common/log.js';
import { Authenticator } from './access.js';
import { AmqpFrontend } from './amqp-frontend.js';
import { C2dQueue, defaultC2dLimits, type C2dLimits } from './c2d-queue.js';
import { ConnectionLog } from './connection-log.js';
import { D2cIntake, D2C_MAX_BYTES } from './d2c-intake.js';
import { D2cRateLimiter, DailyQuota } from './d2c-limits.js';
import { deviceConnectionString, prepareDataDir, recordPorts, type HubFile } from './data-dir.js';
import { openDb, type Db } from './db.js';
import { defaultRetention, EventStore, type EventRetention } from './event-store.js';
import { Meter } from './meter.js';
import { DeviceRegistry } from './registry.js';
import { RestFrontend, type RouteModule } from './rest-frontend.js';
import { connectionLogRoutes } from './rest-connection-log.js';
import { methodRoutes } from './rest-methods.js';
import { queryRoutes } from './rest-query.js';

export interface LocalHubOptions {
  dataDir: string;
  /** Name clients use (certificate SAN, token audience). Default: the saved one, else localhost. */
  hostName?: string;
  /** Address to listen on. Default 127.0.0.1: the hub is a development stand-in, not exposed. */
  bindAddress?: string;
  /** 0 picks a free port; the bound port is written to hub.json. */
  amqpPort?: number;
  httpsPort?: number;
  caDir?: string;
  log?: Logger;
  /** Wall clock in ms; injectable so tests can move time (token and message expiry). */
  now?: () => number;
  c2dLimits?: Partial<C2dLimits>;
  retention?: Partial<EventRetention>;
  maxD2cBytes?: number;
  /** How often expired C2D messages are swept into Expired feedback. */
  sweepIntervalMs?: number;
  /** Device-to-cloud sends a second across the hub; unlimited when undefined. */
  d2cPerSecond?: number;
  /** Device-to-cloud sends a second per device; unlimited when undefined. */
  d2cPerDevicePerSecond?: number;
  /** Billed 4 KB units a UTC day (IoT Hub S1: 400,000 per unit); unlimited when undefined. */
  dailyQuotaUnits?: number;
}

/** The local IoT Hub: registry, twins, C2D queues, D2C store and meter behind AMQP and HTTPS. */
export class LocalHub {
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;

  private constructor(
    readonly dataDir: string,
    readonly hub: HubFile,
    /** The CA certificate (PEM) clients must trust. */
    readonly ca: string,
    readonly db: Db,
    readonly registry: DeviceRegistry,
    readonly c2d: C2dQueue,
    readonly events: EventStore,
    readonly meter: Meter,
    private readonly d2c: D2cIntake,
    private readonly amqp: AmqpFrontend,
    private readonly rest: RestFrontend,
    private readonly log: Logger,
  ) {}

  static async start(opts: LocalHubOptions): Promise<LocalHub> {
    const log = (opts.log ?? createLogger({ name: 'hub' })).child({ component: 'hub' });
    const now = opts.now ?? Date.now;
    const prepared = prepareDataDir({
      dataDir: opts.dataDir,
      ...(opts.hostName === undefined ? {} : { hostName: opts.hostName }),
      ...(opts.amqpPort === undefined ? {} : { amqpPort: opts.amqpPort }),
      ...(opts.httpsPort === undefined ? {} : { httpsPort: opts.httpsPort }),
      ...(opts.caDir === undefined ? {} : { caDir: opts.caDir }),
    });
    const db = openDb(prepared.hub.dbFile);
    const registry = new DeviceRegistry(db, now);
    const c2d = new C2dQueue(db, now, (id) => registry.get(id)?.generationId, { ...defaultC2dLimits, ...opts.c2dLimits });
    const events = new EventStore(db, now, { ...defaultRetention, ...opts.retention });
    const meter = new Meter(db);
    const auth = new Authenticator(prepared.hub.hostName, prepared.hub.policies, (id) => registry.get(id), now);
    const rate = new D2cRateLimiter({ perHubPerSecond: opts.d2cPerSecond, perDevicePerSecond: opts.d2cPerDevicePerSecond }, now);
    const quota = new DailyQuota(opts.dailyQuotaUnits, now, (day) => meter.get('', `quota.units.${day}`));
    const d2c = new D2cIntake(db, events, meter, registry, (err) => log.error({ err }, 'storing device-to-cloud messages failed'), rate, quota, opts.maxD2cBytes ?? D2C_MAX_BYTES);
    const connectionLog = new ConnectionLog(db, now, { hostName: prepared.hub.hostName, registry, log: log.child({ component: 'hub-connection-log' }) });
    const amqp = new AmqpFrontend({ registry, c2d, d2c, meter, auth, log: log.child({ component: 'hub-amqp' }), now, connectionLog });
    // Feature routes beyond the registry and twins, one module each.
    const routeModules: RouteModule[] = [methodRoutes((...args) => amqp.invokeMethod(...args)), connectionLogRoutes(connectionLog), queryRoutes()];
    const rest = new RestFrontend({ db, registry, c2d, events, meter, quota, auth, log: log.child({ component: 'hub-rest' }), now }, prepared, routeModules);
    const bind = opts.bindAddress ?? '127.0.0.1';
    let amqpPort: number;
    let httpsPort: number;
    try {
      amqpPort = await amqp.listen(prepared.hub.amqpPort, bind, prepared);
      httpsPort = await rest.listen(prepared.hub.httpsPort, bind);
    } catch (err) {
      await amqp.close();
      await rest.close().catch(() => undefined);
      db.close();
      throw err;
    }
    const hub = recordPorts(opts.dataDir, prepared.hub, amqpPort, httpsPort);
    const instance = new LocalHub(opts.dataDir, hub, prepared.ca, db, registry, c2d, events, meter, d2c, amqp, rest, log);
    instance.timers.push(
      setInterval(() => instance.sweep(), opts.sweepIntervalMs ?? 1000),
      setInterval(() => events.prune(), 60_000),
      setInterval(() => connectionLog.prune(), 60_000),
    );
    for (const t of instance.timers) t.unref();
    log.info({ hostName: hub.hostName, amqpPort, httpsPort, dataDir: opts.dataDir, devices: registry.count() }, 'local IoT Hub listening');
    return instance;
  }

  /** Expires due C2D messages and unrenewed tokens now (also runs on a timer). */
  sweep(): void {
    try {
      const expired = this.c2d.expire();
      if (expired > 0) this.log.info({ expired }, 'cloud-to-device messages expired');
      const tokens = this.amqp.expireTokens();
      if (tokens > 0) this.log.info({ tokens }, 'expired tokens ended their links');
    } catch (err) {
      this.log.error({ err }, 'c2d expiry sweep failed');
    }
  }

  get amqpConnections(): number {
    return this.amqp.connectionCount;
  }

  /** Cuts every AMQP connection without stopping the hub, as a network drop would. */
  dropAmqpConnections(): void {
    this.amqp.dropConnections();
  }

  /** Creates a device and returns its connection string. */
  createDevice(deviceId: string): string {
    const d = this.registry.create(deviceId);
    return deviceConnectionString(this.hub, d.deviceId, d.primaryKey);
  }

  deviceConnectionString(deviceId: string): string {
    const d = this.registry.require(deviceId);
    return deviceConnectionString(this.hub, d.deviceId, d.primaryKey);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.d2c.flush();
    await this.amqp.close();
    await this.rest.close();
    this.db.close();
    this.log.info('local IoT Hub stopped');
  }
}
