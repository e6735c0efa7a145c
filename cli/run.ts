import { Command, CommanderError } from 'commander';
import { isFieldlinkError } from '../common/errors.js';
import { redactSecrets } from '../common/log.js';
import { createProgram, registrarsFor } from './program.js';

export interface CliOutput {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export interface RunCliOptions {
  /** Defaults to the full `fieldlink` program; tests pass their own. */
  program?: Command;
  output?: Partial<CliOutput>;
}

function describeCauses(error: unknown): string[] {
  const lines: string[] = [];
  let cause = error instanceof Error ? error.cause : undefined;
  // Bounded: a cause chain can be cyclic.
  for (let depth = 0; cause !== undefined && depth < 5; depth++) {
    lines.push(`  caused by: ${cause instanceof Error ? cause.message : String(cause)}`);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return lines;
}

/** What the user sees for an error a subcommand threw; secrets are scrubbed like in logs. */
export function formatCliError(error: unknown): string {
  if (isFieldlinkError(error)) {
    return redactSecrets([`error: ${error.message} [${error.code}]`, ...describeCauses(error)].join('\n'));
  }
  // Anything else is a bug in Fieldlink, and the stack is what a bug report needs.
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return redactSecrets(`error: ${text}`);
}

/** Every subcommand must report through us instead of calling process.exit itself. */
function applyToAll(command: Command, output: CliOutput): void {
  command.exitOverride();
  command.configureOutput({ writeOut: output.stdout, writeErr: output.stderr });
  for (const sub of command.commands) applyToAll(sub, output);
}

/**
 * Run the command line and return the exit code instead of exiting, so tests can call it and
 * the entry point decides how the process ends.
 */
export async function runCli(argv: readonly string[], opts: RunCliOptions = {}): Promise<number> {
  const output: CliOutput = {
    stdout: opts.output?.stdout ?? ((text) => process.stdout.write(text)),
    stderr: opts.output?.stderr ?? ((text) => process.stderr.write(text)),
  };
  const program = opts.program ?? createProgram(await registrarsFor(argv));
  applyToAll(program, output);
  try {
    await program.parseAsync([...argv], { from: 'node' });
    return 0;
  } catch (error) {
    // Commander has already printed usage errors, help and the version; only its code is ours.
    if (error instanceof CommanderError) return error.exitCode;
    output.stderr(`${formatCliError(error)}\n`);
    return 1;
  }
}
