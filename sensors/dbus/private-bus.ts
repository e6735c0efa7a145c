import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FieldlinkError } from '../../common/errors.js';

/** A dbus-daemon of our own, for emulators (fake timedate1, fake BlueZ) and their tests. */
export interface PrivateBus {
  /** The D-Bus address clients connect to (`unix:path=…,guid=…`). */
  readonly address: string;
  /** Process id of the daemon's supervisor, which leads the process group the daemon runs in. */
  readonly pid: number | undefined;
  /** Kills the daemon and removes its temporary directory; safe to call twice. */
  stop(): Promise<void>;
}

export interface PrivateBusOptions {
  /** How long the daemon may take to print its address; 5000 ms by default. */
  readonly startTimeoutMs?: number;
  /**
   * Directory for the socket (`<dir>/bus`), so a test can stop the bus and start another at the
   * same address; it must exist and is left in place. Default: the bus's own temporary directory.
   */
  readonly socketDir?: string;
}

const xmlEscape = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/*
 * Like the system bus in that any connection may own any name and talk to any other (the real
 * system bus restricts both per service; our emulators need to own org.bluez or
 * org.freedesktop.timedate1). The socket is a path inside our own temporary directory: dbus-next
 * without its optional native `usocket` cannot connect to abstract sockets, which `unix:tmpdir=`
 * may choose on Linux. dbus-daemon refuses a config with a double hyphen inside an XML comment,
 * so this file has no comments.
 */
function busConfig(socketPath: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=${xmlEscape(socketPath)}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`;
}

/*
 * dbus-daemon runs under a small sh supervisor in its own process group, so that it cannot
 * outlive us:
 * - stdin watch: a background job holds the read end of a pipe whose write end only we have.
 *   When that pipe reaches end of file (stop() closes it, or this process dies in any way: a
 *   test runner's SIGTERM, SIGKILL, a crash) it kills the daemon and removes the temporary
 *   directory; the supervisor reaps both and exits. Node has no PR_SET_PDEATHSIG, and an 'exit'
 *   hook does not run when the process is killed by a signal.
 * - exit hook: this process exiting normally closes the pipe and removes the directory at once,
 *   rather than leaving both to the kernel closing our file descriptors.
 * A background job in sh gets /dev/null as its stdin, hence the copy of stdin on fd 3. The
 * watch ignores SIGTERM once it has started cleaning up, so the supervisor's `kill` (meant for
 * a watch still waiting, when the daemon died by itself) cannot cut the cleanup short.
 * A SIGKILL of the group is only the fallback when the supervisor does not go within 2 s (it
 * leaves the daemon a zombie for init to reap).
 */
const SUPERVISOR = [
  'exec 3<&0',
  'dbus-daemon "$@" 3<&- &',
  'daemon=$!',
  `( read -r _ <&3; trap '' TERM; kill "$daemon"; rm -rf -- "$FIELDLINK_BUS_DIR" ) >/dev/null 2>&1 &`,
  'watch=$!',
  'wait "$daemon"',
  'status=$?',
  'kill "$watch" 2>/dev/null',
  'wait "$watch" 2>/dev/null',
  'exit "$status"',
].join('\n');

/** What sh answers for a command it cannot find. */
const COMMAND_NOT_FOUND = 127;

/**
 * Starts `dbus-daemon` (Debian package `dbus`) on a socket in a fresh temporary directory and
 * resolves with its address once the daemon has printed it. The daemon dies with this process,
 * even without `stop()` (see SUPERVISOR), and does not keep this process alive by itself. Fails
 * with EMULATOR_FAILED when dbus-daemon is missing, exits early, or stays silent past the
 * deadline.
 */
export async function startPrivateBus(opts: PrivateBusOptions = {}): Promise<PrivateBus> {
  const startTimeoutMs = opts.startTimeoutMs ?? 5000;
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-dbus-'));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  const configFile = join(dir, 'bus.conf');
  writeFileSync(configFile, busConfig(join(opts.socketDir ?? dir, 'bus')));

  // Pipes, not 'inherit': a daemon orphaned by a killed test runner would otherwise hold the
  // runner's stdout open and hang the CI step.
  const child = spawn(
    'sh',
    ['-c', SUPERVISOR, 'fieldlink-private-bus', `--config-file=${configFile}`, '--nofork', '--nopidfile', '--print-address=1'],
    { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, FIELDLINK_BUS_DIR: dir } },
  );
  let exited = false;
  let exitCode: number | null = null;
  const exitedPromise = new Promise<void>((resolve) => {
    const done = (): void => {
      exited = true;
      resolve();
    };
    child.once('exit', (code) => {
      exitCode = code;
      done();
    });
    // A spawn that failed (no sh) emits 'error' and no 'exit'.
    child.once('error', () => {
      if (child.pid === undefined) done();
    });
  });
  const killGroup = (signal: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      // The supervisor, the daemon and the stdin watch: the whole group.
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  const killOnExit = (): void => {
    child.stdin.destroy();
    removeDir();
  };
  process.on('exit', killOnExit);
  // Nothing is ever written; the pipe exists to reach end of file when we go (see SUPERVISOR).
  child.stdin.on('error', () => undefined);

  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    // "Failed to set fd limit" is harmless; keep the tail for error messages only.
    stderr = (stderr + chunk).slice(-2000);
  });

  const fail = (message: string, cause?: unknown): FieldlinkError =>
    new FieldlinkError('EMULATOR_FAILED', {
      message: stderr.trim() === '' ? message : `${message}: ${stderr.trim()}`,
      cause,
      details: { program: 'dbus-daemon', configFile },
    });

  const cleanup = async (): Promise<void> => {
    if (!exited) {
      // End of file on its stdin is the supervisor's signal to stop the daemon and reap it.
      child.stdin.destroy();
      const timer = setTimeout(() => killGroup('SIGKILL'), 2000);
      await exitedPromise;
      clearTimeout(timer);
    }
    child.stdin.destroy();
    process.off('exit', killOnExit);
    removeDir();
  };

  let address: string;
  try {
    address = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(fail(`dbus-daemon printed no address within ${startTimeoutMs} ms`)), startTimeoutMs);
      const settle = (): void => clearTimeout(timer);
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
        const newline = out.indexOf('\n');
        if (newline < 0) return;
        settle();
        resolve(out.slice(0, newline).trim());
      });
      child.once('error', (e: Error) => {
        settle();
        reject(fail(`sh could not be started to run dbus-daemon: ${e.message}`, e));
      });
      // 'exit' may come before the last stderr chunk; 'close' waits for the pipes.
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
        settle();
        const why = (code ?? exitCode) === COMMAND_NOT_FOUND
          ? 'dbus-daemon is not installed (apt-get install dbus)'
          : `dbus-daemon exited before printing its address (code ${code}, signal ${signal})`;
        reject(fail(why));
      });
    });
  } catch (e) {
    await cleanup();
    throw e;
  }

  // A bus left running by mistake must not keep this process alive; the exit hook ends it.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();

  let stopping: Promise<void> | undefined;
  return {
    address,
    pid: child.pid,
    stop: () => (stopping ??= cleanup()),
  };
}
