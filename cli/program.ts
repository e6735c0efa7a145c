import { readFileSync } from 'node:fs';
import { Command } from 'commander';

/**
 * Each folder that owns subcommands exports one of these; this file only lists them, so the
 * command line never learns how a subcommand works.
 */
export type CommandRegistrar = (program: Command) => void;

/**
 * `emulate`: the sensor emulators (sensors/) and the fleet connection-history generator, which
 * lives in cloud/ (it needs the geolocation database) where sensors/ may not reach.
 */
async function loadEmulateCommands(): Promise<CommandRegistrar> {
  const [sensors, fleet] = await Promise.all([import('../sensors/cli.js'), import('../cloud/src/locations/emulate-fleet-cli.js')]);
  return (program) => {
    sensors.registerEmulateCommands(program);
    const emulate = program.commands.find((c) => c.name() === 'emulate');
    if (emulate === undefined) throw new Error('sensors/cli.js did not register the emulate command');
    fleet.registerFleetHistoryEmulator(emulate);
  };
}

/**
 * Top-level commands and where they live, loaded on demand: `fieldlink gateway` on a Pi must not
 * pay the memory of the local hub's server code (fastify, rhea, node-forge) it never runs.
 */
export const commandModules: readonly { readonly name: string; readonly load: () => Promise<CommandRegistrar> }[] = [
  { name: 'hub', load: async () => (await import('../cloud/hub/cli.js')).registerHubCommands },
  { name: 'cloud', load: async () => (await import('../cloud/src/cli.js')).registerCloudCommands },
  { name: 'gateway', load: async () => (await import('../gateway/src/cli.js')).registerGatewayCommand },
  { name: 'emulate', load: loadEmulateCommands },
  { name: 'demo', load: async () => (await import('./demo.js')).registerDemoCommand },
  { name: 'provision', load: async () => (await import('../scripts/provision/cli.js')).registerProvisionCommand },
  { name: 'doctor', load: async () => (await import('../scripts/doctor/cli.js')).registerDoctorCommand },
];

/** The registrars `argv` needs: the named command's only, or all of them (help, unknown command). */
export async function registrarsFor(argv: readonly string[]): Promise<CommandRegistrar[]> {
  const first = argv.slice(2).find((a) => !a.startsWith('-'));
  const chosen = commandModules.filter((m) => m.name === first);
  return Promise.all((chosen.length > 0 ? chosen : commandModules).map((m) => m.load()));
}

function packageVersion(): string {
  // Read at runtime rather than imported: dist/cli/program.js sits two levels below the root,
  // and importing package.json would copy it into dist/ under a different path.
  const url = new URL('../../package.json', import.meta.url);
  const pkg = JSON.parse(readFileSync(url, 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

export function createProgram(registrars: readonly CommandRegistrar[] = []): Command {
  const program = new Command('fieldlink')
    .description('Fieldlink: edge gateway, cloud companion and local IoT Hub for sensor fleets')
    .version(packageVersion());
  for (const register of registrars) register(program);
  return program;
}
