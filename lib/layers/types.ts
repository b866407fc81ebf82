import type { Readable } from 'node:stream';

/** Kinds of tar entry the flattener emits. */
export type EntryType = 'file' | 'link' | 'symlink' | 'directory' | 'character-device' | 'block-device' | 'fifo';

/** One entry of the merged root filesystem, with a path confined to the image root. */
export interface TarHeader {
  /**
   * Relative path without leading `./` or `/`, no `.`/`..` components, no trailing slash; the image
   * root itself is `.`. (`readTar` yields names as stored; `flatten` yields them normalised.)
   */
  name: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  size: number;
  mtime: Date;
  /** Symlink target (as stored, never resolved on the host) or hardlink target (a confined path). */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes from PAX `SCHILY.xattr.*` records, values as raw bytes. */
  xattrs?: Map<string, Buffer>;
}

/** An entry with its content; `body` is present for regular files and must be consumed before the next entry. */
export interface TarEntry {
  header: TarHeader;
  body?: Readable;
}

/** A layer to flatten: its digest (for messages) and a way to open its stored, possibly compressed, bytes. */
export interface LayerInput {
  digest: string;
  /** Expected sha256 of the uncompressed tar (the config's diff_id); verified when given. */
  diffId?: string;
  open(signal?: AbortSignal): Promise<Readable> | Readable;
}
