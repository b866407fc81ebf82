import PQueue from 'p-queue';
import { throwIfAborted } from '../errors.js';
import type { Descriptor, ImageSource } from '../oci/types.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { LayerProgress } from './events.js';

export interface FetchLayersOptions {
  /** Whose pull this is: cached blobs are reused only for users who fetched them before. */
  owner: string;
  signal?: AbortSignal;
  /** Layers downloaded at once (default 3). */
  concurrency?: number;
  onLayer?: (e: LayerProgress) => void;
}

export interface FetchLayersResult {
  downloaded: number;
  cached: number;
  bytesDownloaded: number;
}

/** Throttle per-layer byte events: a progress bar needs a few a second, not one per chunk. */
const PROGRESS_INTERVAL_MS = 100;

/**
 * Brings every layer into the blob cache, several at once, skipping those already there.
 * Each blob is verified against its digest before it becomes visible in the cache.
 */
export async function fetchLayers(
  source: ImageSource,
  layers: Descriptor[],
  blobs: BlobStore,
  metadata: MetadataStore,
  opts: FetchLayersOptions,
): Promise<FetchLayersResult> {
  const queue = new PQueue({ concurrency: opts.concurrency ?? 3 });
  const result: FetchLayersResult = { downloaded: 0, cached: 0, bytesDownloaded: 0 };
  // The first failure aborts the siblings, so a bad layer does not wait for big good ones.
  const local = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, local.signal]) : local.signal;
  layers.forEach((l, index) => opts.onLayer?.({ digest: l.digest, index, size: l.size, current: 0, status: 'waiting' }));
  const jobs = layers.map((layer, index) =>
    queue.add(async () => {
      throwIfAborted(signal);
      let last = 0;
      // Another user's cached copy proves nothing about this caller's access: they download it once too.
      const owned = await metadata.blobOwnedBy(layer.digest, opts.owner);
      const { cached } = await blobs.ingest(layer.digest, layer.size, (offset, s) => source.openBlob(layer, { offset, signal: s }), {
        signal,
        refetch: !owned,
        onProgress(current) {
          const now = Date.now();
          if (now - last < PROGRESS_INTERVAL_MS) return;
          last = now;
          opts.onLayer?.({ digest: layer.digest, index, size: layer.size, current, status: 'downloading' });
        },
      });
      await metadata.recordBlob({ digest: layer.digest, size: layer.size, mediaType: layer.mediaType }, opts.owner);
      if (cached) result.cached++;
      else {
        result.downloaded++;
        result.bytesDownloaded += layer.size;
      }
      opts.onLayer?.({ digest: layer.digest, index, size: layer.size, current: layer.size, status: cached ? 'cached' : 'done' });
    }),
  );
  try {
    const settled = await Promise.allSettled(jobs.map((j) => j.catch((err) => { local.abort(); throw err; })));
    const failures = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => s.reason);
    // Report the root cause, not the sibling aborts it triggered.
    const root = failures.find((e) => (e as { code?: string }).code !== 'ABORTED') ?? failures[0];
    if (root) throw root;
  } finally {
    queue.clear();
  }
  return result;
}
