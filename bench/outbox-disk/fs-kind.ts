/*
 * Which file system a directory is on, so a disk benchmark can refuse a RAM-backed one: on tmpfs
 * nothing reaches a block device and /proc/self/io write_bytes stays 0.
 */
import { readFileSync, realpathSync, statfsSync } from 'node:fs';

/** statfs f_type magics of file systems that keep their data in RAM (linux/magic.h). */
const RAM_MAGICS = new Map<number, string>([
  [0x01021994, 'tmpfs'],
  [0x858458f6, 'ramfs'],
]);

export interface FileSystemInfo {
  /** From /proc/mounts (longest mount point that contains the path), else the statfs magic. */
  readonly type: string;
  readonly mountPoint: string;
  readonly source: string;
  readonly ramBacked: boolean;
}

/** /proc/mounts escapes spaces and the like as octal (\040). */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function fileSystemOf(dir: string): FileSystemInfo {
  const path = realpathSync(dir);
  const magic = Number(statfsSync(path).type);
  let best: { mountPoint: string; source: string; type: string } | undefined;
  try {
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [source, mp, type] = line.split(' ');
      if (source === undefined || mp === undefined || type === undefined) continue;
      const mountPoint = unescape(mp);
      const inside = path === mountPoint || path.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`);
      if (inside && (best === undefined || mountPoint.length >= best.mountPoint.length)) best = { mountPoint, source: unescape(source), type };
    }
  } catch {
    // No /proc/mounts (not Linux): the statfs magic alone decides.
  }
  const ramType = RAM_MAGICS.get(magic);
  return {
    type: best?.type ?? ramType ?? `0x${magic.toString(16)}`,
    mountPoint: best?.mountPoint ?? '?',
    source: best?.source ?? '?',
    ramBacked: ramType !== undefined || best?.type === 'tmpfs' || best?.type === 'ramfs',
  };
}
