/**
 * The gateway's identity in IoT Hub, through the official `azure-iothub` Registry acting as the
 * `registryReadWrite` policy: created, or reused when it exists (a replaced SD card keeps its
 * gateway), and tagged with the hash of a fresh pairing code.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { withinDeadline } from '../../common/deadline.js';
import { FieldlinkError } from '../../common/errors.js';
import { hashPairingCode, type PairingCodeHash } from '../../common/pairing-code.js';
import { deviceConnectionString, readHubFile } from '../../cloud/hub/data-dir.js';
import { createRegistry, hubTargetFromConnectionString, hubTargetFromFile, type HubTarget } from '../../cloud/hub/service-clients.js';
import { translateHubError } from '../../cloud/src/azure-fleet-hub.js';

export type ProvisionHub = { readonly kind: 'file'; readonly hubJson: string } | { readonly kind: 'connection-string'; readonly connectionString: string };

export interface HubEndpoint {
  readonly target: HubTarget;
  /** Where devices connect: host name and AMQP port (the device connection string names them). */
  readonly hostName: string;
  readonly amqpPort: number;
  /** PEM of a CA the gateway must trust (a local hub); undefined for Azure's public chain. */
  readonly ca: string | undefined;
}

export function hubEndpoint(hub: ProvisionHub): HubEndpoint {
  if (hub.kind === 'file') {
    const file = readHubFile(hub.hubJson);
    const target = hubTargetFromFile(hub.hubJson, 'registryReadWrite');
    return { target, hostName: file.hostName, amqpPort: file.amqpPort, ca: readFileSync(file.caFile, 'utf8') };
  }
  const target = hubTargetFromConnectionString(hub.connectionString);
  return { target, hostName: target.hostName, amqpPort: 5671, ca: undefined };
}

export interface ProvisionedIdentity {
  readonly deviceId: string;
  /** Secret: written to a 0600 file, never printed or logged. */
  readonly connectionString: string;
  readonly created: boolean;
  readonly pairingHash: PairingCodeHash;
}

interface SdkDevice {
  authentication?: { type?: string; symmetricKey?: { primaryKey?: string } };
}

const CALL_MS = 10_000;

/** Creates (or reuses) `deviceId` and stores the pairing code's hash in its twin tags. */
export async function provisionIdentity(endpoint: HubEndpoint, deviceId: string, pairingCode: string, extraTags: Record<string, unknown>): Promise<ProvisionedIdentity> {
  const registry = createRegistry(endpoint.target);
  const call = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    try {
      return await withinDeadline(CALL_MS, what, work());
    } catch (err) {
      throw translateHubError(err, what, deviceId);
    }
  };

  let key: string | undefined;
  let created = false;
  try {
    const existing = (await call(`look up "${deviceId}"`, () => registry.get(deviceId))).responseBody as unknown as SdkDevice;
    key = existing.authentication?.symmetricKey?.primaryKey;
    if (!key) {
      throw new FieldlinkError('CONFIG_INVALID', { message: `"${deviceId}" exists but does not use a symmetric key (${existing.authentication?.type ?? 'unknown'}); pick another id` });
    }
  } catch (err) {
    if (!(err instanceof FieldlinkError) || err.code !== 'DEVICE_NOT_FOUND') throw err;
    key = randomBytes(32).toString('base64');
    await call(`create "${deviceId}"`, () =>
      registry.create({ deviceId, status: 'enabled', authentication: { symmetricKey: { primaryKey: key, secondaryKey: randomBytes(32).toString('base64') } } } as never),
    );
    created = true;
  }

  const pairingHash = hashPairingCode(pairingCode);
  const tags = { fieldlink: { kind: 'gateway', pairing: { ...pairingHash, issued: new Date().toISOString() }, ...extraTags } };
  await call(`tag "${deviceId}"`, () => registry.updateTwin(deviceId, { tags }, '*'));
  return { deviceId, connectionString: deviceConnectionString({ hostName: endpoint.hostName, amqpPort: endpoint.amqpPort }, deviceId, key), created, pairingHash };
}
