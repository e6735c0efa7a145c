import type { Command } from 'commander';
import { registerWearablesEmulator } from './ble/emulator/cli.js';
import { registerBoardEmulator } from './firmata/cli.js';
import { registerScenarioRig } from './rig/cli.js';
import { registerThermostatEmulator } from './serial-thermostat/cli.js';

/** `fieldlink emulate …`: one subcommand per sensor family, each at the OS boundary its driver uses. */
export function registerEmulateCommands(program: Command): void {
  const emulate = program.command('emulate').description('run a sensor emulator on the OS boundary its driver uses');
  registerThermostatEmulator(emulate);
  registerWearablesEmulator(emulate);
  registerBoardEmulator(emulate);
  registerScenarioRig(emulate);
}
