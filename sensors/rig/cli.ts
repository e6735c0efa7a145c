import type { Command } from 'commander';
import { createLogger } from '../../common/log.js';
import { shutdownSignal } from '../../common/shutdown-signal.js';
import { startRig } from './rig.js';
import { loadScenarioFile } from './scenario.js';

interface ScenarioCliOptions {
  dir?: string;
  logLevel: string;
}

/** Registers `fieldlink emulate scenario <file>` under the `emulate` command (sensors/cli.ts). */
export function registerScenarioRig(emulate: Command): void {
  emulate
    .command('scenario')
    .description('start the wearables, thermostats and Firmata boards a scenario file (JSON or YAML) lists, run its fault timeline, and write the gateway config fragment that points at them')
    .argument('<file>', 'scenario file (.json, .yaml or .yml); see hardware/scenarios/demo.yaml')
    .option('--dir <dir>', 'where the fragment (gateway-sources.json), ptys and emitted logs go (default: the scenario\'s dir, else a new temporary directory)')
    .option('--log-level <level>', 'pino log level (to stderr)', 'info')
    .action(async (file: string, opts: ScenarioCliOptions) => {
      const scenario = loadScenarioFile(file);
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel, destination: process.stderr });
      const rig = await startRig(scenario, { log, source: file, ...(opts.dir === undefined ? {} : { dir: opts.dir }) });
      try {
        const counts = `${rig.thermostats.size} thermostat(s), ${rig.boards.size} board(s), ${rig.wearables.size} wearable(s)`;
        process.stdout.write(`rig ready: ${counts}\n`);
        process.stdout.write(`gateway config fragment: ${rig.fragmentPath}\n`);
        process.stdout.write(`emitted readings: ${rig.dir}/emitted/*.jsonl\n`);
        if (rig.busAddress !== undefined) process.stdout.write(`DBUS_SYSTEM_BUS_ADDRESS=${rig.busAddress}\n`);
        await shutdownSignal(log);
      } finally {
        await rig.stop();
      }
    });
}
