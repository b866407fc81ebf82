import type { RuntimeConfig } from '../oci/types.js';
import { formatPlatform } from '../oci/platform.js';
import type { ImageRecord } from '../storage/metadata-store.js';

/** How an image relates to the caller. */
export type ImageScope = 'private' | 'shared' | 'system';

/** What callers see of an image. Host paths are deliberately absent. */
export interface ImageInfo {
  id: string;
  name: string;
  /** Owning user; `''` for system images. */
  owner: string;
  scope: ImageScope;
  /** Where it came from, e.g. `docker.io/library/python:3.12`. */
  source: string;
  /** `pull`, `import`, `save` or `tier`. */
  origin: string;
  /** Digest of the manifest it was built from. */
  digest: string;
  platform: string;
  /** Bytes of the ext4 image file. */
  size: number;
  /** sha256 of the ext4 image file. */
  fileDigest: string;
  layers: string[];
  config: RuntimeConfig;
  created: Date;
}

export function toImageInfo(r: ImageRecord, caller: string): ImageInfo {
  const scope: ImageScope = r.owner === '' ? 'system' : r.owner === caller ? 'private' : 'shared';
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    scope,
    source: r.source,
    origin: r.origin,
    digest: r.manifestDigest,
    platform: formatPlatform(r.platform),
    size: r.size,
    fileDigest: r.fileDigest,
    layers: r.layers,
    config: r.config,
    created: r.createdAt,
  };
}
