import type { Knex } from 'knex';

interface Migration {
  name: string;
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/**
 * Versioned schema migrations, kept in code (not a directory of files) so they survive
 * bundling. Append only: never edit a migration that has shipped.
 */
const migrations: Migration[] = [
  {
    name: '001_images_blobs',
    async up(knex) {
      await knex.schema.createTable('images', (t) => {
        t.string('id', 64).primary();
        t.string('name', 255).notNullable();
        t.string('owner', 255).notNullable();
        t.text('source').notNullable();
        t.string('origin', 32).notNullable();
        t.string('manifest_digest', 100).notNullable();
        t.string('platform', 64).notNullable();
        t.text('config').notNullable();
        t.text('file').notNullable();
        t.bigInteger('size').notNullable();
        t.string('file_digest', 100).notNullable();
        t.bigInteger('created_at').notNullable();
        t.unique(['owner', 'name']);
      });
      await knex.schema.createTable('blobs', (t) => {
        t.string('digest', 100).primary();
        t.bigInteger('size').notNullable();
        t.string('media_type', 255).notNullable();
        t.bigInteger('created_at').notNullable();
      });
      await knex.schema.createTable('image_layers', (t) => {
        t.string('image_id', 64).notNullable().references('id').inTable('images').onDelete('CASCADE');
        t.integer('position').notNullable();
        t.string('digest', 100).notNullable();
        t.primary(['image_id', 'position']);
        t.index(['digest']);
      });
    },
    async down(knex) {
      await knex.schema.dropTable('image_layers');
      await knex.schema.dropTable('blobs');
      await knex.schema.dropTable('images');
    },
  },
  {
    name: '002_sandboxes_volumes',
    async up(knex) {
      await knex.schema.createTable('volumes', (t) => {
        t.string('id', 64).primary();
        t.string('name', 255).notNullable();
        t.string('owner', 255).notNullable();
        t.bigInteger('size').notNullable();
        t.text('file').notNullable();
        t.bigInteger('created_at').notNullable();
        t.unique(['owner', 'name']);
      });
      await knex.schema.createTable('sandboxes', (t) => {
        t.string('id', 64).primary();
        t.string('name', 255).notNullable();
        t.string('owner', 255).notNullable();
        t.string('image_id', 64).notNullable();
        t.string('image_name', 255).notNullable();
        // The base image file is recorded, not looked up: the sandbox's overlay depends on that exact file.
        t.text('image_file').notNullable();
        t.string('engine', 32).notNullable();
        t.string('state', 16).notNullable();
        t.integer('cpus').notNullable();
        t.integer('memory_mib').notNullable();
        t.text('config').notNullable();
        t.text('runtime');
        t.bigInteger('created_at').notNullable();
        t.unique(['owner', 'name']);
        t.index(['image_id']);
      });
      await knex.schema.createTable('sandbox_volumes', (t) => {
        t.string('sandbox_id', 64).notNullable().references('id').inTable('sandboxes').onDelete('CASCADE');
        t.string('volume_id', 64).notNullable().references('id').inTable('volumes');
        t.text('mount_path').notNullable();
        t.boolean('read_only').notNullable();
        t.primary(['sandbox_id', 'volume_id']);
      });
    },
    async down(knex) {
      await knex.schema.dropTable('sandbox_volumes');
      await knex.schema.dropTable('sandboxes');
      await knex.schema.dropTable('volumes');
    },
  },
  {
    // Cached blobs are shared on disk but not across users: a user may use a cached blob only
    // after proving once (by downloading it from their own registry) that they can get it.
    name: '003_blob_owners',
    async up(knex) {
      await knex.schema.createTable('blob_owners', (t) => {
        t.string('digest', 100).notNullable();
        t.string('owner', 255).notNullable();
        t.primary(['digest', 'owner']);
      });
      // Blobs cached before this migration stay usable by the owners of images built from them.
      await knex.raw(
        'INSERT INTO blob_owners (digest, owner) SELECT DISTINCT image_layers.digest, images.owner FROM image_layers JOIN images ON images.id = image_layers.image_id',
      );
    },
    async down(knex) {
      await knex.schema.dropTable('blob_owners');
    },
  },
];

export const migrationSource: Knex.MigrationSource<Migration> = {
  getMigrations: async () => migrations,
  getMigrationName: (m) => m.name,
  getMigration: async (m) => m,
};
