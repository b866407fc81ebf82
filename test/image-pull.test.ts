/**
 * The main job end to end through the library: a real registry, fixture images built by
 * umoci/GNU tar, and e2fsprogs judging the ext4 files the store publishes.
 */
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bhatti, type BhattiError } from '../lib/index.js';
import { compareTree, fsck } from './helpers/e2fs.js';
import { startFaultyProxy } from './helpers/faulty-proxy.js';
import { fixtures, layoutRef, pushAll, type Fixtures } from './helpers/fixtures.js';
import { startRegistry, type TestRegistry } from './helpers/registry.js';

let registry: TestRegistry;
let fx: Fixtures;
const dirs: string[] = [];

function newDataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bhatti-data-'));
  dirs.push(d);
  return d;
}

/** Everything the store keeps on disk apart from the database: for "nothing was left behind" checks. */
function storeFiles(dataDir: string): { images: string[]; tmp: string[]; blobs: string[] } {
  const ls = (p: string) => (existsSync(p) ? readdirSync(p) : []);
  return {
    images: ls(join(dataDir, 'images', 'store')),
    tmp: ls(join(dataDir, 'tmp')),
    blobs: ls(join(dataDir, 'blobs', 'sha256')),
  };
}

test.before(async () => {
  fx = await fixtures();
  registry = await startRegistry();
  registry.push(layoutRef('multi'), 'test/multi:1');
  registry.push(layoutRef('tiny'), 'test/tiny:1');
  await pushAll(registry, layoutRef('multiarch'), 'test/multiarch:1');
});

test.after.always(async () => {
  await registry?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('pull turns a multi-layer image into an ext4 file holding exactly the merged filesystem', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  const events: string[] = [];
  const result = await bhatti.images
    .pull(`${registry.host}/test/multi:1`, { user: 'alice', name: 'multi' })
    .on('resolving', () => events.push('resolving'))
    .on('resolved', () => events.push('resolved'))
    .on('converting', () => events.push('converting'))
    .on('done', () => events.push('done'));
  t.is(result.status, 'pulled');
  t.is(result.downloadedLayers, fx.expected.images.multi.layers);
  t.deepEqual(events, ['resolving', 'resolved', 'converting', 'done']);
  t.is(result.image.source, `${registry.host}/test/multi:1`);
  t.regex(result.image.digest, /^sha256:[a-f0-9]{64}$/);

  const file = await bhatti.images.imagePath('multi', { user: 'alice' });
  const check = await fsck(file);
  t.true(check.ok, check.output);
  const diffs = await compareTree(file, fx.expected.images.multi, { mtime: true });
  t.deepEqual(diffs, []);
  t.deepEqual(storeFiles(bhatti.paths.root).tmp, []);
});

test('image config is recorded; list and inspect show it; delete removes file and row', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'alice' });
  const info = await bhatti.images.inspect('tiny:1', { user: 'alice' });
  t.is(info.name, 'tiny:1');
  t.is(info.scope, 'private');
  t.deepEqual(info.config.cmd, ['/bin/sh']);
  t.true(info.config.env.includes('PATH=/bin'));
  t.is(info.platform, 'linux/amd64');
  const list = await bhatti.images.list({ user: 'alice' });
  t.deepEqual(list.map((i) => i.name), ['tiny:1']);
  const file = await bhatti.images.imagePath('tiny:1', { user: 'alice' });
  await bhatti.images.delete('tiny:1', { user: 'alice' });
  t.false(existsSync(file));
  t.deepEqual(await bhatti.images.list({ user: 'alice' }), []);
  await t.throwsAsync(bhatti.images.inspect('tiny:1', { user: 'alice' }), { code: 'IMAGE_NOT_FOUND' } as never);
});

test('re-pull with an unchanged digest is a no-op; another name reuses every cached layer', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  const ref = `${registry.host}/test/multi:1`;
  const first = await bhatti.images.pull(ref, { user: 'alice', name: 'm' });
  const again = await bhatti.images.pull(ref, { user: 'alice', name: 'm' });
  t.is(again.status, 'up-to-date');
  t.is(again.image.id, first.image.id);
  t.is(again.bytesDownloaded, 0);
  const other = await bhatti.images.pull(ref, { user: 'alice', name: 'm2' });
  t.is(other.status, 'pulled');
  t.is(other.downloadedLayers, 0);
  t.is(other.cachedLayers, fx.expected.images.multi.layers);
  const forced = await bhatti.images.pull(ref, { user: 'alice', name: 'm', force: true });
  t.is(forced.status, 'updated');
  t.not(forced.image.id, first.image.id);
  t.is(storeFiles(bhatti.paths.root).images.length, 2, 'the replaced image file is gone');
});

test('images are private to their owner; system images are visible to all', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'alice', name: 'secret' });
  await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: '', name: 'base' });
  t.deepEqual((await bhatti.images.list({ user: 'bob' })).map((i) => [i.name, i.scope]), [['base', 'system']]);
  t.deepEqual(
    (await bhatti.images.list({ user: 'alice' })).map((i) => [i.name, i.scope]).sort(),
    [['base', 'system'], ['secret', 'private']],
  );
  const notFound = await t.throwsAsync(bhatti.images.inspect('secret', { user: 'bob' }));
  t.is((notFound as BhattiError).code, 'IMAGE_NOT_FOUND');
  t.is(notFound!.message, 'image "secret" not found', 'the error does not reveal that someone else has it');
  await t.throwsAsync(bhatti.images.imagePath('secret', { user: 'bob' }), { message: 'image "secret" not found' });
  await t.throwsAsync(bhatti.images.delete('secret', { user: 'bob' }), { message: 'image "secret" not found' });
  await t.throwsAsync(bhatti.images.delete('base', { user: 'bob' }), { message: /system image/ });
  // Bob may use the same name for his own image.
  await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'bob', name: 'secret' });
  t.is((await bhatti.images.inspect('secret', { user: 'bob' })).owner, 'bob');
});

test('a name taken by another source is refused unless forced', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'alice', name: 'app' });
  const err = await t.throwsAsync(bhatti.images.pull(`${registry.host}/test/multi:1`, { user: 'alice', name: 'app' }));
  t.is((err as BhattiError).code, 'IMAGE_EXISTS');
  t.regex(err!.message, /"app".*--force/);
  const r = await bhatti.images.pull(`${registry.host}/test/multi:1`, { user: 'alice', name: 'app', force: true });
  t.is(r.status, 'updated');
  t.is((await bhatti.images.inspect('app', { user: 'alice' })).source, `${registry.host}/test/multi:1`);
});

test('platform selection from a multi-platform index', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  const ref = `${registry.host}/test/multiarch:1`;
  const arm = await bhatti.images.pull(ref, { user: 'a', name: 'arm', platform: 'linux/arm64' });
  t.is(arm.image.platform, 'linux/arm64/v8');
  const amd = await bhatti.images.pull(ref, { user: 'a', name: 'amd', platform: 'linux/amd64' });
  t.is(amd.image.platform, 'linux/amd64');
  t.not(arm.image.digest, amd.image.digest);
  const err = await t.throwsAsync(bhatti.images.pull(ref, { user: 'a', name: 'x', platform: 'linux/s390x' }));
  t.is((err as BhattiError).code, 'PLATFORM_NOT_FOUND');
  t.regex(err!.message, /linux\/s390x/);
});

test('bad input fails with a clear error and leaves the store as it was', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  const cases: [string, Parameters<typeof bhatti.images.pull>[1], string, RegExp][] = [
    [`${registry.host}/test/tiny:1`, { user: 'a', name: 'bad/name' }, 'INVALID_ARGUMENT', /"bad\/name"/],
    [`${registry.host}/test/tiny:nope`, { user: 'a' }, 'MANIFEST_UNKNOWN', /test\/tiny:nope/],
    [`${registry.host}/test/missing:1`, { user: 'a' }, 'MANIFEST_UNKNOWN', /test\/missing:1/],
    [`${registry.host}/Test/Upper:1`, { user: 'a' }, 'INVALID_REFERENCE', /Test\/Upper:1/],
    ['127.0.0.1:1/x/y:1', { user: 'a' }, 'REGISTRY_UNAVAILABLE', /127\.0\.0\.1:1/],
    [`${registry.host}/test/tiny:1`, { user: 'a', platform: 'linux/amd64/v1/x' }, 'INVALID_ARGUMENT', /linux\/amd64\/v1\/x/],
  ];
  for (const [ref, opts, code, message] of cases) {
    const err = await t.throwsAsync(bhatti.images.pull(ref, opts), undefined, ref);
    t.is((err as BhattiError).code, code, `${ref}: ${err?.message}`);
    t.regex(err!.message, message);
    t.false(err!.message.includes('\n'), 'one-line message');
  }
  t.deepEqual(await bhatti.images.list({ user: 'a' }), []);
  t.deepEqual(storeFiles(bhatti.paths.root), { images: [], tmp: [], blobs: [] });
});

test('a corrupted blob is caught by its digest and nothing is kept', async (t) => {
  const proxy = await startFaultyProxy(registry.host, { corrupt: true });
  try {
    await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
    const err = await t.throwsAsync(bhatti.images.pull(`${proxy.host}/test/tiny:1`, { user: 'a' }));
    t.is((err as BhattiError).code, 'DIGEST_MISMATCH');
    t.regex(err!.message, /sha256:[a-f0-9]{64}/);
    t.deepEqual(await bhatti.images.list({ user: 'a' }), []);
    t.deepEqual(storeFiles(bhatti.paths.root), { images: [], tmp: [], blobs: [] });
  } finally {
    await proxy.stop();
  }
});

test('a download cut short is resumed from where it stopped', async (t) => {
  const proxy = await startFaultyProxy(registry.host, { cutAfter: 300_000, cutTimes: 1 });
  try {
    await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
    const r = await bhatti.images.pull(`${proxy.host}/test/tiny:1`, { user: 'a' });
    t.is(r.status, 'pulled');
    // Resumed with a Range from exactly what had arrived.
    const resumed = proxy.blobRequests.map((b) => /^bytes=(\d+)-$/.exec(b.range ?? '')).filter((m) => m !== null);
    t.is(resumed.length, 1, JSON.stringify(proxy.blobRequests));
    const from = Number(resumed[0]![1]);
    t.is(from, 300_000);
    t.true((await fsck(await bhatti.images.imagePath('tiny:1', { user: 'a' }))).ok);
  } finally {
    await proxy.stop();
  }
});

test('a download that keeps breaking fails cleanly', async (t) => {
  const proxy = await startFaultyProxy(registry.host, { cutAfter: 1000 });
  try {
    await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
    const err = await t.throwsAsync(bhatti.images.pull(`${proxy.host}/test/tiny:1`, { user: 'a' }));
    t.is((err as BhattiError).code, 'TRANSFER_FAILED', err?.message);
    t.deepEqual(storeFiles(bhatti.paths.root), { images: [], tmp: [], blobs: [] });
  } finally {
    await proxy.stop();
  }
});

test('aborting mid-download stops the pull and leaves nothing behind', async (t) => {
  const proxy = await startFaultyProxy(registry.host, { throttle: 200_000 });
  try {
    await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
    const controller = new AbortController();
    const op = bhatti.images.pull(`${proxy.host}/test/multi:1`, { user: 'a', signal: controller.signal });
    op.on('layer', (e) => {
      if (e.status === 'downloading') controller.abort();
    });
    const err = await t.throwsAsync(op.result);
    t.is((err as BhattiError).code, 'ABORTED');
    t.deepEqual(await bhatti.images.list({ user: 'a' }), []);
    const files = storeFiles(bhatti.paths.root);
    t.deepEqual(files.images, []);
    t.deepEqual(files.tmp, []);
  } finally {
    await proxy.stop();
  }
});

test('scratch space and image files left by a crashed process are removed on the next start', async (t) => {
  const dataDir = newDataDir();
  {
    await using bhatti = await Bhatti.open({ dataDir });
    await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'a' });
  }
  // A dead pid's scratch dir, and an image file published without its row (crash before commit).
  const { mkdirSync, writeFileSync, utimesSync } = await import('node:fs');
  const dead = join(dataDir, 'tmp', '999999-abcdef');
  mkdirSync(dead, { recursive: true });
  writeFileSync(join(dead, 'partial'), 'x');
  const orphan = join(dataDir, 'images', 'store', '0b7e3a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b.ext4');
  writeFileSync(orphan, 'x');
  const old = new Date(Date.now() - 3600_000);
  utimesSync(orphan, old, old);
  await using bhatti = await Bhatti.open({ dataDir });
  t.false(existsSync(dead));
  t.false(existsSync(orphan));
  t.is((await bhatti.images.list({ user: 'a' })).length, 1, 'the real image survives');
});

test('a blob cached for one user is not handed to another whose registry cannot serve it', async (t) => {
  const { readdirSync: ls, rmSync: rm } = await import('node:fs');
  // A second registry with the same image whose layer blob is gone: it can serve the manifest, not the layer.
  const evil = await startRegistry();
  try {
    evil.push(layoutRef('tiny'), 'evil/tiny:1');
    await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
    const bob = await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'bob', name: 'secret' });
    const layer = bob.image.layers[0]!;
    const blobDir = join(evil.storage, 'docker/registry/v2/blobs/sha256', layer.slice(7, 9), layer.slice(7));
    t.true(ls(blobDir).includes('data'));
    rm(join(blobDir, 'data'));
    const err = await t.throwsAsync(bhatti.images.pull(`${evil.host}/evil/tiny:1`, { user: 'alice', name: 'stolen' }));
    t.not((err as BhattiError).code, undefined);
    t.deepEqual((await bhatti.images.list({ user: 'alice' })).map((i) => i.name), []);
    // Alice pulling from a registry that does have it downloads it once, then uses her cache.
    const first = await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'alice', name: 'a1' });
    t.is(first.downloadedLayers, 1);
    const second = await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'alice', name: 'a2' });
    t.is(second.downloadedLayers, 0);
  } finally {
    await evil.stop();
  }
});

test('start-up sweeps only what the store made; other files in the data dir survive', async (t) => {
  const { mkdirSync, writeFileSync, utimesSync } = await import('node:fs');
  const dataDir = newDataDir();
  mkdirSync(join(dataDir, 'tmp', 'notes'), { recursive: true });
  writeFileSync(join(dataDir, 'tmp', 'important.txt'), 'precious');
  mkdirSync(join(dataDir, 'images', 'store'), { recursive: true });
  const mine = join(dataDir, 'images', 'store', 'my-vm.ext4');
  writeFileSync(mine, 'vm');
  const old = new Date(Date.now() - 3600_000);
  utimesSync(mine, old, old);
  await using bhatti = await Bhatti.open({ dataDir });
  t.deepEqual(await bhatti.images.list({ user: 'a' }), []);
  t.true(existsSync(join(dataDir, 'tmp', 'important.txt')));
  t.true(existsSync(join(dataDir, 'tmp', 'notes')));
  t.true(existsSync(mine));
});

test('an unusable data dir is a user error naming it', async (t) => {
  const { writeFileSync } = await import('node:fs');
  const file = join(newDataDir(), 'afile');
  writeFileSync(file, 'x');
  const err = await t.throwsAsync(Bhatti.open({ dataDir: file }));
  t.is((err as BhattiError).code, 'INVALID_ARGUMENT');
  t.regex(err!.message, new RegExp(`"${file}".*not a directory`));
  const empty = await t.throwsAsync(Bhatti.open({ dataDir: '' }));
  t.is((empty as BhattiError).code, 'INVALID_ARGUMENT');
});

test('prune removes unreferenced blobs but spares recently used ones', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  await bhatti.images.pull(`${registry.host}/test/tiny:1`, { user: 'a', name: 't' });
  await bhatti.images.delete('t', { user: 'a' });
  t.deepEqual(await bhatti.images.pruneBlobs(), { blobs: 0, bytes: 0 }, 'a pull may still be converting with them');
  const knex = (bhatti.metadata as unknown as { knex: (t: string) => { update(v: object): Promise<number> } }).knex;
  await knex('blobs').update({ created_at: Date.now() - 2 * 3600_000 });
  const pruned = await bhatti.images.pruneBlobs();
  t.is(pruned.blobs, 1);
  t.deepEqual(storeFiles(bhatti.paths.root).blobs, []);
});

test('concurrent pulls of one name: identical ones agree, forced ones both succeed', async (t) => {
  await using bhatti = await Bhatti.open({ dataDir: newDataDir() });
  const ref = `${registry.host}/test/tiny:1`;
  const same = await Promise.all([1, 2, 3].map(() => bhatti.images.pull(ref, { user: 'a', name: 'c' }).result));
  t.is(same.filter((r) => r.status === 'pulled').length, 1, JSON.stringify(same.map((r) => r.status)));
  t.true(same.every((r) => r.status === 'pulled' || r.status === 'up-to-date'));
  const forced = await Promise.all([1, 2].map(() => bhatti.images.pull(ref, { user: 'a', name: 'c', force: true }).result));
  t.true(forced.every((r) => r.status === 'updated'));
  t.is((await bhatti.images.list({ user: 'a' })).length, 1);
  t.is(storeFiles(bhatti.paths.root).images.length, 1);
});
