import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Where everything of one installation lives. */
export interface DataPaths {
  root: string;
  /** SQLite database of the embedded metadata store. */
  database: string;
  /** Content-addressed blobs: `blobs/sha256/<hex>`. */
  blobs: string;
  /** Tier images (`rootfs-<tier>-<arch>.ext4`) sit directly here. */
  images: string;
  /** Images users pulled/imported/saved: `images/store/<id>.ext4` (kept apart so tier discovery never sees them). */
  imageStore: string;
  /** Volumes: `volumes/<id>.ext4`. */
  volumes: string;
  /** One private directory per sandbox: `sandboxes/<id>/` (overlay, sockets, logs). */
  sandboxes: string;
  /** Kernel + initrd the VM engine boots. */
  kit: string;
  /** Scratch space: one `<pid>-<random>` directory per running operation, swept when its process is gone. */
  tmp: string;
}

/**
 * Chooses the data dir the way the CLI documents it: explicit value, else
 * `BHATTI_DATA_DIR`, else `/var/lib/bhatti` for root and the XDG data dir for others.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): string {
  if (env.BHATTI_DATA_DIR) return resolve(env.BHATTI_DATA_DIR);
  if (uid === 0) return '/var/lib/bhatti';
  const xdg = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share');
  return join(xdg, 'bhatti');
}

export function dataPaths(root: string): DataPaths {
  const r = resolve(root);
  return {
    root: r,
    database: join(r, 'bhatti.db'),
    blobs: join(r, 'blobs'),
    images: join(r, 'images'),
    imageStore: join(r, 'images', 'store'),
    volumes: join(r, 'volumes'),
    sandboxes: join(r, 'sandboxes'),
    kit: join(r, 'kit'),
    tmp: join(r, 'tmp'),
  };
}
