/**
 * npm run bench [-- --size-mb 150 --runs 3 --vm-image-mb 64 --only pull|vm]
 *
 * Pull + convert of one 100 MB+ multi-layer image from a real loopback registry, this
 * project against the baseline skopeo copy + umoci unpack + mke2fs -d, in one run on the
 * same image. Medians over several runs and ratios, since these machines are noisy; peak
 * RSS from GNU time (largest process of each tree). Not a test: nothing here fails a build,
 * but the RSS budget is reported as PASS/FAIL.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRegistry } from '../test/helpers/registry.js';
import { vmBench } from './vm.js';

const root = resolve(fileURLToPath(import.meta.url), '../..');
const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const sizeMb = arg('size-mb', 150);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const runs = arg('runs', 3);
const RSS_BUDGET_MB = 300;

const work = join(root, '.bench');
const cli = join(root, 'dist', 'cli.js');
if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run `npm run build` first');
if (!existsSync('/usr/bin/time')) throw new Error('GNU time is missing: run scripts/setup.sh (apt package "time")');

interface Sample {
  seconds: number;
  rssMb: number;
}

/** Runs a command under GNU time; returns wall seconds and the peak RSS of its largest process. */
function timed(cmd: string, argv: string[]): Sample {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...argv], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}):\n${r.stderr}`);
  const last = r.stderr.trim().split('\n').pop()!;
  const [e, m] = last.split(' ');
  return { seconds: Number(e), rssMb: Number(m) / 1024 };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const sum = (a: Sample, b: Sample): Sample => ({ seconds: a.seconds + b.seconds, rssMb: Math.max(a.rssMb, b.rssMb) });

async function main() {
  mkdirSync(work, { recursive: true });
  const fixtures = join(work, `fixtures-${sizeMb}mb`);
  if (!existsSync(join(fixtures, 'layout', 'index.json'))) {
    console.log(`building a ${sizeMb} MB multi-layer test image with umoci …`);
    rmSync(fixtures, { recursive: true, force: true });
    execFileSync('bash', [join(root, 'test/fixtures/build-images.sh'), '--big', String(sizeMb), fixtures], { stdio: 'inherit' });
  }
  const registry = await startRegistry();
  try {
    registry.push(`${join(fixtures, 'layout')}:big`, 'bench/big:1');
    const ref = `${registry.host}/bench/big:1`;
    const ours: Sample[] = [];
    const noop: Sample[] = [];
    const cached: Sample[] = [];
    const base: Sample[] = [];
    const baseSteps: Record<string, Sample[]> = { 'skopeo copy': [], 'umoci unpack': [], 'mke2fs -d': [] };
    let imageBytes = 0;
    for (let i = 0; i < runs; i++) {
      const data = join(work, 'data');
      rmSync(data, { recursive: true, force: true });
      ours.push(timed(process.execPath, [cli, 'image', 'pull', ref, '--name', 'big', '--data-dir', data, '--json']));
      noop.push(timed(process.execPath, [cli, 'image', 'pull', ref, '--name', 'big', '--data-dir', data, '--json']));
      cached.push(timed(process.execPath, [cli, 'image', 'pull', ref, '--name', 'big2', '--data-dir', data, '--json']));
      const listed = JSON.parse(execFileSync(process.execPath, [cli, 'image', 'inspect', 'big', '--data-dir', data, '--json'], { encoding: 'utf8' }));
      imageBytes = listed.size;

      const b = join(work, 'baseline');
      rmSync(b, { recursive: true, force: true });
      mkdirSync(b, { recursive: true });
      const s1 = timed('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${b}/layout:big`]);
      const s2 = timed('umoci', ['unpack', '--image', `${b}/layout:big`, `${b}/bundle`]);
      // Same filesystem size as ours, so both build the same amount of ext4.
      const s3 = timed('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', `${b}/bundle/rootfs`, `${b}/rootfs.ext4`, `${Math.ceil(imageBytes / 1024)}k`]);
      baseSteps['skopeo copy']!.push(s1);
      baseSteps['umoci unpack']!.push(s2);
      baseSteps['mke2fs -d']!.push(s3);
      base.push(sum(sum(s1, s2), s3));
      rmSync(b, { recursive: true, force: true });
      rmSync(data, { recursive: true, force: true });
    }

    const compressed = statSync(join(fixtures, 'layout')).isDirectory()
      ? Number(execFileSync('du', ['-sb', join(fixtures, 'layout', 'blobs')], { encoding: 'utf8' }).split('\t')[0])
      : 0;
    const row = (name: string, xs: Sample[], vs?: Sample[]) => {
      const t = median(xs.map((x) => x.seconds));
      const m = median(xs.map((x) => x.rssMb));
      const ratio = vs ? `${(t / median(vs.map((x) => x.seconds))).toFixed(2)}×` : '';
      return `| ${name.padEnd(44)} | ${t.toFixed(2).padStart(8)} s | ${m.toFixed(0).padStart(6)} MB | ${ratio.padStart(8)} |`;
    };
    console.log(`\nImage: ${ref}, ${(compressed / 1e6).toFixed(0)} MB of blobs, ext4 ${(imageBytes / 1e6).toFixed(0)} MB; medians of ${runs} run(s)\n`);
    console.log(`| ${'what'.padEnd(44)} | ${'time'.padStart(10)} | ${'peak RSS'.padStart(9)} | ${'vs base'.padStart(8)} |`);
    console.log(`|${'-'.repeat(46)}|${'-'.repeat(12)}|${'-'.repeat(11)}|${'-'.repeat(10)}|`);
    console.log(row('bhatti image pull (cold cache)', ours, base));
    console.log(row('baseline: skopeo + umoci + mke2fs -d', base, base));
    for (const [k, v] of Object.entries(baseSteps)) console.log(row(`  baseline step: ${k}`, v));
    console.log(row('bhatti re-pull, digest unchanged (no-op)', noop));
    console.log(row('bhatti pull to a new name, layers cached', cached, base));
    const peak = Math.max(...ours.map((x) => x.rssMb), ...cached.map((x) => x.rssMb));
    console.log(`\nPeak RSS of bhatti: ${peak.toFixed(0)} MB (budget ${RSS_BUDGET_MB} MB): ${peak < RSS_BUDGET_MB ? 'PASS' : 'FAIL'}`);
  } finally {
    await registry.stop();
  }
}

if (only !== 'vm') await main();
if (only !== 'pull') await vmBench(work, { runs, smallMb: arg('vm-image-mb', 64) });
