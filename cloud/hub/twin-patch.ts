import { HubError } from './hub-errors.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };
export type Metadata = { [key: string]: Json };

// IoT Hub's twin limits (docs "Understand device twins": tags 8 KB, desired and reported
// 32 KB each, nesting depth 10, keys up to 1 KB without '.', '$' or ' ').
export const TWIN_SECTION_MAX_BYTES = 32 * 1024;
export const TAGS_MAX_BYTES = 8 * 1024;
const MAX_DEPTH = 10;
const MAX_KEY_BYTES = 1024;
const MAX_STRING_BYTES = 4096;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Rejects what IoT Hub rejects in a twin patch, naming the offending path. */
export function validatePatch(patch: unknown, section: string): JsonObject {
  if (!isObject(patch)) throw new HubError('ArgumentInvalid', `${section} patch must be a JSON object`);
  // depth counts nested objects and arrays below the section: tags.one...ten.property is 10.
  const walk = (value: unknown, path: string, depth: number): void => {
    if ((Array.isArray(value) || isObject(value)) && depth > MAX_DEPTH) {
      throw new HubError('ArgumentInvalid', `${path}: nesting deeper than ${MAX_DEPTH} levels`);
    }
    if (typeof value === 'string') {
      if (Buffer.byteLength(value) > MAX_STRING_BYTES) {
        throw new HubError('ArgumentInvalid', `${path}: string longer than ${MAX_STRING_BYTES} bytes`);
      }
      return;
    }
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new HubError('ArgumentInvalid', `${path}: number is not finite`);
    }
    if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, `${path}[${i}]`, depth + 1));
      return;
    }
    if (isObject(value)) {
      for (const [key, child] of Object.entries(value)) {
        if (key.length === 0 || /[.$ ]/.test(key) || Buffer.byteLength(key) > MAX_KEY_BYTES) {
          throw new HubError('ArgumentInvalid', `${path}: invalid property name "${key.slice(0, 64)}" (no '.', '$' or ' ', 1 KB at most)`);
        }
        walk(child, `${path}.${key}`, depth + 1);
      }
    }
  };
  walk(patch, section, 0);
  return patch;
}

/**
 * JSON merge patch (null deletes) applied to a copy of `target`, with IoT Hub's `$metadata`
 * kept alongside: every touched node records `$lastUpdated` (and `$lastUpdatedVersion` for
 * desired properties).
 */
export function mergeWithMetadata(
  target: JsonObject,
  meta: Metadata,
  patch: JsonObject,
  stamp: { lastUpdated: string; version?: number },
): { value: JsonObject; meta: Metadata } {
  const value = structuredClone(target);
  const metadata = structuredClone(meta);
  const mark = (): JsonObject => {
    const m: JsonObject = { $lastUpdated: stamp.lastUpdated };
    if (stamp.version !== undefined) m.$lastUpdatedVersion = stamp.version;
    return m;
  };
  const apply = (dst: JsonObject, dstMeta: Metadata, src: JsonObject): void => {
    Object.assign(dstMeta, mark());
    for (const [key, v] of Object.entries(src)) {
      if (v === null) {
        delete dst[key];
        delete dstMeta[key];
      } else if (isObject(v)) {
        const child = dst[key];
        const next: JsonObject = isObject(child) ? child : {};
        const childMeta = dstMeta[key];
        const nextMeta: Metadata = isObject(childMeta) ? childMeta : {};
        apply(next, nextMeta, v);
        dst[key] = next;
        dstMeta[key] = nextMeta;
      } else {
        dst[key] = v;
        dstMeta[key] = mark();
      }
    }
  };
  apply(value, metadata, patch);
  return { value, meta: metadata };
}

/** Replaces a whole section (PUT semantics), rebuilding metadata for every node. */
export function replaceWithMetadata(
  next: JsonObject,
  stamp: { lastUpdated: string; version?: number },
): { value: JsonObject; meta: Metadata } {
  return mergeWithMetadata({}, {}, next, stamp);
}

export function sectionSize(value: JsonObject): number {
  return Buffer.byteLength(JSON.stringify(value));
}
