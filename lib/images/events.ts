import type { ImageInfo } from './image-info.js';

/** How a pull ended: built anew, replaced an older version of the name, or nothing to do. */
export type PullStatus = 'pulled' | 'updated' | 'up-to-date';

export interface PullResult {
  status: PullStatus;
  image: ImageInfo;
  /** Layers fetched from the registry in this pull (the rest came from the blob cache). */
  downloadedLayers: number;
  cachedLayers: number;
  bytesDownloaded: number;
}

export interface LayerProgress {
  digest: string;
  /** Position in the manifest, bottom layer first. */
  index: number;
  size: number;
  /** Bytes present so far. */
  current: number;
  status: 'waiting' | 'cached' | 'downloading' | 'done';
}

/** Typed progress events of `ImageStore.pull`. */
export type PullEvents = {
  resolving: (e: { reference: string }) => void;
  resolved: (e: { reference: string; digest: string; platform: string; layers: number; totalBytes: number }) => void;
  layer: (e: LayerProgress) => void;
  converting: (e: { builder: string }) => void;
  done: (e: PullResult) => void;
};
