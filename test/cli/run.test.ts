import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import t from 'tap';
import { createProgram } from '../../cli/program.js';
import { formatCliError, runCli } from '../../cli/run.js';
import { FieldlinkError } from '../../common/errors.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

function captured(): { out: string[]; err: string[]; output: { stdout: (s: string) => void; stderr: (s: string) => void } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, output: { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) } };
}

/** A program whose subcommands fail the ways real ones can. */
function testProgram(): Command {
  const program = new Command('fieldlink');
  program.command('ok').action(() => undefined);
  program.command('fails').action(async () => {
    await Promise.resolve();
    throw new FieldlinkError('HUB_NOT_RUNNING', {
      message: 'no hub for .fieldlink/hub',
      cause: new Error('connect ECONNREFUSED 127.0.0.1:5671'),
    });
  });
  program.command('leaks').action(() => {
    throw new FieldlinkError('CONNECTION_STRING_INVALID', { message: 'bad: HostName=h;SharedAccessKey=c2VjcmV0' });
  });
  // Added the way a registrar might, after the program was set up: settings must still apply.
  program.addCommand(new Command('bug').action(() => {
    throw new TypeError('undefined is not a function');
  }));
  return program;
}

t.test('a FieldlinkError from an action prints message, code and cause, exit 1', async (t) => {
  const { err, output } = captured();
  const code = await runCli(['node', 'fieldlink', 'fails'], { program: testProgram(), output });
  t.equal(code, 1);
  t.equal(err.join(''), 'error: no hub for .fieldlink/hub [HUB_NOT_RUNNING]\n  caused by: connect ECONNREFUSED 127.0.0.1:5671\n');
});

t.test('secrets in error messages are scrubbed', async (t) => {
  const { err, output } = captured();
  t.equal(await runCli(['node', 'fieldlink', 'leaks'], { program: testProgram(), output }), 1);
  t.equal(err.join(''), 'error: bad: HostName=h;SharedAccessKey=[REDACTED] [CONNECTION_STRING_INVALID]\n');
});

t.test('an unexpected error prints its stack, exit 1, even on an added command', async (t) => {
  const { err, output } = captured();
  t.equal(await runCli(['node', 'fieldlink', 'bug'], { program: testProgram(), output }), 1);
  t.match(err.join(''), /^error: TypeError: undefined is not a function\n\s+at /);
});

t.test('success, usage errors and help', async (t) => {
  const ok = captured();
  t.equal(await runCli(['node', 'fieldlink', 'ok'], { program: testProgram(), output: ok.output }), 0);
  t.same(ok.err, []);

  const unknown = captured();
  t.equal(await runCli(['node', 'fieldlink', 'nope'], { program: testProgram(), output: unknown.output }), 1);
  t.match(unknown.err.join(''), /error: unknown command 'nope'/);

  const help = captured();
  t.equal(await runCli(['node', 'fieldlink', '--help'], { program: testProgram(), output: help.output }), 0);
  t.match(help.out.join(''), /Usage: fieldlink/);
});

t.test('the real program reports the package version and registers hub commands', async (t) => {
  const { out, output } = captured();
  t.equal(await runCli(['node', 'fieldlink', '--version'], { output }), 0);
  t.equal(out.join(''), `${pkg.version}\n`);
  t.equal(createProgram().name(), 'fieldlink');
});

t.test('formatCliError for non-errors', async (t) => {
  t.equal(formatCliError('plain string'), 'error: plain string');
});
