import type { Readable } from 'node:stream';

/** Reports bytes as they land. */
export type ProgressFn = (bytesSoFar: number) => void;

export interface IngestOptions {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
  /** How many times a cut-short stream is resumed from where it stopped (default 3). */
  retries?: number;
  /**
   * Download and verify even when the blob is already stored (default false), e.g. when the
   * caller has not yet shown they can obtain it.
   */
  refetch?: boolean;
}

/**
 * Opens the blob's bytes starting at `offset`. Called again after a transfer breaks,
 * so a resumed download continues rather than starting over.
 */
export type BlobOpener = (offset: number, signal?: AbortSignal) => Promise<Readable>;

/** Content-addressed storage: a blob is stored once under its digest, whoever asked for it. */
export interface BlobStore {
  has(digest: string): Promise<boolean>;
  /** Local path of a stored blob, for readers that want a file. */
  path(digest: string): string;
  open(digest: string): Readable;
  /**
   * Stores a blob, verifying its size and digest while streaming; a mismatch leaves nothing
   * behind. Returns immediately if the blob is already stored.
   */
  ingest(digest: string, size: number, open: BlobOpener, opts?: IngestOptions): Promise<{ cached: boolean }>;
  delete(digest: string): Promise<void>;
  /** Removes partial files left by dead processes. */
  sweep(): Promise<void>;
}
