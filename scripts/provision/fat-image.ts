/**
 * Writing into the FAT boot partition of a Raspberry Pi OS image file without mounting it and
 * without root: the partition is found in the MBR (or GPT), then Debian's mtools address it as
 * `IMAGE@@OFFSET`. Compressed images (`.img.xz`, as Raspberry Pi ships them) are unpacked first,
 * with progress, since they are gigabytes.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, openSync, readSync, closeSync, statSync } from 'node:fs';
import { FieldlinkError } from '../../common/errors.js';

const SECTOR = 512;
/** MBR partition types of FAT filesystems (FAT12/16/32, CHS and LBA). */
const FAT_TYPES = new Set([0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e]);
/** GPT "Microsoft basic data" and "EFI system" type GUIDs (as stored, mixed-endian). */
const GPT_FAT_TYPES = new Set(['a2a0d0ebe5b9334487c068b6b72699c7', '28732ac11ff8d211ba4b00a0c93ec93b']);

function imageError(file: string, why: string, cause?: unknown): FieldlinkError {
  return new FieldlinkError('CONFIG_INVALID', { message: `${file}: ${why}`, ...(cause === undefined ? {} : { cause }) });
}

function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = readSync(fd, buf, 0, length, offset);
  return buf.subarray(0, n);
}

/** Byte offset of the first FAT partition (the boot partition on Raspberry Pi OS images). */
export function bootPartitionOffset(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw imageError(file, `cannot open the image (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
  }
  try {
    const mbr = readAt(fd, 0, SECTOR);
    if (mbr.length < SECTOR || mbr[510] !== 0x55 || mbr[511] !== 0xaa) throw imageError(file, 'not a disk image: no partition table (MBR signature missing)');
    const entries = [0, 1, 2, 3].map((i) => {
      const e = mbr.subarray(446 + i * 16, 446 + (i + 1) * 16);
      return { type: e[4] ?? 0, start: e.readUInt32LE(8), sectors: e.readUInt32LE(12) };
    });
    if (entries.some((e) => e.type === 0xee)) return gptFatOffset(fd, file);
    const fat = entries.find((e) => FAT_TYPES.has(e.type) && e.sectors > 0);
    if (!fat) throw imageError(file, `no FAT partition in the MBR (types: ${entries.map((e) => `0x${e.type.toString(16)}`).join(', ')})`);
    return fat.start * SECTOR;
  } finally {
    closeSync(fd);
  }
}

function gptFatOffset(fd: number, file: string): number {
  const header = readAt(fd, SECTOR, 92);
  if (header.subarray(0, 8).toString('latin1') !== 'EFI PART') throw imageError(file, 'protective MBR but no GPT header');
  const entriesLba = Number(header.readBigUInt64LE(72));
  const count = header.readUInt32LE(80);
  const size = header.readUInt32LE(84);
  const table = readAt(fd, entriesLba * SECTOR, Math.min(count, 128) * size);
  for (let i = 0; i * size < table.length; i++) {
    const e = table.subarray(i * size, (i + 1) * size);
    if (GPT_FAT_TYPES.has(e.subarray(0, 16).toString('hex'))) return Number(e.readBigUInt64LE(32)) * SECTOR;
  }
  throw imageError(file, 'no FAT (basic data / EFI) partition in the GPT');
}

export interface Mtools {
  mkdir(dir: string): Promise<void>;
  /** Copies a local file to `dest` (`::/path`) on the partition, replacing it. */
  put(local: string, dest: string): Promise<void>;
  /** A file's content, or undefined when it does not exist. */
  read(path: string): Promise<string | undefined>;
  list(dir: string): Promise<string>;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    // mtools checks the geometry of what it opens; an image file has none worth checking.
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MTOOLS_SKIP_CHECK: '1', MTOOLS_NO_VFAT: '0' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new FieldlinkError('CONFIG_INVALID', { message: `${cmd} not found: install mtools (apt-get install mtools)`, cause: err }) : err),
    );
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** mtools on the partition at `offset` of `image`. */
export function mtoolsOn(image: string, offset: number): Mtools {
  const drive = `${image}@@${offset}`;
  const must = async (cmd: string, args: string[], what: string): Promise<Run> => {
    const r = await run(cmd, ['-i', drive, ...args]);
    if (r.code !== 0) throw new FieldlinkError('CONFIG_INVALID', { message: `${what} in ${image}: ${r.stderr.trim() || `${cmd} exited ${r.code}`}` });
    return r;
  };
  return {
    async mkdir(dir) {
      const r = await run('mmd', ['-i', drive, dir]);
      if (r.code !== 0 && !/exists/i.test(r.stderr)) throw new FieldlinkError('CONFIG_INVALID', { message: `cannot create ${dir} in ${image}: ${r.stderr.trim()}` });
    },
    async put(local, dest) {
      await must('mcopy', ['-o', '-n', local, dest], `cannot write ${dest}`);
    },
    async read(path) {
      const r = await run('mtype', ['-i', drive, path]);
      return r.code === 0 ? r.stdout : undefined;
    },
    async list(dir) {
      return (await must('mdir', ['-b', dir], `cannot list ${dir}`)).stdout;
    },
  };
}

export type Progress = (done: number, total: number | undefined) => void;

/** Uncompressed size of an .xz file, from `xz --robot --list` (undefined if xz cannot say). */
async function xzSize(file: string): Promise<number | undefined> {
  const r = await run('xz', ['--robot', '--list', file]);
  const totals = r.stdout.split('\n').find((l) => l.startsWith('totals'));
  const size = totals?.split('\t')[4];
  return size ? Number(size) : undefined;
}

/** Unpacks `file.xz` to `dest`, reporting bytes written; `xz` from xz-utils does the work. */
export async function unpackXz(file: string, dest: string, progress: Progress): Promise<void> {
  const total = await xzSize(file);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('xz', ['-dc', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(dest, { mode: 0o600 });
    let done = 0;
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.stdout.on('data', (c: Buffer) => {
      done += c.length;
      progress(done, total);
    });
    child.stdout.pipe(out);
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new FieldlinkError('CONFIG_INVALID', { message: 'xz not found: install xz-utils', cause: err }) : err),
    );
    child.on('close', (code) => {
      out.end(() => (code === 0 ? resolve() : reject(imageError(file, `xz could not unpack it: ${stderr.trim() || `exit ${code}`}`))));
    });
  });
  progress(statSync(dest).size, total);
}
