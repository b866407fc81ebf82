import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CorruptLayerError } from '../lib/errors.js';
import { readTar } from '../lib/layers/tar-reader.js';
import { writeTar } from '../lib/layers/tar-writer.js';
import type { TarEntry, TarHeader } from '../lib/layers/types.js';

const work = mkdtempSync(join(tmpdir(), 'layers-tar-test-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

function sh(script: string, cwd = work): string {
  return execFileSync('sh', ['-ec', script], { cwd, encoding: 'utf8' });
}

const LONG = 'dir-' + 'a'.repeat(90) + '/' + 'file-' + 'b'.repeat(150);
const UNICODE = 'ünïcødé-名前.txt';
const LONG_TARGET = 'target-' + 'c'.repeat(120);
const BIN = Buffer.from([0, 1, 2, 0xff, 0x0a, 0x3d, 0x20]);

// One source tree with everything a root fs holds; built once, archived in each format.
const src = join(work, 'src');
sh(`
mkdir -p ${src} && cd ${src}
mkdir -p '${LONG.split('/')[0]}' sub
echo long > '${LONG}'
echo uni > '${UNICODE}'
printf 'hello' > sub/file && chown 1234:4321 sub/file && chmod 0640 sub/file
printf 'suid' > suid && chmod 04755 suid
mkdir sticky && chmod 01777 sticky
echo linked > orig && ln orig hard
ln -s ${LONG_TARGET} longlink
ln -s sub/file short
mknod cdev c 4 5 && mknod bdev b 7 9 && mkfifo fifo
echo cap > cap && setcap cap_net_raw+ep cap
python3 -c "import os; os.setxattr('sub/file', 'user.bin', bytes.fromhex('${BIN.toString('hex')}'))"
touch -d '2020-01-02 03:04:05.678 UTC' sub/file
`);
const capValue = Buffer.from(sh(`python3 -c "import os; print(os.getxattr('cap', 'security.capability').hex())"`, src).trim(), 'hex');

function archive(format: string, extra = ''): string {
  const file = join(work, `${format}.tar`);
  sh(`tar --format=${format} ${extra} --numeric-owner -C ${src} -cf ${file} .`);
  return file;
}

async function readAll(file: string | Buffer): Promise<Map<string, { header: TarHeader; content: Buffer }>> {
  const out = new Map<string, { header: TarHeader; content: Buffer }>();
  const source = typeof file === 'string' ? createReadStream(file) : Readable.from([file]);
  for await (const e of readTar(source, { digest: 'test' })) {
    const chunks: Buffer[] = [];
    if (e.body) for await (const c of e.body) chunks.push(c as Buffer);
    out.set(e.header.name.replace(/^\.\//, '').replace(/\/$/, ''), { header: e.header, content: Buffer.concat(chunks) });
  }
  return out;
}

for (const format of ['pax', 'gnu', 'ustar'] as const) {
  test(`reads GNU tar --format=${format}`, async (t) => {
    // ustar cannot hold >100-byte link targets or the long name; leave those out there.
    const exclude = format === 'ustar' ? `--exclude=./longlink --exclude='./${LONG.split('/')[0]}'` : '';
    const file = archive(format, format === 'pax' ? "--xattrs --xattrs-include='*'" : exclude);
    const entries = await readAll(file);
    const f = entries.get('sub/file')!;
    t.is(f.header.type, 'file');
    t.is(f.header.uid, 1234);
    t.is(f.header.gid, 4321);
    t.is(f.header.mode, 0o640);
    t.is(f.header.size, 5);
    t.is(f.content.toString(), 'hello');
    t.is(Math.floor(f.header.mtime.getTime() / 1000), Date.UTC(2020, 0, 2, 3, 4, 5) / 1000);
    t.is(entries.get('suid')!.header.mode, 0o4755);
    t.is(entries.get('sticky')!.header.type, 'directory');
    t.is(entries.get('sticky')!.header.mode, 0o1777);
    const links = ['orig', 'hard'].map((n) => entries.get(n)!.header);
    const link = links.find((h) => h.type === 'link')!;
    const target = links.find((h) => h.type === 'file')!;
    t.is(link.linkname, target.name);
    t.is(entries.get('short')!.header.linkname, 'sub/file');
    t.like(entries.get('cdev')!.header, { type: 'character-device', devmajor: 4, devminor: 5 });
    t.like(entries.get('bdev')!.header, { type: 'block-device', devmajor: 7, devminor: 9 });
    t.is(entries.get('fifo')!.header.type, 'fifo');
    t.is(entries.get(UNICODE)!.content.toString(), 'uni\n');
    if (format !== 'ustar') {
      t.is(entries.get(LONG)!.content.toString(), 'long\n');
      t.is(entries.get('longlink')!.header.linkname, LONG_TARGET);
    }
    if (format === 'pax') {
      // Fractional mtime survives through pax.
      t.is(f.header.mtime.getTime() % 1000, 678);
      t.deepEqual(f.header.xattrs?.get('user.bin'), BIN);
      t.deepEqual(entries.get('cap')!.header.xattrs?.get('security.capability'), capValue);
    }
  });
}

test('round trip: GNU tar lists and extracts what the writer produced, binary xattrs intact', async (t) => {
  const file = archive('pax', "--xattrs --xattrs-include='*'");
  const out = join(work, 'rewritten.tar');
  await pipeline(writeTar(readTar(createReadStream(file), { digest: 'rt' })), createWriteStream(out));
  // Our Date has millisecond precision where GNU tar keeps nanoseconds: compare to the millisecond.
  const ms = (listing: string): string[] =>
    listing
      .split('\n')
      .map((l) => l.replace(/:(\d\d)(\.\d+)?\s+/, (_, sec: string, frac = '.0') => `:${sec}.${String(Math.round(parseFloat(`0${frac}`) * 1000)).padStart(3, '0')} `))
      .sort();
  const ours = sh(`tar --numeric-owner --full-time -tvf ${out}`);
  const theirs = sh(`tar --numeric-owner --full-time -tvf ${file}`);
  t.deepEqual(ms(ours), ms(theirs));
  t.true(ours.includes('05.678 ./sub/file'));
  const x = join(work, 'x');
  sh(`mkdir -p ${x} && tar --xattrs --xattrs-include='*' --numeric-owner -p -xf ${out} -C ${x}`);
  t.is(readFileSync(join(x, LONG), 'utf8'), 'long\n');
  t.is(readFileSync(join(x, UNICODE), 'utf8'), 'uni\n');
  const got = (name: string, attr: string): Buffer =>
    Buffer.from(sh(`python3 -c "import os; print(os.getxattr('${name}', '${attr}').hex())"`, x).trim(), 'hex');
  t.deepEqual(got('sub/file', 'user.bin'), BIN);
  t.deepEqual(got('cap', 'security.capability'), capValue);
  t.is(statSync(join(x, 'hard')).ino, statSync(join(x, 'orig')).ino);
  t.is(statSync(join(x, 'suid')).mode & 0o7777, 0o4755);
  t.true(lstatSync(join(x, 'cdev')).isCharacterDevice());
  t.is(sh('getcap cap', x).trim(), 'cap cap_net_raw=ep');
});

test('writer uses pax for values ustar cannot hold, and base-256 is read back', async (t) => {
  const big: TarEntry[] = [
    {
      header: { name: 'big-ids', type: 'file', mode: 0o644, uid: 3_000_000, gid: 70_000_000, size: 3, mtime: new Date(0) },
      body: Readable.from([Buffer.from('abc')]),
    },
    {
      header: { name: 'x/' + 'é'.repeat(70), type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: new Date(1e12), linkname: 'ø'.repeat(80) },
    },
  ];
  const out = join(work, 'big.tar');
  await pipeline(writeTar(Readable.from(big)), createWriteStream(out));
  const listing = sh(`tar --numeric-owner -tvf ${out}`);
  t.regex(listing, /3000000\/70000000\s+3 .* big-ids/);
  t.true(listing.includes(`x/${'é'.repeat(70)} -> ${'ø'.repeat(80)}`));

  // GNU tar writes base-256 for a uid too big for octal in --format=gnu.
  sh(`mkdir -p b256 && echo y > b256/f && chown 3000000000:5 b256/f && tar --format=gnu --numeric-owner -C b256 -cf b256.tar f`);
  const raw = readFileSync(join(work, 'b256.tar'));
  t.is(raw[108]! & 0x80, 0x80, 'uid field is base-256');
  const back = await readAll(join(work, 'b256.tar'));
  t.is(back.get('f')!.header.uid, 3_000_000_000);
});

test('a body is streamed, not buffered: a 64 MiB entry flows in small chunks', async (t) => {
  sh(`mkdir -p s && head -c 64M /dev/zero > s/big && tar -C s -cf s.tar big`);
  let maxChunk = 0;
  let total = 0;
  for await (const e of readTar(createReadStream(join(work, 's.tar')))) {
    for await (const c of e.body!) {
      maxChunk = Math.max(maxChunk, (c as Buffer).length);
      total += (c as Buffer).length;
    }
  }
  t.is(total, 64 * 1024 * 1024);
  t.true(maxChunk <= 64 * 1024);
});

test('unconsumed bodies are skipped, and a truncated body is an error', async (t) => {
  const names: string[] = [];
  for await (const e of readTar(createReadStream(archive('gnu')))) names.push(e.header.name);
  t.true(names.includes('./sub/file'));
  const cut = readFileSync(join(work, 's.tar')).subarray(0, 1_000_000);
  await t.throwsAsync(
    (async () => {
      for await (const e of readTar(Readable.from([cut]), { digest: 'sha256:cut' })) for await (const _ of e.body!) void _;
    })(),
    { instanceOf: CorruptLayerError, message: /sha256:cut/ },
  );
});

test('GNU tar accepts a pax header with a record length spanning digits', async (t) => {
  // Values sized so the record length crosses 99 → 100, where the self-counting length is easy to get wrong.
  const entries: TarEntry[] = [];
  for (let n = 88; n < 100; n++) {
    entries.push({
      header: {
        name: `f${n}`,
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: new Date(0),
        xattrs: new Map([['user.k', Buffer.alloc(n, 0x61)]]),
      },
      body: Readable.from([]),
    });
  }
  const out = join(work, 'digits.tar');
  await pipeline(writeTar(Readable.from(entries)), createWriteStream(out));
  const r = spawnSync('tar', ['--xattrs', '-tf', out], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr, '');
  const back = await readAll(out);
  for (let n = 88; n < 100; n++) t.is(back.get(`f${n}`)!.header.xattrs!.get('user.k')!.length, n);
  writeFileSync(join(work, 'done'), '');
});

// GNU tar writes (but itself refuses to read back) pax numbers out of range; such values used
// to reach our writer as NaN/Infinity and crash it with a RangeError.
const outOfRange: [string, string, string][] = [
  ['uid:=' + '9'.repeat(30), 'uid', 'd/f'],
  ['uid:=4294967301', 'uid', 'd/f'],
  ['gid:=4294967296', 'gid', 'd/f'],
  ['mtime:=' + '9'.repeat(400), 'mtime', 'd/f'],
  ['mtime:=-99999999999999', 'mtime', 'd/f'],
  ['size:=99999999999999999999', 'size', 'd/f'],
];
for (const [option, field, entry] of outOfRange) {
  test(`pax ${option.slice(0, 30)} is a CorruptLayerError naming the entry and field`, async (t) => {
    const dir = join(work, `range-${field}-${option.length}`);
    sh(`mkdir -p ${dir}/d && echo hi > ${dir}/d/f`);
    const file = `${dir}.tar`;
    sh(`tar --format=pax --pax-option='${option}' -C ${dir} -cf ${file} d/f 2>/dev/null`);
    const err = await t.throwsAsync(
      (async () => {
        // Through the writer too: the original crash was there.
        const sink = createWriteStream(join(work, 'null.tar'));
        await pipeline(writeTar(readTar(createReadStream(file), { digest: 'sha256:test' })), sink);
      })(),
      { instanceOf: CorruptLayerError },
    );
    t.true(err!.message.includes(`"${entry}"`), err!.message);
    t.true(err!.message.includes(field), err!.message);
  });
}

test('a huge uid on the root entry and 32-bit edge values', async (t) => {
  const dir = join(work, 'range-root');
  sh(`mkdir -p ${dir} && echo hi > ${dir}/f`);
  sh(`tar --format=pax --pax-option='uid:=1099511627776' -C ${dir} -cf ${dir}.tar . 2>/dev/null`);
  const err = await t.throwsAsync(readAll(`${dir}.tar`), { instanceOf: CorruptLayerError });
  t.regex(err!.message, /entry "\.\/" has an out-of-range uid 1099511627776/);
  // The largest 32-bit ids and a date far in the past are fine, and survive the writer for GNU tar.
  sh(`tar --format=pax --pax-option='uid:=4294967295,gid:=4294967294,mtime:=-2208988800' -C ${dir} -cf ${dir}-ok.tar ./f`);
  const entries = await readAll(`${dir}-ok.tar`);
  t.like(entries.get('f')!.header, { uid: 4294967295, gid: 4294967294 });
  const out = join(work, 'range-ok-out.tar');
  await pipeline(writeTar(readTar(createReadStream(`${dir}-ok.tar`))), createWriteStream(out));
  t.regex(sh(`tar --numeric-owner -tvf ${out}`), /4294967295\/4294967294 .* 1900-01-01/);
});
