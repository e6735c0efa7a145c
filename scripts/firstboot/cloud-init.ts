/**
 * cloud-init's user-data on the Raspberry Pi OS boot partition. Raspberry Pi OS since the
 * Trixie-based release (October 2025) runs cloud-init with the NoCloud data source: `user-data`,
 * `meta-data` and `network-config` on the FAT boot partition (/boot/firmware on the running
 * system). Raspberry Pi Imager writes the user, SSH keys and Wi-Fi there; provisioning keeps all
 * of it and adds one `runcmd` entry that runs our first-boot script
 * (scripts/firstboot/fieldlink-firstboot.sh, copied to fieldlink/firstboot.sh).
 *
 * runcmd runs once per instance, late in boot (cloud-final), as root.
 */
import YAML, { isSeq, type Document, type YAMLSeq } from 'yaml';
import { FieldlinkError } from '../../common/errors.js';

/** Where the script lands on the running Pi. */
export const FIRSTBOOT_PATH = '/boot/firmware/fieldlink/firstboot.sh';
/** The runcmd entry: an argv list, so no shell quoting is involved. */
const FIRSTBOOT_RUNCMD = ['sh', FIRSTBOOT_PATH] as const;

const HEADER = '#cloud-config';

function invalid(message: string, cause?: unknown): FieldlinkError {
  return new FieldlinkError('CONFIG_INVALID', { message: `user-data: ${message}`, ...(cause === undefined ? {} : { cause }) });
}

function isOurEntry(item: unknown): boolean {
  if (typeof item === 'string') return item.includes(FIRSTBOOT_PATH);
  return Array.isArray(item) && item.some((word) => word === FIRSTBOOT_PATH);
}

/**
 * `existing` user-data (or none) with the first-boot entry in `runcmd`, everything else kept
 * (comments included). Idempotent: an existing entry is not added twice. Throws CONFIG_INVALID
 * when the file is not `#cloud-config` (a shell script or MIME multipart user-data cannot be
 * merged safely) or is not a YAML mapping.
 */
export function mergeUserData(existing: string | undefined): string {
  const text = existing ?? '';
  if (text.trim() === '') {
    return `${HEADER}\n# Fieldlink first boot: installs /etc/fieldlink and the gateway service (see hardware/DEPLOY.md).\nruncmd:\n  - [${FIRSTBOOT_RUNCMD.join(', ')}]\n`;
  }
  const firstLine = text.replace(/^\uFEFF/, '').split(/\r?\n/, 1)[0]?.trimEnd() ?? '';
  if (firstLine !== HEADER) {
    throw invalid(`it must start with "${HEADER}" to be merged (it starts with ${JSON.stringify(firstLine.slice(0, 40))}); add the runcmd entry [${FIRSTBOOT_RUNCMD.join(', ')}] by hand`);
  }
  let doc: Document.Parsed;
  try {
    doc = YAML.parseDocument(text.replace(/^\uFEFF/, ''), { uniqueKeys: true });
  } catch (cause) {
    throw invalid(`not valid YAML: ${(cause as Error).message.split('\n')[0] ?? ''}`, cause);
  }
  if (doc.errors.length > 0) throw invalid(`not valid YAML: ${doc.errors[0]?.message.split('\n')[0] ?? ''}`);
  if (doc.contents === null) {
    doc.contents = doc.createNode({}) as unknown as Document.Parsed['contents'];
  }
  if (!YAML.isMap(doc.contents)) throw invalid('the document must be a mapping of cloud-config modules');

  const runcmd = doc.get('runcmd', true);
  if (runcmd === undefined || runcmd === null) {
    const seq = doc.createNode([]) as YAMLSeq;
    seq.add(doc.createNode([...FIRSTBOOT_RUNCMD], { flow: true }));
    doc.set('runcmd', seq);
  } else if (isSeq(runcmd)) {
    if ((runcmd.toJSON() as unknown[]).some(isOurEntry)) return text;
    runcmd.add(doc.createNode([...FIRSTBOOT_RUNCMD], { flow: true }));
  } else {
    throw invalid('runcmd must be a list');
  }
  // The header is a comment: `yaml` keeps it as the document's commentBefore.
  const out = doc.toString({ lineWidth: 0 });
  return out.startsWith(HEADER) ? out : `${HEADER}\n${out}`;
}
