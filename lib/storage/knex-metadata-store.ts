import knexFactory, { type Knex } from 'knex';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ImageExistsError } from '../errors.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import type { BlobRecord, ImageRecord, MetadataStore, SandboxRecord, SandboxState, VolumeRecord } from './metadata-store.js';
import { migrationSource } from './migrations.js';

interface ImageRow {
  id: string;
  name: string;
  owner: string;
  source: string;
  origin: string;
  manifest_digest: string;
  platform: string;
  config: string;
  file: string;
  size: number | string;
  file_digest: string;
  created_at: number | string;
}

/** Rows written before platforms were validated may hold odd strings: read them without throwing. */
function readPlatform(s: string): ImageRecord['platform'] {
  try {
    return parsePlatform(s);
  } catch {
    const [os = '', architecture = '', variant] = s.split('/');
    return variant === undefined ? { os, architecture } : { os, architecture, variant };
  }
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  // SQLite reports SQLITE_CONSTRAINT (+ "UNIQUE" in the message); Postgres 23505.
  return e?.code === '23505' || (e?.code === 'SQLITE_CONSTRAINT' && /UNIQUE/i.test(e.message ?? ''));
}

/** The metadata store on knex. Embedded default: an SQLite file; any knex client with the same schema works. */
export class KnexMetadataStore implements MetadataStore {
  readonly knex: Knex;

  constructor(config: Knex.Config | Knex) {
    this.knex = typeof config === 'function' ? (config as Knex) : knexFactory(config as Knex.Config);
  }

  /** An SQLite file, with WAL and a busy timeout so several CLI processes can share it. */
  static sqlite(filename: string): KnexMetadataStore {
    mkdirSync(dirname(filename), { recursive: true, mode: 0o700 });
    return new KnexMetadataStore({
      client: 'sqlite3',
      connection: { filename },
      useNullAsDefault: true,
      // The library never prints; errors reach the caller as exceptions.
      log: { warn() {}, error() {}, deprecate() {}, debug() {} },
      pool: {
        min: 1,
        max: 1,
        afterCreate(conn: { run(sql: string, cb: (err: Error | null) => void): void }, done: (err: Error | null, conn: unknown) => void) {
          const pragmas = ['PRAGMA foreign_keys = ON', 'PRAGMA journal_mode = WAL', 'PRAGMA busy_timeout = 10000', 'PRAGMA synchronous = FULL'];
          const next = (i: number): void => {
            if (i === pragmas.length) return done(null, conn);
            conn.run(pragmas[i]!, (err) => (err ? done(err, conn) : next(i + 1)));
          };
          next(0);
        },
      },
    });
  }

  async init(): Promise<void> {
    await this.knex.migrate.latest({ migrationSource, tableName: 'bhatti_migrations' });
  }

  async close(): Promise<void> {
    await this.knex.destroy();
  }

  private async toRecord(row: ImageRow, trx: Knex = this.knex): Promise<ImageRecord> {
    const layers = await trx('image_layers').where({ image_id: row.id }).orderBy('position').select('digest');
    return {
      id: row.id,
      name: row.name,
      owner: row.owner,
      source: row.source,
      origin: row.origin,
      manifestDigest: row.manifest_digest,
      platform: readPlatform(row.platform),
      config: JSON.parse(row.config),
      layers: layers.map((l: { digest: string }) => l.digest),
      file: row.file,
      size: Number(row.size),
      fileDigest: row.file_digest,
      createdAt: new Date(Number(row.created_at)),
    };
  }

  async getImage(owner: string, name: string): Promise<ImageRecord | undefined> {
    const row = await this.knex<ImageRow>('images').where({ owner, name }).first();
    return row ? this.toRecord(row) : undefined;
  }

  async getImageById(id: string): Promise<ImageRecord | undefined> {
    const row = await this.knex<ImageRow>('images').where({ id }).first();
    return row ? this.toRecord(row) : undefined;
  }

  async listImages(owners: string[]): Promise<ImageRecord[]> {
    const rows = await this.knex<ImageRow>('images').whereIn('owner', owners).orderBy([{ column: 'owner' }, { column: 'name' }]);
    return Promise.all(rows.map((r) => this.toRecord(r)));
  }

  async putImage(record: ImageRecord, opts: { replaceId?: string } = {}): Promise<void> {
    try {
      await this.knex.transaction(async (trx) => {
        if (opts.replaceId) await trx('images').where({ id: opts.replaceId }).delete();
        await trx('images').insert({
          id: record.id,
          name: record.name,
          owner: record.owner,
          source: record.source,
          origin: record.origin,
          manifest_digest: record.manifestDigest,
          platform: formatPlatform(record.platform),
          config: JSON.stringify(record.config),
          file: record.file,
          size: record.size,
          file_digest: record.fileDigest,
          created_at: record.createdAt.getTime(),
        });
        if (record.layers.length > 0) {
          await trx('image_layers').insert(record.layers.map((digest, position) => ({ image_id: record.id, position, digest })));
        }
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ImageExistsError(record.name);
      throw err;
    }
  }

  async deleteImage(id: string): Promise<boolean> {
    return this.knex.transaction(async (trx) => {
      await trx('image_layers').where({ image_id: id }).delete();
      return (await trx('images').where({ id }).delete()) > 0;
    });
  }

  async imageFiles(): Promise<Set<string>> {
    const rows = await this.knex('images').select('file');
    return new Set(rows.map((r: { file: string }) => r.file));
  }

  async recordBlob(blob: BlobRecord, owner: string): Promise<void> {
    await this.knex.transaction(async (trx) => {
      // created_at doubles as "last used", so prune leaves blobs of pulls in progress alone.
      await trx('blobs')
        .insert({ digest: blob.digest, size: blob.size, media_type: blob.mediaType, created_at: Date.now() })
        .onConflict('digest')
        .merge({ created_at: Date.now() });
      await trx('blob_owners').insert({ digest: blob.digest, owner }).onConflict(['digest', 'owner']).ignore();
    });
  }

  async blobOwnedBy(digest: string, owner: string): Promise<boolean> {
    return (await this.knex('blob_owners').where({ digest, owner }).first()) !== undefined;
  }

  async referencedBlobs(): Promise<Set<string>> {
    const rows = await this.knex('image_layers').distinct('digest');
    return new Set(rows.map((r: { digest: string }) => r.digest));
  }

  async listBlobs(): Promise<(BlobRecord & { lastUsed: Date })[]> {
    const rows = await this.knex('blobs').select('digest', 'size', 'media_type', 'created_at');
    return rows.map((r: { digest: string; size: number | string; media_type: string; created_at: number | string }) => ({
      digest: r.digest,
      size: Number(r.size),
      mediaType: r.media_type,
      lastUsed: new Date(Number(r.created_at)),
    }));
  }

  async deleteBlob(digest: string): Promise<void> {
    await this.knex.transaction(async (trx) => {
      await trx('blob_owners').where({ digest }).delete();
      await trx('blobs').where({ digest }).delete();
    });
  }

  async insertSandbox(
    r: SandboxRecord,
  ): Promise<{ ok: true } | { ok: false; reason: 'name-taken' } | { ok: false; reason: 'volume-busy'; volumeId: string }> {
    try {
      return await this.knex.transaction(async (trx) => {
        for (const v of r.volumes) {
          const users = await trx('sandbox_volumes').where({ volume_id: v.volumeId }).select('read_only');
          const writer = users.some((u: { read_only: unknown }) => !u.read_only);
          if (writer || (!v.readOnly && users.length > 0)) return { ok: false as const, reason: 'volume-busy' as const, volumeId: v.volumeId };
        }
        await trx('sandboxes').insert({
          id: r.id,
          name: r.name,
          owner: r.owner,
          image_id: r.imageId,
          image_name: r.imageName,
          image_file: r.imageFile,
          engine: r.engine,
          state: r.state,
          cpus: r.cpus,
          memory_mib: r.memoryMiB,
          config: JSON.stringify(r.config),
          runtime: r.runtime ? JSON.stringify(r.runtime) : null,
          created_at: r.createdAt.getTime(),
        });
        if (r.volumes.length > 0) {
          await trx('sandbox_volumes').insert(
            r.volumes.map((v) => ({ sandbox_id: r.id, volume_id: v.volumeId, mount_path: v.mountPath, read_only: v.readOnly })),
          );
        }
        return { ok: true as const };
      });
    } catch (err) {
      if (isUniqueViolation(err)) return { ok: false, reason: 'name-taken' };
      throw err;
    }
  }

  async updateSandbox(id: string, change: { state?: SandboxState; runtime?: Record<string, unknown> | null }): Promise<void> {
    const row: Record<string, unknown> = {};
    if (change.state) row.state = change.state;
    if (change.runtime !== undefined) row.runtime = change.runtime ? JSON.stringify(change.runtime) : null;
    await this.knex('sandboxes').where({ id }).update(row);
  }

  async transitionSandbox(id: string, from: SandboxState, to: SandboxState, runtime: Record<string, unknown> | null): Promise<boolean> {
    const n = await this.knex('sandboxes')
      .where({ id, state: from })
      .update({ state: to, runtime: runtime ? JSON.stringify(runtime) : null });
    return n > 0;
  }

  private async toSandbox(row: Record<string, unknown>): Promise<SandboxRecord> {
    const vols = await this.knex('sandbox_volumes').where({ sandbox_id: row.id }).orderBy('mount_path');
    return {
      id: row.id as string,
      name: row.name as string,
      owner: row.owner as string,
      imageId: row.image_id as string,
      imageName: row.image_name as string,
      imageFile: row.image_file as string,
      engine: row.engine as string,
      state: row.state as SandboxState,
      cpus: Number(row.cpus),
      memoryMiB: Number(row.memory_mib),
      config: JSON.parse(row.config as string),
      runtime: row.runtime ? JSON.parse(row.runtime as string) : null,
      volumes: vols.map((v: Record<string, unknown>) => ({
        volumeId: v.volume_id as string,
        mountPath: v.mount_path as string,
        readOnly: Boolean(v.read_only),
      })),
      createdAt: new Date(Number(row.created_at)),
    };
  }

  async getSandbox(owner: string, name: string): Promise<SandboxRecord | undefined> {
    const row = await this.knex('sandboxes').where({ owner, name }).first();
    return row ? this.toSandbox(row) : undefined;
  }

  async listSandboxes(owners?: string[]): Promise<SandboxRecord[]> {
    const q = this.knex('sandboxes').orderBy([{ column: 'owner' }, { column: 'name' }]);
    if (owners) q.whereIn('owner', owners);
    return Promise.all((await q).map((r: Record<string, unknown>) => this.toSandbox(r)));
  }

  async deleteSandbox(id: string): Promise<void> {
    await this.knex.transaction(async (trx) => {
      await trx('sandbox_volumes').where({ sandbox_id: id }).delete();
      await trx('sandboxes').where({ id }).delete();
    });
  }

  async sandboxesUsingImageFile(file: string): Promise<string[]> {
    const rows = await this.knex('sandboxes').where({ image_file: file }).select('name', 'owner');
    return rows.map((r: { name: string; owner: string }) => r.name);
  }

  async sandboxesUsingVolume(volumeId: string): Promise<{ name: string; state: SandboxState; readOnly: boolean }[]> {
    const rows = await this.knex('sandbox_volumes')
      .join('sandboxes', 'sandboxes.id', 'sandbox_volumes.sandbox_id')
      .where({ volume_id: volumeId })
      .select('sandboxes.name as name', 'sandboxes.state as state', 'sandbox_volumes.read_only as read_only');
    return rows.map((r: { name: string; state: SandboxState; read_only: unknown }) => ({ name: r.name, state: r.state, readOnly: Boolean(r.read_only) }));
  }

  async insertVolume(r: VolumeRecord): Promise<boolean> {
    try {
      await this.knex('volumes').insert({ id: r.id, name: r.name, owner: r.owner, size: r.size, file: r.file, created_at: r.createdAt.getTime() });
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  private toVolume(row: Record<string, unknown>): VolumeRecord {
    return {
      id: row.id as string,
      name: row.name as string,
      owner: row.owner as string,
      size: Number(row.size),
      file: row.file as string,
      createdAt: new Date(Number(row.created_at)),
    };
  }

  async getVolume(owner: string, name: string): Promise<VolumeRecord | undefined> {
    const row = await this.knex('volumes').where({ owner, name }).first();
    return row ? this.toVolume(row) : undefined;
  }

  async getVolumeById(id: string): Promise<VolumeRecord | undefined> {
    const row = await this.knex('volumes').where({ id }).first();
    return row ? this.toVolume(row) : undefined;
  }

  async listVolumes(owners: string[]): Promise<VolumeRecord[]> {
    const rows = await this.knex('volumes').whereIn('owner', owners).orderBy('name');
    return rows.map((r: Record<string, unknown>) => this.toVolume(r));
  }

  async deleteVolume(id: string): Promise<void> {
    await this.knex('volumes').where({ id }).delete();
  }

  async volumeFiles(): Promise<Set<string>> {
    const rows = await this.knex('volumes').select('file');
    return new Set(rows.map((r: { file: string }) => r.file));
  }
}
