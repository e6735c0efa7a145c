/**
 * What the companion needs from IoT Hub, as one port: cloud-to-device commands and their
 * feedback, twins with etags, the device query, and identities. `azure-fleet-hub.ts` implements
 * it with the official `azure-iothub` SDK (Azure or the local hub alike); route tests use fakes.
 *
 * Every method settles within its deadline: an unreachable hub rejects with HUB_UNREACHABLE
 * (or TIMEOUT), never hangs.
 */
export type JsonObject = { [key: string]: unknown };

/** A device twin as the companion reads it. */
export interface HubTwin {
  readonly deviceId: string;
  readonly etag: string;
  /** Desired properties including `$version` (and `$metadata` when the hub sends it). */
  readonly desired: JsonObject;
  readonly reported: JsonObject;
  readonly tags: JsonObject;
  readonly connectionState: 'Connected' | 'Disconnected' | undefined;
  /** ISO time of the device's last activity the hub saw, when it says. */
  readonly lastActivityTime: string | undefined;
  readonly status: string | undefined;
}

/** One record of the IoT Hub feedback stream (`/messages/serviceBound/feedback`). */
export interface FeedbackRecord {
  readonly originalMessageId: string;
  readonly deviceId: string;
  /** Success, Expired, DeliveryCountExceeded, Rejected or Purged. */
  readonly statusCode: string;
  readonly description: string;
  readonly enqueuedTimeUtc: string;
}

export interface C2dSendOptions {
  readonly messageId: string;
  /** Epoch ms after which IoT Hub drops the message (and reports Expired). */
  readonly expiresAtMs: number;
}

export interface FeedbackSubscription {
  close(): Promise<void>;
}

export interface FeedbackHandlers {
  /** A batch of records; the batch is settled with the hub once this resolves. */
  onRecords(records: readonly FeedbackRecord[]): Promise<void> | void;
  /** The link or connection failed; the subscription is dead and should be reopened. */
  onError(err: Error): void;
}

export interface NewGatewayIdentity {
  readonly deviceId: string;
  /** The device connection string, secret: returned once, never logged or stored. */
  readonly connectionString: string;
}

export interface FleetHub {
  /** Queues a C2D message with `ack: full` (feedback for every outcome). */
  sendCommand(deviceId: string, body: string, opts: C2dSendOptions): Promise<void>;
  /** Opens the feedback receiver; one at a time per hub (it is a singleton in IoT Hub's model). */
  subscribeFeedback(handlers: FeedbackHandlers): Promise<FeedbackSubscription>;
  getTwin(deviceId: string): Promise<HubTwin>;
  /**
   * Merges `patch` into the desired properties if the twin's etag is still `etag` ('*': any);
   * PRECONDITION_FAILED (with the current etag) when it is not.
   */
  patchDesired(deviceId: string, patch: JsonObject, etag: string): Promise<HubTwin>;
  /** Merges `patch` into the twin's tags (no etag check: tags here are written by one owner per key). */
  patchTags(deviceId: string, patch: JsonObject): Promise<HubTwin>;
  /** Every twin (the fleet), paged through the device query. */
  listTwins(): Promise<HubTwin[]>;
  /** C2D messages queued for the device (IoT Hub caps the queue at 50). */
  queuedCommandCount(deviceId: string): Promise<number>;
  createGateway(deviceId: string, tags: JsonObject): Promise<NewGatewayIdentity>;
  deleteGateway(deviceId: string): Promise<void>;
  close(): Promise<void>;
}
