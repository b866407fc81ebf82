/**
 * Checks the test scaffolding itself: the fixture images (built with umoci/GNU tar/skopeo) reach a
 * real registry with the layer counts expected.json claims, and the debugfs oracle helpers read
 * back what mke2fs -d was given — including failing when the image is wrong.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cat, compareTree, exists, fsck, ls, readlink, stat, walk, xattrs, DebugfsError } from './helpers/e2fs.js';
import { fixtures, layoutRef, pushAll } from './helpers/fixtures.js';
import { startRegistry } from './helpers/registry.js';

const skopeoInspect = (ref: string, raw = false) =>
  JSON.parse(execFileSync('skopeo', ['inspect', ...(raw ? ['--raw'] : []), '--tls-verify=false', ref], { encoding: 'utf8' }));

test('fixture images push to a real registry with the expected layers', async (t) => {
  const fx = await fixtures();
  const { multi, tiny } = fx.expected.images;
  t.is(multi.layers, 4);
  t.is(tiny.layers, 1);
  t.true(existsSync(fx.dockerArchive));
  t.is(layoutRef('multi'), `${fx.layout}:multi`);

  const reg = await startRegistry();
  t.teardown(() => reg.stop());
  reg.push(layoutRef('multi'), 'test/multi:1');
  reg.push(layoutRef('tiny'), 'test/tiny:1');
  await pushAll(reg, layoutRef('multiarch'), 'test/multiarch:1');

  const m = skopeoInspect(`docker://${reg.host}/test/multi:1`);
  t.is(m.Layers.length, multi.layers);
  t.is(m.Architecture, 'amd64');
  t.is(skopeoInspect(`docker://${reg.host}/test/tiny:1`).Layers.length, tiny.layers);
  const idx = skopeoInspect(`docker://${reg.host}/test/multiarch:1`, true);
  t.deepEqual(
    idx.manifests.map((d: { platform: { architecture: string } }) => d.platform.architecture),
    ['amd64', 'arm64'],
  );
});

test('expected.json matches an ext4 that mke2fs -d makes from umoci unpack of multi', async (t) => {
  const fx = await fixtures();
  const work = mkdtempSync(join(tmpdir(), 'bhatti-fxsmoke-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  execFileSync('umoci', ['unpack', '--image', layoutRef('multi'), join(work, 'bundle')]);
  const img = join(work, 'multi.ext4');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', join(work, 'bundle', 'rootfs'), img, '64M']);
  t.true((await fsck(img)).ok);
  const exp = fx.expected.images.multi;
  t.deepEqual(await compareTree(img, exp), []);
  // Spot checks that the tricky cases are really in the fixture.
  const sp = exp.special!;
  t.true(sp.deepLongName!.length > 255);
  t.is((await stat(img, sp.replacedHardlinkTarget!)).links, 1);
  t.deepEqual(await ls(img, sp.opaqueDir!), ['new.txt']);
  t.is((await stat(img, '/bin/suid-tool')).mode, 0o4755);
  t.is((await stat(img, '/tmp')).mode, 0o1777);
  t.is(exp.xattrsSupported, true);

  // The comparison must be able to fail: change one inode and one name.
  execFileSync('debugfs', ['-w', '-R', 'set_inode_field /opt/keep/a.txt uid 77', img], { stdio: 'ignore' });
  execFileSync('debugfs', ['-w', '-R', 'unlink /opt/keep/empty', img], { stdio: 'ignore' });
  const diffs = await compareTree(img, exp);
  t.true(diffs.some((d) => d.startsWith('/opt/keep/a.txt: uid is 77')), diffs.join('\n'));
  t.true(diffs.some((d) => d.startsWith('/opt/keep/empty:')), diffs.join('\n'));
});

test('e2fs helpers read back what mke2fs -d was given, and fsck can fail', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'bhatti-e2fs-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const src = join(work, 'src');
  mkdirSync(join(src, 'dir', 'sub'), { recursive: true });
  const bin = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) % 256));
  writeFileSync(join(src, 'dir', 'bin'), bin);
  chmodSync(join(src, 'dir', 'bin'), 0o4755);
  writeFileSync(join(src, 'owned'), 'o\n');
  chownSync(join(src, 'owned'), 1234, 4321);
  chmodSync(join(src, 'owned'), 0o640);
  mkdirSync(join(src, 'sticky'));
  chmodSync(join(src, 'sticky'), 0o1777);
  symlinkSync('/etc/passwd', join(src, 'fast'));
  const slow = '/' + 'x'.repeat(120) + '/target';
  symlinkSync(slow, join(src, 'slow'));
  writeFileSync(join(src, 'hl1'), 'linked\n');
  linkSync(join(src, 'hl1'), join(src, 'dir', 'hl2'));
  const uni = 'ünïcødé-名前.txt';
  writeFileSync(join(src, uni), 'u\n');
  const long = 'L'.repeat(140);
  writeFileSync(join(src, 'dir', 'sub', long), 'long\n');
  writeFileSync(join(src, 'with space'), 's\n');
  writeFileSync(join(src, 'q"uote'), 'q\n');
  copyFileSync(join(src, 'owned'), join(src, 'xa'));
  execFileSync('python3', [
    '-c',
    'import os,sys; os.setxattr(sys.argv[1], "user.text", b"hello"); os.setxattr(sys.argv[1], "user.bin", bytes([0,1,255])); os.setxattr(sys.argv[1], "user.empty", b""); os.setxattr(sys.argv[1], "user.q", "a\\"ü".encode())',
    join(src, 'xa'),
  ]);
  const img = join(work, 'fs.ext4');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', src, img, '16M']);

  const f = await fsck(img);
  t.true(f.ok, f.output);

  const b = await stat(img, '/dir/bin');
  t.is(b.type, 'file');
  t.is(b.mode, 0o4755);
  t.is(b.size, bin.length);
  t.deepEqual(await cat(img, '/dir/bin'), bin);
  const o = await stat(img, '/owned');
  t.like(o, { uid: 1234, gid: 4321, mode: 0o640, links: 1 });
  t.like(await stat(img, '/sticky'), { type: 'dir', mode: 0o1777 });
  t.is(await readlink(img, '/fast'), '/etc/passwd');
  t.is(await readlink(img, '/slow'), slow);
  const h1 = await stat(img, '/hl1');
  const h2 = await stat(img, '/dir/hl2');
  t.is(h1.links, 2);
  t.is(h1.ino, h2.ino);
  t.deepEqual((await cat(img, '/' + uni)).toString(), 'u\n');
  t.deepEqual((await cat(img, `/dir/sub/${long}`)).toString(), 'long\n');
  t.deepEqual((await cat(img, '/with space')).toString(), 's\n');
  t.deepEqual((await cat(img, '/q"uote')).toString(), 'q\n'); // walks ls -p: debugfs cannot quote it
  t.deepEqual(await ls(img, '/dir/sub'), [long]);
  t.true((await ls(img, '/')).includes(uni));
  const xa = await xattrs(img, '/xa');
  t.deepEqual(xa['user.text'], Buffer.from('hello'));
  t.deepEqual(xa['user.bin'], Buffer.from([0, 1, 255]));
  t.deepEqual(xa['user.empty'], Buffer.alloc(0));
  t.is(xa['user.q']!.toString(), 'a"ü');
  t.true(await exists(img, '/dir/sub'));
  t.false(await exists(img, '/nope'));
  t.false(await exists(img, '/dir/nope'));
  const err = await t.throwsAsync(stat(img, '/nope'), { instanceOf: DebugfsError });
  t.true(err!.notFound);
  t.true((await walk(img)).includes(`/dir/sub/${long}`));

  // Break the link count: fsck must notice.
  execFileSync('debugfs', ['-w', '-R', 'set_inode_field /owned links_count 3', img], { stdio: 'ignore' });
  const bad = await fsck(img);
  t.false(bad.ok);
  t.regex(bad.output, /count/i);
});
