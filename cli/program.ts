import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerHubCommands } from '../cloud/hub/cli.js';
import { registerEmulateCommands } from '../sensors/serial-thermostat/cli.js';
import { registerGatewayCommand } from '../gateway/src/cli.js';
import { registerDemoCommand } from './demo.js';

/**
 * Each folder that owns subcommands exports one of these; this file only lists them, so the
 * command line never learns how a subcommand works.
 */
export type CommandRegistrar = (program: Command) => void;

export const commandRegistrars: readonly CommandRegistrar[] = [registerHubCommands, registerGatewayCommand, registerEmulateCommands, registerDemoCommand];

function packageVersion(): string {
  // Read at runtime rather than imported: dist/cli/program.js sits two levels below the root,
  // and importing package.json would copy it into dist/ under a different path.
  const url = new URL('../../package.json', import.meta.url);
  const pkg = JSON.parse(readFileSync(url, 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

export function createProgram(registrars: readonly CommandRegistrar[] = commandRegistrars): Command {
  const program = new Command('fieldlink')
    .description('Fieldlink: edge gateway, cloud companion and local IoT Hub for sensor fleets')
    .version(packageVersion());
  for (const register of registrars) register(program);
  return program;
}
