import type { TarEntry } from '../layers/types.js';

export interface Ext4BuildOptions {
  signal?: AbortSignal;
  /** Free space to leave beyond the content, as a fraction of the content size (default 0.25). */
  headroom?: number;
  /** Smallest image to produce, in bytes (default 64 MiB). */
  minSize?: number;
  /** Filesystem label (max 16 bytes). */
  label?: string;
  /** Directory for scratch space; must be private to the caller. */
  tmpDir: string;
}

export interface Ext4BuildResult {
  /** Size of the image file in bytes. */
  size: number;
  /** sha256 of the image file, `sha256:<hex>`. */
  digest: string;
  /** Bytes of file content written into the filesystem. */
  contentBytes: number;
  /** Number of entries written. */
  entries: number;
}

/** Turns a merged root filesystem stream into an ext4 image file. Pluggable: mke2fs-based now, a native writer later. */
export interface Ext4Builder {
  readonly name: string;
  build(entries: AsyncIterable<TarEntry>, outPath: string, opts: Ext4BuildOptions): Promise<Ext4BuildResult>;
}
