/** Path rules that keep every layer entry inside the image root. */
import { UnsafeLayerEntryError } from '../errors.js';

/**
 * A path (or any image-supplied text) made safe for a one-line message: control characters,
 * quotes and backslashes escaped as in JSON, without the surrounding quotes. Image content can
 * hold newlines and terminal escapes.
 */
export function escapeText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(s).slice(1, -1).replace(/[\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The normalised name of the image root itself. */
export const ROOT = '.';

/**
 * Normalises a tar entry path to `a/b/c` (no leading `./` or `/`, no `.` or empty components,
 * no trailing slash; the root is `.`). Rejects absolute paths, `..` components and NUL bytes,
 * because those could escape the image root when extracted.
 */
export function normalizeEntryPath(raw: string, digest: string): string {
  if (raw.includes('\0')) throw new UnsafeLayerEntryError(digest, escapeText(raw), 'contains a NUL byte');
  if (raw.startsWith('/')) throw new UnsafeLayerEntryError(digest, escapeText(raw), 'is an absolute path');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeLayerEntryError(digest, escapeText(raw), 'has a ".." component');
  return parts.length === 0 ? ROOT : parts.join('/');
}

/** The parent of a normalised path (`.` for top-level names and for the root). */
export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i === -1 ? ROOT : path.slice(0, i);
}

/** The last component of a normalised path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Joins a normalised directory and a single name. */
export function joinPath(dir: string, name: string): string {
  return dir === ROOT ? name : `${dir}/${name}`;
}

/** Strict ancestors of a normalised path, nearest last, excluding the root: `a/b/c` → `a`, `a/b`. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  if (path === ROOT) return out;
  let i = path.indexOf('/');
  while (i !== -1) {
    out.push(path.slice(0, i));
    i = path.indexOf('/', i + 1);
  }
  return out;
}
