/**
 * `fieldlink gateway --config FILE`: the firmware's main process (systemd runs it on the Pi).
 * SIGTERM/SIGINT stop it gracefully: pending readings committed, uplink closed.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { createLogger } from '../../common/log.js';
import { shutdownSignal } from '../../common/shutdown-signal.js';
import type { GatewayRuntime, GatewayStatus } from './app/gateway.js';
import { loadGatewayConfig } from './config/load-config.js';
import { startGatewayFromConfig } from './main.js';

export function firmwareVersion(): string {
  // dist/gateway/src/cli.js sits three levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

/** One line for a terminal: what a field engineer glances at. */
export function formatStatus(s: GatewayStatus, nowMs: number): string {
  const ago = s.lastCheckInMs === undefined ? 'never' : `${Math.max(0, Math.round((nowMs - s.lastCheckInMs) / 1000))} s ago`;
  return [
    `power ${s.phase.padEnd(7)}`,
    `clock ${s.clockTrusted ? 'trusted' : 'UNTRUSTED'}`,
    `outbox ${s.outboxDepth ?? '?'}`,
    `committed ${s.readingsCommitted}`,
    `sent ${s.readingsSent} in ${s.messagesSent} msgs`,
    `last check-in ${ago}`,
    `config v${s.configVersion}${s.configStatus === 'rejected' ? ' (latest REJECTED)' : ''}`,
  ].join(' | ');
}

/** Prints the status line every `everyMs` until stopped; returns the stop function. */
export function printStatusLines(rt: GatewayRuntime, everyMs: number, write: (line: string) => void): () => void {
  const timer = setInterval(() => {
    void rt
      .outboxStats()
      .catch(() => undefined)
      .then(() => write(formatStatus(rt.status(), Date.now())));
  }, everyMs);
  return () => clearInterval(timer);
}

export function registerGatewayCommand(program: Command): void {
  program
    .command('gateway')
    .description('run the gateway: sample the configured sensors, buffer readings, forward them to IoT Hub on its standby schedule')
    .requiredOption('--config <file>', 'gateway config file (JSON, or YAML for .yaml/.yml); see hardware/gateway.example.json')
    .option('--log-level <level>', 'pino log level', 'info')
    .option('--status-every <ms>', 'print a status line to stderr this often (0: never)', (v) => Number(v), 0)
    .action(async (opts: { config: string; logLevel: string; statusEvery: number }) => {
      const log = createLogger({ name: 'fieldlink-gateway', level: opts.logLevel });
      const config = loadGatewayConfig(opts.config);
      const rt = await startGatewayFromConfig(config, { log, firmwareVersion: firmwareVersion() });
      const stopStatus = opts.statusEvery > 0 ? printStatusLines(rt, opts.statusEvery, (l) => process.stderr.write(`${l}\n`)) : () => undefined;
      // `systemctl kill -s USR1 fieldlink-gateway` (or the check-in button's script): check in now.
      const onWake = (): void => {
        log.info('local wake request (SIGUSR1)');
        rt.wakeNow();
      };
      // `systemctl kill -s USR2 fieldlink-gateway` (or a pairing button's script): pairing mode.
      const forS = config.pairingMode.forS;
      const onPairingMode = (): void => {
        log.info({ forS }, 'pairing mode requested (SIGUSR2)');
        rt.pairingMode(forS);
      };
      process.on('SIGUSR1', onWake);
      process.on('SIGUSR2', onPairingMode);
      await shutdownSignal(log);
      process.off('SIGUSR1', onWake);
      process.off('SIGUSR2', onPairingMode);
      stopStatus();
      await rt.stop();
    });
}
