import { FieldlinkError } from '../../../common/errors.js';
import type { C2dSendOptions, FeedbackHandlers, FeedbackRecord, FeedbackSubscription, FleetHub, HubTwin, JsonObject, NewGatewayIdentity } from '../../../cloud/src/fleet-hub.js';

export interface SentCommand {
  deviceId: string;
  body: unknown;
  opts: C2dSendOptions;
}

function mergePatch(base: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (typeof v === 'object' && !Array.isArray(v) && typeof out[k] === 'object' && out[k] !== null) out[k] = mergePatch(out[k] as JsonObject, v as JsonObject);
    else out[k] = v;
  }
  return out;
}

/** An in-memory FleetHub for route tests: twins with etags and versions, a record of sends, feedback on demand. */
export class FakeFleetHub implements FleetHub {
  readonly twins = new Map<string, HubTwin>();
  readonly sent: SentCommand[] = [];
  /** When set, every call fails with it (an unreachable hub). */
  down: FieldlinkError | undefined;
  listCalls = 0;
  /** Every tags patch, in order: location writes must happen only when a location changes. */
  readonly tagPatches: { deviceId: string; patch: JsonObject }[] = [];
  subscribeCalls = 0;
  /** When set, listTwins waits for it before answering (a slow device query). */
  listGate: Promise<void> | undefined;
  private feedback: FeedbackHandlers | undefined;
  private etagSeq = 0;

  addGateway(deviceId: string, reported: JsonObject = {}, extra: Partial<HubTwin> = {}): HubTwin {
    const twin: HubTwin = {
      deviceId,
      etag: `e${++this.etagSeq}`,
      desired: { $version: 1 },
      reported: { $version: 1, ...reported },
      tags: {},
      connectionState: 'Disconnected',
      lastActivityTime: undefined,
      status: 'enabled',
      ...extra,
    };
    this.twins.set(deviceId, twin);
    return twin;
  }

  private check(deviceId?: string): HubTwin | undefined {
    if (this.down) throw this.down;
    if (deviceId === undefined) return undefined;
    const t = this.twins.get(deviceId);
    if (!t) throw new FieldlinkError('DEVICE_NOT_FOUND', { message: `gateway "${deviceId}" is not registered in IoT Hub` });
    return t;
  }

  async sendCommand(deviceId: string, body: string, opts: C2dSendOptions): Promise<void> {
    this.check(deviceId);
    this.sent.push({ deviceId, body: JSON.parse(body), opts });
  }

  async subscribeFeedback(handlers: FeedbackHandlers): Promise<FeedbackSubscription> {
    this.subscribeCalls++;
    this.check();
    this.feedback = handlers;
    return { close: async () => void (this.feedback = undefined) };
  }

  /** The feedback link fails, as when the hub drops the connection. */
  failFeedback(err: Error): void {
    const h = this.feedback;
    this.feedback = undefined;
    h?.onError(err);
  }

  get feedbackSubscribed(): boolean {
    return this.feedback !== undefined;
  }

  /** Delivers feedback records to the subscriber, as the hub's feedback link would. */
  async deliverFeedback(records: FeedbackRecord[]): Promise<void> {
    if (!this.feedback) throw new Error('nobody subscribed to feedback');
    await this.feedback.onRecords(records);
  }

  async getTwin(deviceId: string): Promise<HubTwin> {
    return structuredClone(this.check(deviceId) as HubTwin);
  }

  async patchDesired(deviceId: string, patch: JsonObject, etag: string): Promise<HubTwin> {
    const t = this.check(deviceId) as HubTwin;
    if (etag !== '*' && etag !== t.etag) throw new FieldlinkError('PRECONDITION_FAILED', { message: 'etag mismatch', details: { currentEtag: t.etag } });
    const version = (typeof t.desired.$version === 'number' ? t.desired.$version : 0) + 1;
    const next: HubTwin = { ...t, etag: `e${++this.etagSeq}`, desired: { ...mergePatch(t.desired, patch), $version: version } };
    this.twins.set(deviceId, next);
    return structuredClone(next);
  }

  async patchTags(deviceId: string, patch: JsonObject): Promise<HubTwin> {
    const t = this.check(deviceId) as HubTwin;
    this.tagPatches.push({ deviceId, patch: structuredClone(patch) });
    const next: HubTwin = { ...t, etag: `e${++this.etagSeq}`, tags: mergePatch(t.tags, patch) };
    this.twins.set(deviceId, next);
    return structuredClone(next);
  }

  /** Sets reported properties, as the gateway would. */
  report(deviceId: string, reported: JsonObject): void {
    const t = this.twins.get(deviceId);
    if (!t) throw new Error(`no twin ${deviceId}`);
    this.twins.set(deviceId, { ...t, etag: `e${++this.etagSeq}`, reported: mergePatch(t.reported, reported) });
  }

  async listTwins(): Promise<HubTwin[]> {
    this.check();
    this.listCalls++;
    const snapshot = [...this.twins.values()].map((t) => structuredClone(t));
    await this.listGate;
    return snapshot;
  }

  async queuedCommandCount(deviceId: string): Promise<number> {
    this.check(deviceId);
    return this.sent.filter((s) => s.deviceId === deviceId).length;
  }

  async createGateway(deviceId: string, tags: JsonObject): Promise<NewGatewayIdentity> {
    this.check();
    if (this.twins.has(deviceId)) throw new FieldlinkError('DEVICE_ALREADY_EXISTS', { message: `gateway "${deviceId}" is already registered in IoT Hub` });
    this.addGateway(deviceId, {}, { tags });
    return { deviceId, connectionString: `HostName=fake;DeviceId=${deviceId};SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=` };
  }

  async deleteGateway(deviceId: string): Promise<void> {
    this.check(deviceId);
    this.twins.delete(deviceId);
  }

  async close(): Promise<void> {}
}
