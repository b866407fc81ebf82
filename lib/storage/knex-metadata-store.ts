import knexFactory, { type Knex } from 'knex';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ImageExistsError } from '../errors.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import type { BlobRecord, ImageRecord, MetadataStore } from './metadata-store.js';
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
      platform: parsePlatform(row.platform),
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

  async recordBlob(blob: BlobRecord): Promise<void> {
    await this.knex('blobs')
      .insert({ digest: blob.digest, size: blob.size, media_type: blob.mediaType, created_at: Date.now() })
      .onConflict('digest')
      .ignore();
  }

  async referencedBlobs(): Promise<Set<string>> {
    const rows = await this.knex('image_layers').distinct('digest');
    return new Set(rows.map((r: { digest: string }) => r.digest));
  }

  async listBlobs(): Promise<BlobRecord[]> {
    const rows = await this.knex('blobs').select('digest', 'size', 'media_type');
    return rows.map((r: { digest: string; size: number | string; media_type: string }) => ({
      digest: r.digest,
      size: Number(r.size),
      mediaType: r.media_type,
    }));
  }

  async deleteBlob(digest: string): Promise<void> {
    await this.knex('blobs').where({ digest }).delete();
  }
}
