/**
 * `fieldlink doctor [--config FILE] [--json] [--timeout MS]`: can this gateway work? One line per
 * check, with the fix. Exit code 0 when no check failed (warnings allowed), 1 when one did, 2 for
 * a usage error.
 */
import { CommanderError, InvalidArgumentError, type Command } from 'commander';
import { defaultDoctorEnv, type DoctorEnv } from './env.js';
import { formatReport, reportJson, runDoctor } from './report.js';

const DEFAULT_CONFIG_PATH = '/etc/fieldlink/gateway.json';

export interface DoctorCliIo {
  stdout: (text: string) => void;
  env: () => DoctorEnv;
}

const defaultIo: DoctorCliIo = { stdout: (t) => void process.stdout.write(t), env: () => defaultDoctorEnv() };

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer of milliseconds');
  return n;
}

export function registerDoctorCommand(program: Command, io: DoctorCliIo = defaultIo): void {
  const cmd = program
    .command('doctor')
    .description('check that the gateway can work: config, serial devices, Bluetooth, clock, disk, IoT Hub, outbox (exit 1 when it cannot)')
    .option('--config <file>', 'gateway config file (JSON, or YAML for .yaml/.yml)', DEFAULT_CONFIG_PATH)
    .option('--json', 'print the report as JSON: { ok, checks: [{ id, title, status, summary, fix?, details? }] }')
    .option('--timeout <ms>', 'deadline of the IoT Hub connection and of each D-Bus call', positiveInt, 10_000)
    .action(async (opts: { config: string; json?: boolean; timeout: number }) => {
      const report = await runDoctor({ env: io.env(), configPath: opts.config, timeoutMs: opts.timeout });
      io.stdout(opts.json === true ? reportJson(report) : formatReport(report));
      if (!report.ok) throw new CommanderError(1, 'fieldlink.doctor.failed', 'gateway cannot work');
    });
  // Usage errors (unknown option, missing value) exit 2, so a script can tell them from "cannot work".
  const usageError = cmd.error.bind(cmd);
  cmd.error = (message, errorOptions) => usageError(message, { ...errorOptions, exitCode: 2 });
}
