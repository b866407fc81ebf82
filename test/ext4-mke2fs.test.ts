import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortedError, BhattiError } from '../lib/errors.js';
import { Mke2fsBuilder } from '../lib/ext4/mke2fs-builder.js';
import { flatten } from '../lib/layers/flatten.js';
import { readTar } from '../lib/layers/tar-reader.js';
import type { LayerInput } from '../lib/layers/types.js';
import { cat, fsck, ls, readlink, stat, xattrs } from './helpers/e2fs.js';

const work = mkdtempSync(join(tmpdir(), 'ext4-mke2fs-test-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

function sh(script: string, cwd = work): string {
  return execFileSync('sh', ['-ec', script], { cwd, encoding: 'utf8' });
}

/** Builds a layer tar with GNU tar from a directory prepared by `script` (run inside it). */
function layer(name: string, script: string, tarArgs = '.'): LayerInput {
  const dir = join(work, name);
  sh(`mkdir -p ${dir}`);
  sh(script, dir);
  const file = join(work, `${name}.tar`);
  sh(`tar --format=pax --xattrs --xattrs-include='*' --numeric-owner -C ${dir} -cf ${file} ${tarArgs}`);
  const digest = `sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
  return { digest, diffId: digest, open: () => createReadStream(file) };
}

const LONG = 'd'.repeat(60) + '/' + 'n'.repeat(120);
const UNICODE = 'naïve-файл-名前.txt';
const LONG_TARGET = '/usr/lib/' + 'x'.repeat(100);

const base = (): LayerInput =>
  layer(
    'base',
    `
    chmod 0755 .
    mkdir -p bin etc tmp home/user dev ${LONG.split('/')[0]} gone-dir
    echo hello > etc/greeting
    printf 'setuid' > bin/su && chmod 04755 bin/su
    chmod 01777 tmp
    echo mine > home/user/file && chown -R 1234:2345 home/user
    ln -s /etc/greeting etc/link
    ln -s ${LONG_TARGET} etc/longlink
    echo shared > bin/a && ln bin/a bin/b
    mknod dev/null c 1 3 && mknod dev/sda b 8 0 && mkfifo dev/fifo
    echo long > ${LONG}
    echo uni > '${UNICODE}'
    echo cap > bin/ping
    setcap cap_net_raw+ep bin/ping
    python3 -c "import os; os.setxattr('etc/greeting', 'user.bin', bytes([0, 255, 1, 10, 61]))"
    echo bye > etc/removed
    echo x > gone-dir/x
    `,
  );

const upper = (): LayerInput =>
  layer(
    'upper',
    `
    mkdir -p etc
    touch etc/.wh.removed
    touch .wh.gone-dir
    echo new > etc/added
    `,
  );

test('builds a clean ext4 with modes, owners, links, devices, xattrs and names intact', async (t) => {
  const out = join(work, 'image.ext4');
  const tmp = join(work, 'scratch1');
  sh(`mkdir -p ${tmp}`);
  const builder = new Mke2fsBuilder();
  const res = await builder.build(flatten([base(), upper()]), out, { tmpDir: tmp, label: 'rootfs' });

  const check = await fsck(out);
  t.true(check.ok, check.output);
  t.is(res.size, statSync(out).size);
  t.true(res.size >= 64 * 1024 * 1024);
  const digest = `sha256:${createHash('sha256').update(readFileSync(out)).digest('hex')}`;
  t.is(res.digest, digest);
  t.true(res.entries > 15);
  t.deepEqual(readdirSync(tmp), [], 'scratch dir is cleaned up');

  t.is((await cat(out, '/etc/greeting')).toString(), 'hello\n');
  t.is((await cat(out, '/etc/added')).toString(), 'new\n');
  t.deepEqual(await ls(out, '/etc'), ['added', 'greeting', 'link', 'longlink']);
  t.false((await ls(out, '/')).includes('gone-dir'));

  const su = await stat(out, '/bin/su');
  t.is(su.mode, 0o4755);
  t.is((await stat(out, '/tmp')).mode, 0o1777);
  const home = await stat(out, '/home/user/file');
  t.is(home.uid, 1234);
  t.is(home.gid, 2345);
  t.is((await stat(out, '/home/user')).uid, 1234);

  t.is(await readlink(out, '/etc/link'), '/etc/greeting');
  t.is(await readlink(out, '/etc/longlink'), LONG_TARGET);

  const a = await stat(out, '/bin/a');
  const b = await stat(out, '/bin/b');
  t.is(a.ino, b.ino);
  t.is(a.links, 2);

  const nul = await stat(out, '/dev/null');
  t.is(nul.type, 'char');
  t.is(nul.major, 1);
  t.is(nul.minor, 3);
  const sda = await stat(out, '/dev/sda');
  t.is(sda.type, 'block');
  t.is(sda.major, 8);
  t.is((await stat(out, '/dev/fifo')).type, 'fifo');

  t.deepEqual((await xattrs(out, '/etc/greeting'))['user.bin'], Buffer.from([0, 255, 1, 10, 61]));
  const cap = (await xattrs(out, '/bin/ping'))['security.capability'];
  t.truthy(cap);
  const expectedCap = sh(`getfattr --only-values -n security.capability ${join(work, 'base/bin/ping')} 2>/dev/null | od -An -tx1 || python3 -c "import os,sys; sys.stdout.write(os.getxattr('${join(work, 'base/bin/ping')}', 'security.capability').hex())"`);
  t.is(cap!.toString('hex'), expectedCap.replace(/\s+/g, ''));

  t.is((await cat(out, '/' + LONG)).toString(), 'long\n');
  t.is((await cat(out, '/' + UNICODE)).toString(), 'uni\n');

  const root = await stat(out, '/');
  t.is(root.mode, 0o755);
  t.is(root.uid, 0);
});

test('the image root takes the mode and owner of the image root entry', async (t) => {
  const l = layer('rootmeta', 'echo x > f; chmod 0750 .; chown 7:8 .');
  const out = join(work, 'rootmeta.ext4');
  await new Mke2fsBuilder().build(flatten([l]), out, { tmpDir: work, minSize: 8 * 1024 * 1024 });
  t.true((await fsck(out)).ok);
  const root = await stat(out, '/');
  t.is(root.mode, 0o750);
  t.is(root.uid, 7);
  t.is(root.gid, 8);
});

test('sizes the filesystem for many small files and big content', async (t) => {
  // 20000 empty files need more inodes than a 64 MiB default gives at small-file ratios.
  // (Spread over directories: mke2fs 1.47 -d is quadratic in the size of one directory.)
  const l = layer(
    'many',
    `mkdir many && cd many && for d in $(seq 1 20); do mkdir d$d; (cd d$d && seq 1 1000 | xargs touch); done && cd .. && head -c 60M /dev/zero > big`,
  );
  const out = join(work, 'many.ext4');
  const res = await new Mke2fsBuilder().build(flatten([l]), out, { tmpDir: work, headroom: 0.1 });
  const check = await fsck(out);
  t.true(check.ok, check.output);
  t.is(res.contentBytes, 60 * 1024 * 1024);
  t.true(res.size > 60 * 1024 * 1024 && res.size < 300 * 1024 * 1024, `size ${res.size}`);
  t.is((await stat(out, '/many/d20/1000')).type, 'file');
  t.is((await stat(out, '/big')).size, 60 * 1024 * 1024);
  const free = Number(sh(`dumpe2fs -h ${out} 2>/dev/null | sed -n 's/^Free inodes: *//p'`));
  t.true(free > 1000, `free inodes ${free}`);
  rmSync(out);
  rmSync(join(work, 'many'), { recursive: true });
});

test('abort mid-build removes the scratch dir and leaves no child process', async (t) => {
  const l = layer('abort', 'head -c 300M /dev/urandom > big');
  const tmp = join(work, 'scratch-abort');
  sh(`mkdir -p ${tmp}`);
  const ac = new AbortController();
  const p = new Mke2fsBuilder().build(flatten([l], { signal: ac.signal }), join(work, 'abort.ext4'), {
    tmpDir: tmp,
    signal: ac.signal,
  });
  // Wait until GNU tar is running and writing, then pull the plug.
  for (let i = 0; i < 200; i++) {
    if (children().some((c) => c.includes(tmp))) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  t.true(children().some((c) => c.includes(tmp)), 'tar was running');
  await new Promise((r) => setTimeout(r, 200));
  ac.abort();
  await t.throwsAsync(p, { instanceOf: AbortedError });
  t.deepEqual(readdirSync(tmp), []);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(children().filter((c) => c.includes(tmp)), []);
  rmSync(join(work, 'abort'), { recursive: true });
});

test('a missing tool is reported with its Debian package', async (t) => {
  const l = layer('notool', 'echo x > f');
  const err = await t.throwsAsync(
    new Mke2fsBuilder({ mke2fs: 'mke2fs-not-installed-here' }).build(flatten([l]), join(work, 'x.ext4'), { tmpDir: work }),
  );
  t.regex(err!.message, /e2fsprogs/);
});

test('what GNU tar refuses to extract is a one-line user error quoting its first complaint', async (t) => {
  // One archive, made by GNU tar: directory x with x/y, then (appended) a file x over it.
  // Fed to the builder unflattened, so GNU tar itself meets the conflict.
  const name = 'x\x1b[31m';
  const dir = join(work, 'tarfail');
  sh(`mkdir -p ${dir}/a/"$N" ${dir}/b && echo y > ${dir}/a/"$N"/y && echo f > ${dir}/b/"$N"`.replaceAll('$N', name));
  const file = join(work, 'tarfail.tar');
  execFileSync('tar', ['--format=pax', '-C', join(dir, 'a'), '-cf', file, name]);
  execFileSync('tar', ['--format=pax', '-C', join(dir, 'b'), '-rf', file, name]);
  const err = await t.throwsAsync(new Mke2fsBuilder().build(readTar(createReadStream(file)), join(work, 'tarfail.ext4'), { tmpDir: work }), {
    instanceOf: BhattiError,
  });
  const e = err as BhattiError;
  t.is(e.kind, 'user');
  t.is(e.code, 'CORRUPT_IMAGE');
  t.regex(e.message, /^the image's merged filesystem cannot be extracted: x.*: Cannot open: File exists$/);
  t.notRegex(e.message, /Exiting with failure status/);
  // eslint-disable-next-line no-control-regex
  t.notRegex(e.message, /[\x00-\x1f\x7f]/, 'no raw control characters: the message stays one line');
});

/** Commands of this process's direct children. */
function children(): string[] {
  try {
    return execFileSync('ps', ['-o', 'args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('ps '));
  } catch {
    return [];
  }
}
