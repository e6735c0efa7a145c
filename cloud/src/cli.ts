import type { Command } from 'commander';
import { companionBaseUrl } from '../../common/companion-url.js';
import { FieldlinkError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { shutdownSignal } from '../../common/shutdown-signal.js';
import { issueToken, TOKEN_NAME_PATTERN } from './auth.js';
import { pairingLink } from './routes-pairing.js';
import { readFileSync } from 'node:fs';
import { hubFilePath, DEFAULT_DATA_DIR as DEFAULT_HUB_DATA_DIR } from '../hub/data-dir.js';
import { startCloudServer, type HubSource } from './server.js';
import { CloudStore, DEFAULT_CLOUD_DATA_DIR, isRole, ROLES, type Role, type TokenSummary } from './store.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new FieldlinkError('CONFIG_INVALID', { message: `port must be 0-65535, not "${value}"` });
  return n;
}

function role(value: string): Role {
  if (!isRole(value)) throw new FieldlinkError('CONFIG_INVALID', { message: `--role must be one of ${ROLES.join(', ')}, not "${value}"` });
  return value;
}

function tokenName(value: string): string {
  if (!TOKEN_NAME_PATTERN.test(value)) {
    throw new FieldlinkError('CONFIG_INVALID', { message: `--name must be 1-64 letters, digits, . _ @ - (starting with a letter or digit), not "${value}"` });
  }
  return value;
}

/** `30m`, `8h`, `7d` (or seconds) → ms; a pairing link lasts minutes to days. */
function duration(value: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(value.trim());
  const unit = { '': 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m?.[2] ?? ''] ?? 1000;
  const ms = m ? Number(m[1]) * unit : Number.NaN;
  if (!(ms >= 60_000 && ms <= 30 * 86_400_000)) throw new FieldlinkError('CONFIG_INVALID', { message: `--expires-in must be 1m to 30d, e.g. 8h (got "${value}")` });
  return ms;
}

/**
 * An option parser for the companion's URL as phones reach it (`--public-url`, `--link`): an
 * http(s) origin and optional path, without query, fragment or trailing slash; pairing links are
 * built on it.
 */
function companionUrl(flag: string): (value: string) => string {
  return (value) => companionBaseUrl(value, flag);
}

function withStore<T>(dataDir: string, fn: (store: CloudStore) => T): T {
  const store = CloudStore.open(dataDir);
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

export function formatTokens(tokens: readonly TokenSummary[]): string {
  if (tokens.length === 0) return 'no tokens';
  const status = (t: TokenSummary): string => {
    if (t.revoked !== null) return `revoked ${new Date(t.revoked).toISOString()}`;
    return t.expires === null ? 'active' : `active until ${new Date(t.expires).toISOString()}`;
  };
  const rows = [['name', 'role', 'site', 'created', 'status'], ...tokens.map((t) => [t.name, t.role, t.site ?? (t.role === 'pairing' ? '(all)' : '-'), new Date(t.created).toISOString(), status(t)])];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

export interface HubOptions {
  hub?: string;
  hubCa?: string;
  hubConnectionString?: string;
  registryConnectionString?: string;
}

/**
 * Where the companion finds IoT Hub. Connection strings (flags, or the environment, which keeps
 * them out of the process list) win over a hub.json; the registry one defaults to the hub one,
 * which then needs ServiceConnect + RegistryRead + RegistryWrite (a custom policy).
 */
export function hubSource(opts: HubOptions, env: Readonly<Record<string, string | undefined>>): HubSource {
  const service = opts.hubConnectionString ?? env.FIELDLINK_HUB_SERVICE_CONNECTION_STRING;
  const registry = opts.registryConnectionString ?? env.FIELDLINK_HUB_REGISTRY_CONNECTION_STRING ?? service;
  if (service === undefined && registry !== undefined) {
    throw new FieldlinkError('CONFIG_INVALID', {
      message: 'a registry connection string alone is not enough: give the service one too (--hub-connection-string or FIELDLINK_HUB_SERVICE_CONNECTION_STRING)',
    });
  }
  if (service !== undefined && registry !== undefined) {
    if (opts.hub !== undefined) throw new FieldlinkError('CONFIG_INVALID', { message: '--hub and a hub connection string exclude each other: give one' });
    return { kind: 'connection-strings', service, registry, ...(opts.hubCa ? { ca: readFileSync(opts.hubCa, 'utf8') } : {}) };
  }
  return { kind: 'file', hubJson: opts.hub ?? hubFilePath(DEFAULT_HUB_DATA_DIR) };
}

export interface CloudCliIo {
  stdout: (text: string) => void;
  now: () => number;
}

/**
 * `fieldlink cloud` (the companion's HTTP API on 127.0.0.1) and `fieldlink cloud token
 * create|list|revoke`, which work on the store file directly. `io` lets tests capture output.
 */
export function registerCloudCommands(program: Command, io: CloudCliIo = { stdout: (t) => void process.stdout.write(t), now: () => Date.now() }): void {
  const cloud = program
    .command('cloud')
    .description('run the cloud companion API and manage its tokens')
    .option('--data <dir>', 'data directory for the companion state (cloud.db)', DEFAULT_CLOUD_DATA_DIR)
    .option('--port <port>', 'port to listen on, on 127.0.0.1', port, 3000)
    .option('--hub <file>', "a local hub's hub.json (default: the local hub's, when no connection string is given)")
    .option('--hub-connection-string <cs>', 'IoT Hub service connection string (prefer FIELDLINK_HUB_SERVICE_CONNECTION_STRING: argv is visible to other users)')
    .option('--registry-connection-string <cs>', 'registry connection string, when the service one lacks RegistryRead/Write (default: the hub one)')
    .option('--hub-ca <file>', 'PEM CA to trust for the hub (a local hub reached by connection string)')
    .option('--no-locations', 'do not locate gateways from connection logs (saves the IP database: about 135 MB of memory)')
    .option('--public-url <url>', 'how phones reach the companion (pairing links), e.g. https://fieldlink.example.com; default: the request origin', companionUrl('--public-url'))
    .option('--log-level <level>', 'pino log level', 'info')
    .addHelpText(
      'after',
      `
IoT Hub: --hub FILE (a local hub), or the environment (keeps secrets out of the process list):
  FIELDLINK_HUB_SERVICE_CONNECTION_STRING   a policy with ServiceConnect (Azure's "service")
  FIELDLINK_HUB_REGISTRY_CONNECTION_STRING  a policy with RegistryRead + RegistryWrite ("registryReadWrite")`,
    )
    .action(async (opts: { data: string; port: number; logLevel: string; publicUrl?: string; locations: boolean } & HubOptions) => {
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel });
      const running = await startCloudServer({
        dataDir: opts.data,
        port: opts.port,
        log,
        hub: hubSource(opts, process.env),
        ...(opts.locations ? {} : { locations: false as const }),
        ...(opts.publicUrl === undefined ? {} : { app: { publicUrl: opts.publicUrl } }),
      });
      io.stdout(`cloud companion listening on ${running.url}  (OpenAPI: ${running.url}/docs)\n`);
      await shutdownSignal(log);
      await running.close();
    });

  // --data is taken from `cloud` (before or after the tool's name): one option, one default.
  const dataDir = (cmd: Command): string => (cmd.optsWithGlobals() as { data: string }).data;
  const token = cloud.command('token').description('manage API bearer tokens (shown once, stored hashed)');
  token
    .command('create')
    .description('create a token and print it (the only time it is shown)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`, role)
    .requiredOption('--name <name>', 'a unique name, recorded in the audit log', tokenName)
    .option('--site <site>', "pairing tokens: pair only with this site's gateways (tags.fieldlink.site)")
    .option('--all-sites', 'pairing tokens: pair with any gateway (say so explicitly)')
    .option('--expires-in <duration>', 'the token stops working after this long: 30m, 8h, 7d', duration)
    // Parsed with the options: a bad URL fails before any token is created.
    .option('--link <url>', "print a pairing link for this token: the companion's URL as phones reach it", companionUrl('--link'))
    .action((opts: { role: Role; name: string; site?: string; allSites?: boolean; expiresIn?: number; link?: string }, cmd: Command) => {
      if (opts.role === 'pairing' && (opts.site === undefined) === (opts.allSites !== true)) {
        throw new FieldlinkError('CONFIG_INVALID', { message: 'a pairing token needs --site SITE (its gateways only) or --all-sites' });
      }
      if (opts.role !== 'pairing' && (opts.site !== undefined || opts.allSites === true || opts.link !== undefined)) {
        throw new FieldlinkError('CONFIG_INVALID', { message: '--site, --all-sites and --link are for --role pairing' });
      }
      const issued = withStore(dataDir(cmd), (store) => {
        const now = io.now();
        const expiresAt = opts.expiresIn === undefined ? null : now + opts.expiresIn;
        const result = issueToken(store, { name: opts.name, role: opts.role, now, site: opts.site ?? null, expiresAt });
        store.appendAudit({
          ts: now,
          tokenName: 'cli',
          action: 'token.create',
          target: opts.name,
          result: 'ok',
          details: { role: opts.role, ...(opts.site === undefined ? {} : { site: opts.site }), ...(expiresAt === null ? {} : { expiresAt: new Date(expiresAt).toISOString() }) },
        });
        return result;
      });
      io.stdout(`${issued.token}\n`);
      const scope = [issued.record.site === null ? '' : `site ${issued.record.site}`, issued.record.expires === null ? '' : `expires ${new Date(issued.record.expires).toISOString()}`].filter(Boolean).join(', ');
      io.stdout(`# token "${issued.record.name}" (${issued.record.role}${scope ? `; ${scope}` : ''}); shown once, store it now: Authorization: Bearer <token>\n`);
      if (opts.link !== undefined) io.stdout(`# pairing link (secret; send it to the phone only): ${pairingLink(opts.link, issued.token)}\n`);
    });
  token
    .command('list')
    .description('list tokens (names, roles, status; never the tokens or their hashes)')
    .option('--json', 'one JSON array')
    .action((opts: { json?: boolean }, cmd: Command) => {
      const tokens = withStore(dataDir(cmd), (store) => store.listTokens());
      io.stdout(opts.json ? `${JSON.stringify(tokens)}\n` : `${formatTokens(tokens)}\n`);
    });
  token
    .command('revoke <name>')
    .description('revoke a token by name; requests with it get 401 from then on')
    .action((name: string, _opts: unknown, cmd: Command) => {
      withStore(dataDir(cmd), (store) => {
        const now = io.now();
        store.revokeToken(name, now);
        store.appendAudit({ ts: now, tokenName: 'cli', action: 'token.revoke', target: name, result: 'ok' });
      });
      io.stdout(`revoked token "${name}"\n`);
    });
}
