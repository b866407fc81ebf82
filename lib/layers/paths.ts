/** Path rules that keep every layer entry inside the image root. */
import { UnsafeLayerEntryError } from '../errors.js';

/** The normalised name of the image root itself. */
export const ROOT = '.';

/**
 * Normalises a tar entry path to `a/b/c` (no leading `./` or `/`, no `.` or empty components,
 * no trailing slash; the root is `.`). Rejects absolute paths, `..` components and NUL bytes,
 * because those could escape the image root when extracted.
 */
export function normalizeEntryPath(raw: string, digest: string): string {
  if (raw.includes('\0')) throw new UnsafeLayerEntryError(digest, raw, 'contains a NUL byte');
  if (raw.startsWith('/')) throw new UnsafeLayerEntryError(digest, raw, 'is an absolute path');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeLayerEntryError(digest, raw, 'has a ".." component');
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
