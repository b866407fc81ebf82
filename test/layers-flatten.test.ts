import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CorruptLayerError, DigestMismatchError, UnsafeLayerEntryError, UnsupportedImageError } from '../lib/errors.js';
import { flattenToTar } from '../lib/layers/flatten.js';
import type { LayerInput } from '../lib/layers/types.js';

const work = mkdtempSync(join(tmpdir(), 'layers-flatten-test-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));
let seq = 0;

function sh(script: string, cwd = work): string {
  return execFileSync('sh', ['-ec', script], { cwd, encoding: 'utf8' });
}

function fileLayer(file: string, diffId?: string): LayerInput {
  const digest = `sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
  return { digest, diffId, open: () => createReadStream(file) };
}

/**
 * A layer made by GNU tar from a directory that `script` prepares; `members` picks what to
 * archive (default everything), `post` edits the archive afterwards (e.g. `tar --delete`).
 */
function layer(script: string, opts: { members?: string; post?: string; tarFlags?: string } = {}): LayerInput {
  const n = seq++;
  const dir = join(work, `l${n}`);
  sh(`mkdir -p ${dir}`);
  sh(script, dir);
  const file = join(work, `l${n}.tar`);
  sh(`tar --format=pax --numeric-owner ${opts.tarFlags ?? ''} -C ${dir} -cf ${file} ${opts.members ?? '.'}`);
  if (opts.post) sh(opts.post.replaceAll('$TAR', file), dir);
  return fileLayer(file);
}

/** Flattens, then lets GNU tar extract the result; returns the extracted root. */
async function extract(layers: LayerInput[]): Promise<string> {
  const out = join(work, `out${seq++}`);
  sh(`mkdir -p ${out}`);
  const tar = spawn('tar', ['-x', '-f', '-', '-C', out, '--numeric-owner', '-p', '--same-owner'], { stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise<number | null>((resolve) => tar.on('close', resolve));
  await pipeline(flattenToTar(layers, { tmpDir: work }), tar.stdin);
  if ((await exited) !== 0) throw new Error('GNU tar failed to extract the flattened output');
  return out;
}

/** Names GNU tar lists in the flattened output. */
async function listing(layers: LayerInput[]): Promise<string[]> {
  const file = join(work, `list${seq++}.tar`);
  await pipeline(flattenToTar(layers, { tmpDir: work }), createWriteStream(file));
  return sh(`tar -tf ${file}`).split('\n').filter(Boolean);
}

const read = (root: string, p: string): string => readFileSync(join(root, p), 'utf8');

test('a whiteout deletes a lower file and never appears in the output', async (t) => {
  const l1 = layer('mkdir a && echo k > a/keep && echo g > a/gone');
  const l2 = layer('mkdir a && touch a/.wh.gone');
  const root = await extract([l1, l2]);
  t.deepEqual(readdirSync(join(root, 'a')), ['keep']);
  const names = await listing([l1, l2]);
  t.false(names.some((n) => n.includes('.wh.')), names.join(','));
});

test('an upper file replaces a lower one; upper directory metadata wins', async (t) => {
  const l1 = layer('mkdir d && chmod 0700 d && echo old > d/f');
  const l2 = layer('mkdir d && chmod 0751 d && echo new > d/f');
  const root = await extract([l1, l2]);
  t.is(read(root, 'd/f'), 'new\n');
  t.is(statSync(join(root, 'd')).mode & 0o7777, 0o751);
});

test('a lower directory entry that arrives after its children still sets their parent metadata', async (t) => {
  const l1 = layer('mkdir d && chown 5:6 d && chmod 0701 d');
  const l2 = layer('mkdir d && echo f > d/f', { members: './d/f' });
  const root = await extract([l1, l2]);
  const d = statSync(join(root, 'd'));
  t.is(d.mode & 0o7777, 0o701);
  t.is(d.uid, 5);
  t.is(read(root, 'd/f'), 'f\n');
});

test('an opaque directory hides all lower children but keeps its own', async (t) => {
  const l1 = layer('mkdir -p d/sub && echo x > d/x && echo y > d/sub/y && echo o > other');
  const l2 = layer('mkdir d && touch d/.wh..wh..opq && echo z > d/z');
  const root = await extract([l1, l2]);
  t.deepEqual(readdirSync(join(root, 'd')), ['z']);
  t.is(read(root, 'other'), 'o\n');
});

test('whiteouts do not affect entries of their own layer', async (t) => {
  const l1 = layer('echo old > f && mkdir d && echo x > d/x');
  const l2 = layer('touch .wh.f && echo new > f && mkdir d && touch d/.wh..wh..opq && echo y > d/y');
  const root = await extract([l1, l2]);
  t.is(read(root, 'f'), 'new\n');
  t.deepEqual(readdirSync(join(root, 'd')), ['y']);
});

test('a directory replaced by a symlink or a file hides its lower children without error', async (t) => {
  const l1 = layer('mkdir -p d/e f && echo x > d/e/x && echo y > f/y && mkdir real');
  const l2 = layer('ln -s real d && echo file > f');
  const root = await extract([l1, l2]);
  t.is(readlinkSync(join(root, 'd')), 'real');
  t.deepEqual(readdirSync(join(root, 'real')), []);
  t.is(read(root, 'f'), 'file\n');
});

test('a deleted directory takes its whole lower subtree with it', async (t) => {
  const l1 = layer('mkdir -p d/e && echo x > d/e/x && echo k > keep');
  const l2 = layer('touch .wh.d');
  const root = await extract([l1, l2]);
  t.deepEqual(readdirSync(root).sort(), ['keep']);
});

test('hardlinks within a layer stay linked', async (t) => {
  const l1 = layer('echo shared > a && ln a b && mkdir d && ln a d/c');
  const root = await extract([l1]);
  const a = statSync(join(root, 'a'));
  t.is(statSync(join(root, 'b')).ino, a.ino);
  t.is(statSync(join(root, 'd/c')).ino, a.ino);
  t.is(a.nlink, 3);
});

test('a hardlink whose target an upper layer replaced keeps the old content', async (t) => {
  // Member order makes `a` the file and `b`, `c` the links, so the replaced one is the stored target.
  const l1 = layer('echo old > a && ln a b && ln a c', { members: './a ./b ./c' });
  const l2 = layer('echo new > a');
  const root = await extract([l1, l2]);
  t.is(read(root, 'a'), 'new\n');
  t.is(read(root, 'b'), 'old\n');
  t.is(read(root, 'c'), 'old\n');
  t.is(statSync(join(root, 'b')).ino, statSync(join(root, 'c')).ino, 'b and c are still one file');
  t.not(statSync(join(root, 'a')).ino, statSync(join(root, 'b')).ino);
});

test('a hardlink whose target an upper layer deleted keeps the content', async (t) => {
  const l1 = layer('echo old > a && ln a b');
  const l2 = layer('touch .wh.a');
  const root = await extract([l1, l2]);
  t.false(existsSync(join(root, 'a')));
  t.is(read(root, 'b'), 'old\n');
});

test('a hardlink to a file in a lower layer comes after its target', async (t) => {
  const l1 = layer('echo one > a');
  // GNU tar --delete leaves `b` as a link to `a`, which only the lower layer holds.
  const l2 = layer('echo one > a && ln a b', { members: './a ./b', post: 'tar --delete -f $TAR ./a' });
  t.regex(sh(`tar -tvf ${join(work, `l${seq - 1}.tar`)}`), /b link to \.\/a/);
  const root = await extract([l1, l2]);
  t.is(read(root, 'b'), 'one\n');
  t.is(statSync(join(root, 'a')).ino, statSync(join(root, 'b')).ino);
});

test('a cross-layer hardlink whose target a higher layer replaced keeps the middle content', async (t) => {
  const l1 = layer('echo one > a');
  const l2 = layer('echo one > a && ln a b', { members: './a ./b', post: 'tar --delete -f $TAR ./a' });
  const l3 = layer('echo three > a');
  const root = await extract([l1, l2, l3]);
  t.is(read(root, 'a'), 'three\n');
  t.is(read(root, 'b'), 'one\n');
});

test('an entry through a lower-layer symlink is rejected', async (t) => {
  const l1 = layer('ln -s /etc a');
  const l2 = layer('mkdir a && echo pwned > a/passwd', { members: 'a/passwd' });
  const err = await t.throwsAsync(extract([l1, l2]), { instanceOf: UnsafeLayerEntryError });
  t.regex(err!.message, /passes through symlink/);
  t.true(err!.message.includes('a/passwd'));
});

test('an entry through a symlink of the same layer is rejected', async (t) => {
  const l1 = layer('mkdir x && echo pwned > x/passwd && ln -s /etc a', {
    post: "tar --transform='s,^./x,./a,' -cf $TAR.2 ./a ./x/passwd && mv $TAR.2 $TAR",
  });
  const err = await t.throwsAsync(extract([l1]), { instanceOf: UnsafeLayerEntryError });
  t.regex(err!.message, /passes through symlink "a"/);
});

test('an entry through a regular file is rejected', async (t) => {
  const l1 = layer('mkdir x && echo content > x/f && echo file > a', {
    post: "tar --transform='s,^./x,./a,' -cf $TAR.2 ./a ./x/f && mv $TAR.2 $TAR",
  });
  await t.throwsAsync(extract([l1]), { instanceOf: UnsafeLayerEntryError, message: /passes through non-directory/ });
});

test('a ../ path is rejected', async (t) => {
  sh('mkdir -p dotdot/in && echo x > dotdot/outside');
  const file = join(work, 'dotdot.tar');
  sh(`tar -P -cf ${file} ../outside`, join(work, 'dotdot/in'));
  const err = await t.throwsAsync(extract([fileLayer(file)]), { instanceOf: UnsafeLayerEntryError });
  t.regex(err!.message, /"\.\.\/outside" has a "\.\." component/);
});

test('an absolute path is rejected', async (t) => {
  sh('mkdir -p abs && echo x > abs/f');
  const file = join(work, 'abs.tar');
  sh(`tar -P -cf ${file} ${join(work, 'abs/f')}`);
  await t.throwsAsync(extract([fileLayer(file)]), { instanceOf: UnsafeLayerEntryError, message: /is an absolute path/ });
});

test('a corrupt gzip layer names the layer', async (t) => {
  sh('mkdir -p gz && head -c 200000 /dev/urandom > gz/r && tar -C gz -czf gz.tgz .');
  const buf = readFileSync(join(work, 'gz.tgz'));
  for (let i = 1000; i < 1100; i++) buf[i] = buf[i]! ^ 0x5a;
  writeFileSync(join(work, 'gz-bad.tgz'), buf);
  const l = fileLayer(join(work, 'gz-bad.tgz'));
  const err = await t.throwsAsync(extract([l]), { instanceOf: CorruptLayerError });
  t.true(err!.message.includes(l.digest));
});

test('gzip and zstd layers are decompressed', async (t) => {
  sh('mkdir -p cz/one cz/two && echo gz > cz/one/g && echo zs > cz/two/z && tar -C cz/one -czf cz1.tgz . && tar -C cz/two -cf - . | zstd -q > cz2.tar.zst');
  const root = await extract([fileLayer(join(work, 'cz1.tgz')), fileLayer(join(work, 'cz2.tar.zst'))]);
  t.is(read(root, 'g'), 'gz\n');
  t.is(read(root, 'z'), 'zs\n');
});

test('an xz layer is reported as unsupported', async (t) => {
  sh('mkdir -p xz && echo x > xz/f && tar -C xz -cf - . | xz > xz.tar.xz');
  await t.throwsAsync(extract([fileLayer(join(work, 'xz.tar.xz'))]), { instanceOf: UnsupportedImageError, message: /xz/ });
});

test('a truncated layer is corrupt', async (t) => {
  sh('mkdir -p tr && head -c 100000 /dev/urandom > tr/r && tar -C tr -cf tr.tar . && head -c 30000 tr.tar > tr-cut.tar');
  const l = fileLayer(join(work, 'tr-cut.tar'));
  const err = await t.throwsAsync(extract([l]), { instanceOf: CorruptLayerError });
  t.true(err!.message.includes(l.digest));
});

test('a damaged tar header fails its checksum', async (t) => {
  sh('mkdir -p ck && echo x > ck/f && tar -C ck -cf ck.tar .');
  const buf = readFileSync(join(work, 'ck.tar'));
  buf[512 + 100] = 0x37; // the second header's mode field
  writeFileSync(join(work, 'ck-bad.tar'), buf);
  await t.throwsAsync(extract([fileLayer(join(work, 'ck-bad.tar'))]), { instanceOf: CorruptLayerError, message: /checksum/ });
});

test('diff_id is verified against the uncompressed content', async (t) => {
  sh('mkdir -p di && echo x > di/f && tar -C di -cf di.tar . && gzip -k di.tar');
  const good = `sha256:${createHash('sha256').update(readFileSync(join(work, 'di.tar'))).digest('hex')}`;
  const root = await extract([fileLayer(join(work, 'di.tar.gz'), good)]);
  t.is(read(root, 'f'), 'x\n');
  const bad = `sha256:${'0'.repeat(64)}`;
  const err = await t.throwsAsync(extract([fileLayer(join(work, 'di.tar.gz'), bad)]), { instanceOf: DigestMismatchError });
  t.true(err!.message.includes(good));
});

test('symlinks, devices, modes and owners pass through', async (t) => {
  const l1 = layer('ln -s ../target link && mknod cdev c 1 3 && mkfifo fifo && echo s > suid && chown 1234:99 suid && chmod 04755 suid');
  const root = await extract([l1]);
  t.is(readlinkSync(join(root, 'link')), '../target');
  const c = lstatSync(join(root, 'cdev'));
  t.true(c.isCharacterDevice());
  t.is(c.rdev, (1 << 8) | 3);
  t.true(lstatSync(join(root, 'fifo')).isFIFO());
  const s = statSync(join(root, 'suid'));
  t.is(s.mode & 0o7777, 0o4755);
  t.is(s.uid, 1234);
  t.is(s.gid, 99);
});

// Same-layer conflicts GNU tar would refuse (or resolve through a symlink) when extracting:
// reported by flatten, naming the entry, instead of as tar's generic failure later.

test('one layer with directory x holding x/y, then a file x, is CorruptLayerError naming x', async (t) => {
  const l = layer('mkdir x && echo y > x/y', {
    post: 'mkdir -p ../alt-$$ && echo f > ../alt-$$/x && tar --format=pax -C ../alt-$$ -rf $TAR x',
  });
  t.regex(sh(`tar -tf ${join(work, `l${seq - 1}.tar`)}`), /x\/y\n(\.\/)?x\n$/, 'the archive really holds both');
  const err = await t.throwsAsync(extract([l]), { instanceOf: CorruptLayerError });
  t.regex(err!.message, /entry "x" is a directory holding "x\/y" and then a non-directory \(file\) in the same layer/);
});

test('one layer with symlink a, then directory a and a/f, is UnsafeLayerEntryError naming a', async (t) => {
  const l = layer('ln -s /tmp a', {
    post: 'mkdir -p ../alt-$$/a && echo f > ../alt-$$/a/f && tar --format=pax -C ../alt-$$ -rf $TAR a',
  });
  const err = await t.throwsAsync(extract([l]), { instanceOf: UnsafeLayerEntryError });
  t.regex(err!.message, /entry "a" is a symlink and then a directory in the same layer/);
});

test('a hardlink to a directory is CorruptLayerError naming both', async (t) => {
  // GNU tar cannot make one; Python's tarfile writes the entry as asked.
  const file = join(work, 'dirlink.tar');
  sh(`python3 - <<'PY'
import tarfile
with tarfile.open('${file}', 'w', format=tarfile.PAX_FORMAT) as tf:
    d = tarfile.TarInfo('d'); d.type = tarfile.DIRTYPE; d.mode = 0o755; tf.addfile(d)
    l = tarfile.TarInfo('l'); l.type = tarfile.LNKTYPE; l.linkname = 'd'; tf.addfile(l)
PY`);
  const err = await t.throwsAsync(extract([fileLayer(file)]), { instanceOf: CorruptLayerError });
  t.regex(err!.message, /hardlink "l" points to directory "d"/);
});

test('entry names in errors have control characters escaped: one line, no terminal escapes', async (t) => {
  const file = join(work, 'ctrl.tar');
  sh(`python3 - <<'PY'
import io, tarfile
with tarfile.open('${file}', 'w', format=tarfile.PAX_FORMAT) as tf:
    f = tarfile.TarInfo('../\\x1b[31mred\\nline'); f.size = 2; tf.addfile(f, io.BytesIO(b'x\\n'))
PY`);
  const err = await t.throwsAsync(extract([fileLayer(file)]), { instanceOf: UnsafeLayerEntryError });
  t.true(err!.message.includes('"../\\u001b[31mred\\nline" has a ".." component'), err!.message);
  // eslint-disable-next-line no-control-regex
  t.notRegex(err!.message, /[\x00-\x1f\x7f]/);
});
