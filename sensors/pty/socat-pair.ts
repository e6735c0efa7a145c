/**
 * A pseudo-terminal pair from socat, the way every serial emulator here sits at the OS boundary
 * (../shared/sensor-emulation.md §2): the host opens `link`, the emulator opens `emuLink`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { FieldlinkError } from '../../common/errors.js';

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Spawns socat and resolves once both links exist (within 5 s). `onExit` hears an exit that
 * was not asked for (socat killed from outside) — not the one `stopSocat` causes.
 */
export async function startSocatPair(link: string, emuLink: string, onExit: (code: number | null, signal: NodeJS.Signals | null) => void): Promise<ChildProcess> {
  for (const path of [link, emuLink]) {
    // A link left by a killed run points nowhere: remove it. One that resolves is in use.
    if (!isSymlink(path)) continue;
    if (existsSync(path)) throw new FieldlinkError('EMULATOR_FAILED', { message: `${path} already exists: is another emulator using it?` });
    unlinkSync(path);
  }
  const child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${link}`, `pty,raw,echo=0,link=${emuLink}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    if (stderr.length < 4000) stderr += d;
  });
  let failure: unknown;
  child.once('error', (err) => (failure = err));
  child.once('exit', (code, signal) => {
    failure ??= new Error(`socat exited (${code ?? signal}): ${stderr.trim()}`);
    if (!stopping.has(child)) onExit(code, signal);
  });
  const until = Date.now() + 5000;
  while (!(existsSync(link) && existsSync(emuLink))) {
    if (failure !== undefined || Date.now() > until) {
      child.kill('SIGKILL');
      throw new FieldlinkError('EMULATOR_FAILED', { message: `socat did not create ${link}`, cause: failure });
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return child;
}

const stopping = new WeakSet<ChildProcess>();

/** SIGTERM, then SIGKILL after 2 s; resolves when socat is gone (the links go with it). */
export async function stopSocat(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  stopping.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}
