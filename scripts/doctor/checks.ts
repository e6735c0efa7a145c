/**
 * The checks of `fieldlink doctor`, in the order they run. Each says what it found (naming the
 * cause: a path, an errno code, a D-Bus error name, bytes free, the hub's error) and, when not
 * ok, what the engineer should do. A check whose premise an earlier one broke is skipped.
 */
import { dirname, join } from 'node:path';
import dbus from 'dbus-next';
import { isFieldlinkError } from '../../common/errors.js';
import type { LoadedGatewayConfig } from '../../gateway/src/config/load-config.js';
import { OUTBOX_FILE } from '../../gateway/src/main.js';
import { isUplinkError } from '../../gateway/src/ports/uplink.js';
import type { BusSession, DoctorEnv } from './env.js';
import { outboxFileBytes, probeOutbox } from './outbox-probe.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  readonly status: CheckStatus;
  readonly summary: string;
  readonly fix?: string;
  readonly details?: Record<string, unknown>;
}

export interface DoctorContext {
  readonly env: DoctorEnv;
  readonly configPath: string;
  /** Deadline of the hub connection and of each D-Bus step. */
  readonly timeoutMs: number;
  config?: LoadedGatewayConfig;
  /** Results so far, by check id. */
  readonly results: Map<string, CheckResult>;
}

export interface Check {
  readonly id: string;
  readonly title: string;
  run(ctx: DoctorContext): Promise<CheckResult>;
}

const MiB = 1024 * 1024;
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;

const skip = (summary: string): CheckResult => ({ status: 'skip', summary });
const noConfig = skip('no valid config');

function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86_400).toFixed(1)} d`;
}

// 1. config ------------------------------------------------------------------------------------

export const configCheck: Check = {
  id: 'config',
  title: 'config',
  async run(ctx) {
    try {
      ctx.config = ctx.env.loadConfig(ctx.configPath);
    } catch (e) {
      if (isFieldlinkError(e, 'CONFIG_INVALID')) {
        const problems = (e.details?.['problems'] as { path: string; message: string }[] | undefined) ?? [];
        return {
          status: 'fail',
          summary: `${ctx.configPath} is invalid: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
          fix: 'fix each listed field (docs/gateway.md, hardware/gateway.example.yaml); unknown properties are usually typos',
          details: { code: e.code, problems },
        };
      }
      if (isFieldlinkError(e)) {
        return {
          status: 'fail',
          summary: e.message,
          fix: 'check the path and permissions (doctor reads the file as the user running it); for a syntax error, fix the file at the line given',
          details: { code: e.code },
        };
      }
      throw e;
    }
    const c = ctx.config;
    const families = c.sources.map((s) => `${s.id} (${s.family})`).join(', ');
    return {
      status: 'ok',
      summary: `${ctx.configPath}: gateway ${c.gatewayId}, ${c.sources.length} source(s)${families ? `: ${families}` : ''}, dataDir ${c.dataDir}`,
      details: { gatewayId: c.gatewayId, dataDir: c.dataDir, clockTrust: c.clockTrust.source, sources: c.sources.length },
    };
  },
};

// 2. serial ------------------------------------------------------------------------------------

function serialFix(code: string | undefined, path: string): string {
  switch (code) {
    case 'ENOENT':
      return `not plugged in, or the udev rule that names it is missing: check the cable, then ls -l /dev/fieldlink ${path}`;
    case 'EACCES':
    case 'EPERM':
      return `add the gateway's user to the dialout group (usermod -aG dialout USER, then log in again) or fix the udev rule's MODE/GROUP for ${path}`;
    default:
      return `check the device and its driver (dmesg | tail) for ${path}`;
  }
}

export const serialCheck: Check = {
  id: 'serial',
  title: 'serial devices',
  async run(ctx) {
    const c = ctx.config;
    if (c === undefined) return noConfig;
    const ports = c.sources.flatMap((s) => (s.family === 'serial' || s.family === 'firmata' ? [{ id: s.id, path: s.path }] : []));
    if (ports.length === 0) return skip('no serial or firmata source configured');
    const bad: { id: string; path: string; code: string | undefined; message: string }[] = [];
    const good: string[] = [];
    for (const p of ports) {
      try {
        await ctx.env.openSerial(p.path);
        good.push(`${p.id} ${p.path}`);
      } catch (e) {
        const code = errnoOf(e);
        // The running gateway holds its ports exclusively (TIOCEXCL): present, and in use.
        if (code === 'EBUSY') good.push(`${p.id} ${p.path} (in use, by the running gateway if it is up)`);
        else bad.push({ ...p, code, message: messageOf(e) });
      }
    }
    if (bad.length === 0) {
      const asRoot = ctx.env.isRoot() ? ` (as root: the gateway user's permissions are not tested; run doctor as that user, e.g. sudo -u fieldlink)` : '';
      return { status: 'ok', summary: `${good.join(', ')}: present and openable${asRoot}`, details: { ports, asRoot: asRoot !== '' } };
    }
    return {
      status: 'fail',
      summary: bad.map((b) => `${b.id} ${b.path}: ${b.code ?? b.message}${b.code === 'ENOENT' ? ' (no such device)' : b.code === 'EACCES' ? ' (permission denied)' : ''}`).join('; '),
      fix: [...new Set(bad.map((b) => serialFix(b.code, b.path)))].join('; '),
      details: { failed: bad.map(({ id, path, code }) => ({ id, path, code })) },
    };
  },
};

// D-Bus helpers ----------------------------------------------------------------------------------

const SERVICE_UNKNOWN = new Set(['org.freedesktop.DBus.Error.ServiceUnknown', 'org.freedesktop.DBus.Error.NameHasNoOwner']);

async function openBus(ctx: DoctorContext): Promise<{ bus: BusSession } | { error: string }> {
  try {
    return { bus: await ctx.env.systemBus(ctx.timeoutMs) };
  } catch (e) {
    const address = (e as { address?: unknown } | undefined)?.address;
    return { error: `the D-Bus system bus cannot be reached (${errnoOf(e) ?? messageOf(e)}${typeof address === 'string' ? ` at ${address}` : ''})` };
  }
}

/** The D-Bus error name of an error reply (org.freedesktop.DBus.Error.ServiceUnknown…), if it is one. */
function dbusErrorName(e: unknown): string | undefined {
  if (e instanceof dbus.DBusError) return e.type;
  const type = (e as { type?: unknown } | undefined)?.type;
  return typeof type === 'string' ? type : undefined;
}

// 3. ble ---------------------------------------------------------------------------------------

export const bleCheck: Check = {
  id: 'ble',
  title: 'Bluetooth adapter',
  async run(ctx) {
    const c = ctx.config;
    if (c === undefined) return noConfig;
    const adapters = [...new Set(c.sources.flatMap((s) => (s.family === 'ble' ? [s.adapter] : [])))];
    if (adapters.length === 0) return skip('no ble source configured');
    const opened = await openBus(ctx);
    if ('error' in opened) {
      return { status: 'fail', summary: opened.error, fix: 'start dbus (systemctl status dbus); for a non-default bus set DBUS_SYSTEM_BUS_ADDRESS' };
    }
    const { bus } = opened;
    try {
      const found: string[] = [];
      for (const adapter of adapters) {
        const path = `/org/bluez/${adapter}`;
        let powered: unknown;
        try {
          powered = await bus.getProperty('org.bluez', path, 'org.bluez.Adapter1', 'Powered');
        } catch (e) {
          const name = dbusErrorName(e);
          if (name !== undefined && SERVICE_UNKNOWN.has(name)) {
            return {
              status: 'fail',
              summary: `org.bluez is not on the system bus (${name}): bluetooth.service not running`,
              fix: 'apt-get install bluez; systemctl enable --now bluetooth',
              details: { dbusError: name },
            };
          }
          if (name !== undefined) {
            return {
              status: 'fail',
              summary: `adapter ${adapter}: no ${path} with org.bluez.Adapter1 (${name})`,
              fix: `check that the adapter exists (bluetoothctl list, hciconfig -a) and the config's "adapter" names it`,
              details: { adapter, dbusError: name },
            };
          }
          return { status: 'fail', summary: `adapter ${adapter}: BlueZ did not answer (${messageOf(e)})`, fix: 'systemctl restart bluetooth', details: { adapter } };
        }
        if (powered !== true) {
          return {
            status: 'fail',
            summary: `adapter ${adapter} (${path}) is powered off (Powered=${String(powered)})`,
            fix: 'rfkill unblock bluetooth; bluetoothctl power on (and AutoEnable=true in /etc/bluetooth/main.conf)',
            details: { adapter, powered },
          };
        }
        found.push(`${adapter} powered`);
      }
      return { status: 'ok', summary: `${found.join(', ')} (org.bluez on ${bus.address})`, details: { adapters } };
    } finally {
      bus.close();
    }
  },
};

// 4. clock -------------------------------------------------------------------------------------

const TIMEDATE1 = 'org.freedesktop.timedate1';

export const clockCheck: Check = {
  id: 'clock',
  title: 'clock',
  async run(ctx) {
    const c = ctx.config;
    if (c === undefined) return noConfig;
    const wall = new Date(ctx.env.now()).toISOString();
    if (c.clockTrust.source === 'assume') {
      return { status: 'ok', summary: `clockTrust.source is "assume": wall clock ${wall} trusted without checking (development only)`, details: { source: 'assume', wall } };
    }
    const opened = await openBus(ctx);
    if ('error' in opened) {
      return {
        status: 'fail',
        summary: `${opened.error}; the gateway cannot tell whether the clock (${wall}) is right and keeps the uplink closed`,
        fix: 'start dbus (systemctl status dbus; timedatectl status should answer); for a non-default bus set DBUS_SYSTEM_BUS_ADDRESS',
        details: { wall },
      };
    }
    const { bus } = opened;
    try {
      let synced: unknown;
      try {
        synced = await bus.getProperty(TIMEDATE1, '/org/freedesktop/timedate1', TIMEDATE1, 'NTPSynchronized');
      } catch (e) {
        const name = dbusErrorName(e);
        return {
          status: 'fail',
          summary: name !== undefined && SERVICE_UNKNOWN.has(name)
            ? `${TIMEDATE1} is not on the system bus (${name}); the clock (${wall}) counts as untrusted`
            : `${TIMEDATE1} answered with an error (${name ?? messageOf(e)}); the clock (${wall}) counts as untrusted`,
          fix: 'install and start systemd-timedated (apt-get install systemd-timesyncd; timedatectl status should answer)',
          details: { wall, ...(name === undefined ? {} : { dbusError: name }) },
        };
      }
      if (synced === true) return { status: 'ok', summary: `NTP-synchronised (${wall})`, details: { wall, ntpSynchronized: true } };
      return {
        status: 'fail',
        summary: `clock not synchronised (NTPSynchronized=${String(synced)}, wall time ${wall}): SAS tokens minted now may be refused, the uplink stays closed`,
        fix: 'check the network and systemd-timesyncd (timedatectl timesync-status; systemctl restart systemd-timesyncd)',
        details: { wall, ntpSynchronized: synced },
      };
    } finally {
      bus.close();
    }
  },
};

// 5. disk --------------------------------------------------------------------------------------

async function nearestExisting(env: DoctorEnv, path: string): Promise<string> {
  let p = path;
  for (;;) {
    try {
      await env.stat(p);
      return p;
    } catch {
      const parent = dirname(p);
      if (parent === p) return p;
      p = parent;
    }
  }
}

export const diskCheck: Check = {
  id: 'disk',
  title: 'disk space',
  async run(ctx) {
    const c = ctx.config;
    if (c === undefined) return noConfig;
    const { maxBytes, minFreeBytes } = c.settings.outbox;
    const where = await nearestExisting(ctx.env, c.dataDir);
    let free: number;
    try {
      const s = await ctx.env.statfs(where);
      free = s.bavail * s.bsize;
    } catch (e) {
      return { status: 'fail', summary: `statfs ${where}: ${errnoOf(e) ?? messageOf(e)}`, fix: 'check the data directory and its file system (mount, dmesg)' };
    }
    const outboxBytes = outboxFileBytes(join(c.dataDir, OUTBOX_FILE));
    // The outbox may still grow by what it lacks of maxBytes.
    const growth = Math.max(0, maxBytes - outboxBytes);
    const details = { path: where, freeBytes: free, minFreeBytes, maxBytes, outboxFileBytes: outboxBytes };
    const at = `${mib(free)} free at ${where}`;
    if (free < minFreeBytes) {
      return {
        status: 'fail',
        summary: `${at}, below settings.outbox.minFreeBytes ${mib(minFreeBytes)}: the outbox evicts readings to stay above it`,
        fix: 'free space on the SD card (journalctl --vacuum-size=50M, apt-get clean) or lower outbox.minFreeBytes',
        details,
      };
    }
    if (free < growth + minFreeBytes) {
      return {
        status: 'warn',
        summary: `${at}: a full outbox (${mib(maxBytes)}) would leave less than minFreeBytes ${mib(minFreeBytes)}; it would evict before reaching maxBytes`,
        fix: 'free space on the SD card or lower outbox.maxBytes',
        details,
      };
    }
    return { status: 'ok', summary: `${at} (outbox up to ${mib(maxBytes)}, keeps ${mib(minFreeBytes)} free)`, details };
  },
};

// 6. hub ---------------------------------------------------------------------------------------

const TLS_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ECONNABORTED']);

/** Every error code and message along an SDK error's chain of causes. */
function errorChain(e: unknown): { codes: string[]; messages: string[] } {
  const codes: string[] = [];
  const messages: string[] = [];
  const seen = new Set<unknown>();
  const walk = (x: unknown, depth: number): void => {
    if (x === null || typeof x !== 'object' || seen.has(x) || depth > 8) return;
    seen.add(x);
    const o = x as Record<string, unknown>;
    if (typeof o['code'] === 'string') codes.push(o['code']);
    if (typeof o['message'] === 'string' && o['message'] !== '') messages.push(o['message']);
    for (const k of ['cause', 'transportError', 'innerError', 'error', 'amqpError', 'condition']) walk(o[k], depth + 1);
  };
  walk(e, 0);
  // TLS errors often only survive as text ("self-signed certificate in certificate chain").
  for (const m of messages) for (const code of TLS_CODES) if (m.includes(code)) codes.push(code);
  if (messages.some((m) => /self[- ]signed certificate/i.test(m))) codes.push('SELF_SIGNED_CERT_IN_CHAIN');
  if (messages.some((m) => /unable to verify the first certificate/i.test(m))) codes.push('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  for (const m of messages) for (const code of NET_CODES) if (m.includes(code)) codes.push(code);
  return { codes: [...new Set(codes)], messages };
}

function hubEndpoint(connectionString: string): { host: string; port: number } {
  const field = (k: string): string | undefined => new RegExp(`(?:^|;)${k}=([^;]+)`).exec(connectionString)?.[1];
  const target = field('GatewayHostName') ?? field('HostName') ?? '?';
  const m = /^(.*):(\d+)$/.exec(target);
  return m === null ? { host: target, port: 5671 } : { host: m[1] ?? target, port: Number(m[2]) };
}

export const hubCheck: Check = {
  id: 'hub',
  title: 'IoT Hub',
  async run(ctx) {
    const c = ctx.config;
    if (c === undefined) return noConfig;
    const { host, port } = hubEndpoint(c.connectionString);
    const at = `${host}:${port}`;
    let ca: string | undefined;
    if (c.caFile !== undefined) {
      try {
        ca = await ctx.env.readFile(c.caFile);
      } catch (e) {
        return { status: 'fail', summary: `cannot read caFile ${c.caFile}: ${errnoOf(e) ?? messageOf(e)}`, fix: 'copy the hub CA to the caFile path (or remove caFile for Azure)', details: { host, port } };
      }
    }
    const started = ctx.env.now();
    try {
      // First a plain TLS handshake: the SDK reports a refused port or an untrusted certificate
      // as a bare "connection disconnected", this names the errno or the certificate error.
      await ctx.env.probeTls(host, port, ca, ctx.timeoutMs);
      await ctx.env.connectHub(c, ca, ctx.timeoutMs);
    } catch (e) {
      const { codes, messages } = errorChain(e);
      const tls = codes.find((x) => TLS_CODES.has(x));
      const net = codes.find((x) => NET_CODES.has(x));
      const sdk = (isUplinkError(e) ? (e.details?.['sdkError'] as string | undefined) : undefined) ?? undefined;
      const details = { host, port, codes, ...(sdk === undefined ? {} : { sdkError: sdk }) };
      const clockSuspect = ctx.results.get('clock')?.status === 'fail';
      if (tls !== undefined) {
        return {
          status: 'fail',
          summary: `TLS not trusted by ${at}: ${tls}${c.caFile === undefined ? ' (no caFile in the config)' : ` (caFile ${c.caFile})`}`,
          fix: tls === 'CERT_NOT_YET_VALID' || tls === 'CERT_HAS_EXPIRED'
            ? 'the clock is probably wrong (see the clock check); otherwise the hub certificate expired'
            : tls === 'ERR_TLS_CERT_ALTNAME_INVALID'
              ? 'the connection string HostName does not match the hub certificate'
              : 'caFile missing or wrong: set caFile to the hub CA certificate (the local hub: the caFile named in its hub.json); Azure needs none',
          details,
        };
      }
      if (isUplinkError(e, 'auth')) {
        return {
          status: 'fail',
          summary: `IoT Hub ${at} refused the key for ${c.gatewayId} (${sdk ?? 'UnauthorizedError'}): wrong or rotated key, device not registered, or the clock is wrong${clockSuspect ? ' (and the clock check failed)' : ''}`,
          fix: clockSuspect ? 'fix time sync first (clock check), then run doctor again' : 'copy the device connection string again (fieldlink provision / the hub); check the device exists and is enabled',
          details,
        };
      }
      if (net !== undefined || isUplinkError(e, 'unreachable')) {
        return {
          status: 'fail',
          summary: `IoT Hub unreachable at ${at}: ${net ?? messages[0] ?? 'connection failed'}`,
          fix: net === 'ENOTFOUND' || net === 'EAI_AGAIN'
            ? `DNS cannot resolve ${host}: check the network and /etc/resolv.conf`
            : `check the network, the host name and that outbound TCP ${port} is allowed by the firewall`,
          details,
        };
      }
      if (isUplinkError(e, 'timeout')) {
        return {
          status: 'fail',
          summary: `IoT Hub ${at} did not answer within ${ctx.timeoutMs} ms`,
          fix: `check the network and the firewall for outbound TCP ${port}; a slow link may need --timeout`,
          details,
        };
      }
      return {
        status: 'fail',
        summary: `IoT Hub ${at} connection failed: ${messages[0] ?? messageOf(e)}`,
        fix: 'read the error above; check the connection string and the network',
        details,
      };
    }
    return {
      status: 'ok',
      summary: `${at} reachable, TLS trusted, credentials of ${c.gatewayId} accepted (${ctx.env.now() - started} ms)`,
      details: { host, port },
    };
  },
};

// 7. outbox ------------------------------------------------------------------------------------

export const outboxCheck: Check = {
  id: 'outbox',
  title: 'outbox',
  async run(ctx) {
    const c = ctx.config;
    if (c === undefined) return noConfig;
    const path = join(c.dataDir, OUTBOX_FILE);
    const { maxBytes, ttlS } = c.settings.outbox;
    let probe;
    try {
      probe = probeOutbox(path);
    } catch (e) {
      return {
        status: 'fail',
        summary: `cannot read ${path}: ${errnoOf(e) ?? ''} ${messageOf(e)}`.replace(/\s+/g, ' '),
        fix: 'check free space and the SD card; if the file is damaged, stop the gateway and move it aside (unsent readings in it are lost)',
        details: { path },
      };
    }
    if (probe === undefined) return { status: 'ok', summary: `no outbox yet (${path}); the gateway creates it`, details: { path } };
    const age = probe.oldestAgeMs === undefined ? 'empty' : `oldest reading ${duration(probe.oldestAgeMs)} old${probe.oldestTs === undefined ? '' : ` (${probe.oldestTs})`}`;
    const summary = `${probe.depth} reading(s) waiting, ${mib(probe.bytes)} of ${mib(maxBytes)}, ${age}`;
    const details = { path, depth: probe.depth, bytes: probe.bytes, maxBytes, oldestAgeMs: probe.oldestAgeMs, oldestTs: probe.oldestTs, ttlS };
    const problems: string[] = [];
    if (probe.oldestAgeMs !== undefined && probe.oldestAgeMs > (ttlS * 1000) / 2) problems.push(`the oldest reading is past half the TTL (${duration(ttlS * 1000)}): it expires unsent if the uplink stays down`);
    if (probe.bytes > maxBytes * 0.8) problems.push('the outbox is over 80% of maxBytes: the oldest readings are evicted soon');
    if (problems.length > 0) {
      return {
        status: 'warn',
        summary: `${summary}; ${problems.join('; ')}`,
        fix: 'the uplink has not drained it: fix the hub check first; check the gateway log (journalctl -u fieldlink-gateway)',
        details,
      };
    }
    return { status: 'ok', summary, details };
  },
};

export const allChecks: readonly Check[] = [configCheck, serialCheck, bleCheck, clockCheck, diskCheck, hubCheck, outboxCheck];
