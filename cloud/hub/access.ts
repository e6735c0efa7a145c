import { HubError } from './hub-errors.js';
import { parseSasToken, SasParseError, signatureMatches } from './sas.js';

export type Right = 'RegistryRead' | 'RegistryWrite' | 'ServiceConnect' | 'DeviceConnect';

export interface AccessPolicy {
  readonly keyName: string;
  readonly primaryKey: string;
  readonly secondaryKey: string;
  readonly rights: readonly Right[];
}

/** The shared access policies every IoT Hub is created with, with their permissions. */
export const standardPolicies: readonly { keyName: string; rights: readonly Right[] }[] = [
  { keyName: 'iothubowner', rights: ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'] },
  { keyName: 'service', rights: ['ServiceConnect'] },
  { keyName: 'device', rights: ['DeviceConnect'] },
  { keyName: 'registryRead', rights: ['RegistryRead'] },
  { keyName: 'registryReadWrite', rights: ['RegistryRead', 'RegistryWrite'] },
];

export type Principal =
  | { readonly kind: 'device'; readonly deviceId: string; readonly expiresAt: number }
  | { readonly kind: 'policy'; readonly keyName: string; readonly rights: ReadonlySet<Right>; readonly expiresAt: number; readonly deviceId?: string };

export interface DeviceKeys {
  readonly primaryKey: string;
  readonly secondaryKey: string;
  readonly status: 'enabled' | 'disabled';
}

/**
 * Checks SAS tokens the way IoT Hub does: a device token (no skn) signed with that device's key,
 * or a policy token (skn) signed with the policy's key, scoped to this hub's host name and
 * unexpired. Every refusal is an Unauthorized HubError whose message says why.
 */
export class Authenticator {
  private readonly policies: ReadonlyMap<string, AccessPolicy>;

  constructor(
    private readonly hostName: string,
    policies: readonly AccessPolicy[],
    private readonly deviceKeys: (deviceId: string) => DeviceKeys | undefined,
    private readonly now: () => number,
  ) {
    this.policies = new Map(policies.map((p) => [p.keyName, p]));
  }

  authenticate(token: string | undefined): Principal {
    if (!token) throw new HubError('Unauthorized', 'no SharedAccessSignature supplied');
    let sas;
    try {
      sas = parseSasToken(token);
    } catch (err) {
      throw new HubError('Unauthorized', err instanceof SasParseError ? `malformed token: ${err.message}` : 'malformed token');
    }
    const expiresAt = sas.se * 1000;
    if (expiresAt <= this.now()) {
      throw new HubError('Unauthorized', `token expired at ${new Date(expiresAt).toISOString()} (hub time ${new Date(this.now()).toISOString()})`);
    }
    const { host, deviceId } = this.splitResource(sas.resource);
    if (host.toLowerCase() !== this.hostName.toLowerCase()) {
      throw new HubError('Unauthorized', `token audience "${sas.resource}" is not this hub (${this.hostName})`);
    }
    if (sas.skn !== undefined) {
      const policy = this.policies.get(sas.skn);
      if (!policy) throw new HubError('Unauthorized', `unknown shared access policy "${sas.skn}"`);
      if (!signatureMatches(sas, [policy.primaryKey, policy.secondaryKey])) {
        throw new HubError('Unauthorized', `signature does not match policy "${sas.skn}"`);
      }
      return deviceId === undefined
        ? { kind: 'policy', keyName: policy.keyName, rights: new Set(policy.rights), expiresAt }
        : { kind: 'policy', keyName: policy.keyName, rights: new Set(policy.rights), expiresAt, deviceId };
    }
    if (deviceId === undefined) throw new HubError('Unauthorized', 'a token without skn must name a device (sr=<host>/devices/<id>)');
    const keys = this.deviceKeys(deviceId);
    if (!keys) throw new HubError('Unauthorized', `device "${deviceId}" is not registered`);
    if (!signatureMatches(sas, [keys.primaryKey, keys.secondaryKey])) {
      throw new HubError('Unauthorized', `signature does not match the keys of device "${deviceId}"`);
    }
    if (keys.status === 'disabled') throw new HubError('Unauthorized', `device "${deviceId}" is disabled`);
    return { kind: 'device', deviceId, expiresAt };
  }

  private splitResource(resource: string): { host: string; deviceId?: string } {
    // Host may carry a port when a client put it in HostName (HostName=localhost:5673).
    const slash = resource.indexOf('/');
    const hostPart = slash < 0 ? resource : resource.slice(0, slash);
    const host = hostPart.replace(/:\d+$/, '');
    if (slash < 0) return { host };
    const m = /^\/devices\/([^/]+)\/?$/.exec(resource.slice(slash));
    if (!m?.[1]) throw new HubError('Unauthorized', `token resource "${resource}" is neither the hub nor a device`);
    return { host, deviceId: m[1] };
  }
}

/** Whether `principal` may act as device `deviceId` (its own token, or a DeviceConnect policy). */
export function canActAsDevice(principal: Principal, deviceId: string): boolean {
  if (principal.kind === 'device') return principal.deviceId === deviceId;
  return principal.rights.has('DeviceConnect') && (principal.deviceId === undefined || principal.deviceId === deviceId);
}

export function requireRight(principal: Principal, ...anyOf: Right[]): void {
  if (principal.kind === 'policy' && anyOf.some((r) => principal.rights.has(r))) return;
  const who = principal.kind === 'policy' ? `policy "${principal.keyName}"` : `device "${principal.deviceId}"`;
  throw new HubError('Unauthorized', `${who} lacks the ${anyOf.join(' or ')} permission`);
}
