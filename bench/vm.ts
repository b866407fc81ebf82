/**
 * VM figures for `npm run bench`: create-to-first-exec latency, exec round trip through
 * VmManager next to qemu-ga's raw round trip on the same VM, 10 concurrent execs, and
 * overlay creation time for a 1× and an 8× bigger image (must not grow with size).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { Bhatti } from '../lib/index.js';
import { QgaClient } from '../lib/vm/agent/qga-client.js';
import { mke2fsImage } from './mkimage.js';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const median = (xs: number[]) => pct(xs, 50);
const ms = (x: number) => `${x.toFixed(1)} ms`;

export async function vmBench(work: string, opts: { runs: number; smallMb: number }): Promise<void> {
  mkdirSync(work, { recursive: true });
  const dataDir = mkdtempSync(join(work, 'vm-'));
  const bhatti = await Bhatti.open({ dataDir });
  const user = 'bench';
  try {
    // Two images of the same content shape, the second 8× bigger, built with mke2fs -d (not by bhatti).
    for (const [name, mb] of [['small', opts.smallMb], ['big8x', opts.smallMb * 8]] as const) {
      const file = await mke2fsImage(join(dataDir, 'tmp'), mb);
      await bhatti.images.addImageFile(file, {
        user,
        name,
        source: `bench:${mb}MB`,
        origin: 'bench',
        config: { env: ['PATH=/bin'], cmd: null, entrypoint: null, workingDir: '/', user: 'root', labels: {}, exposedPorts: [] },
        platform: { os: 'linux', architecture: 'amd64' },
      });
    }

    // 1. create → first exec, cold per sandbox (boot included), medians over runs.
    const firstExec: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const t0 = performance.now();
      await using sb = await bhatti.vms.launch(`first-${i}`, { user, image: 'small', memoryMiB: 256 });
      await sb.run(['true']);
      firstExec.push(performance.now() - t0);
    }

    // 2–3. One VM for round trips and concurrency.
    await using sb = await bhatti.vms.launch('rt', { user, image: 'small', memoryMiB: 256 });
    const info = await sb.info();
    for (let i = 0; i < 5; i++) await sb.run(['true']); // warm up
    const ours: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t0 = performance.now();
      const r = await sb.run(['true']);
      ours.push(performance.now() - t0);
      if (r.exitCode !== 0) throw new Error('exec true failed');
    }
    // Raw qemu-ga on the same VM: guest-exec + guest-exec-status polls, nothing else.
    const runtime = (await bhatti.metadata.getSandbox(user, 'rt'))!.runtime as { agentSocket: string };
    // qemu-ga serves one client: let the engine's connection close before ours opens.
    await new Promise((r) => setTimeout(r, 1000));
    const qga = await QgaClient.connect(runtime.agentSocket);
    const raw: number[] = [];
    try {
      for (let i = 0; i < 100; i++) {
        const t0 = performance.now();
        const pid = await qga.exec({ path: '/bin/chroot', arg: ['/sysroot', '/bin/true'], captureOutput: true });
        for (;;) {
          const st = await qga.execStatus(pid);
          if (st.exited) break;
          await new Promise((r) => setTimeout(r, 1));
        }
        raw.push(performance.now() - t0);
      }
    } finally {
      qga.close();
    }
    const concurrent: number[] = [];
    const sequential: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      let t0 = performance.now();
      await Promise.all(Array.from({ length: 10 }, () => sb.run(['sleep', '0.2'])));
      concurrent.push(performance.now() - t0);
      t0 = performance.now();
      for (let j = 0; j < 10; j++) await sb.run(['sleep', '0.2']);
      sequential.push(performance.now() - t0);
    }

    // 4. Copy-on-write view creation against image size (the engine's create step alone, and a full create+boot).
    const overlay: Record<string, number[]> = { small: [], big8x: [] };
    const boot: Record<string, number[]> = { small: [], big8x: [] };
    for (let i = 0; i < opts.runs; i++) {
      for (const name of ['small', 'big8x']) {
        const image = await bhatti.images.imagePath(name, { user });
        const dir = mkdtempSync(join(dataDir, 'tmp', 'ov-'));
        const t0 = performance.now();
        await bhatti.engine.create({ id: randomUUID(), dir, image, cpus: 1, memoryMiB: 256, volumes: [], env: [], workingDir: '/', user: 'root' });
        overlay[name]!.push(performance.now() - t0);
        rmSync(dir, { recursive: true, force: true });
        const t1 = performance.now();
        await using s2 = await bhatti.vms.launch(`size-${name}-${i}`, { user, image: name, memoryMiB: 256 });
        boot[name]!.push(performance.now() - t1);
        void s2;
      }
    }

    console.log(`\nVM (${info.accel}); medians of ${opts.runs} run(s) unless noted\n`);
    console.log('| what | value | baseline | ratio |');
    console.log('|---|---|---|---|');
    console.log(`| create → first exec | ${ms(median(firstExec))} | | |`);
    console.log(`| exec round trip p50 (100 × \`true\`) | ${ms(pct(ours, 50))} | qemu-ga raw ${ms(pct(raw, 50))} | ${(pct(ours, 50) / pct(raw, 50)).toFixed(2)}× |`);
    console.log(`| exec round trip p99 | ${ms(pct(ours, 99))} | qemu-ga raw ${ms(pct(raw, 99))} | ${(pct(ours, 99) / pct(raw, 99)).toFixed(2)}× |`);
    console.log(`| 10 concurrent \`sleep 0.2\` | ${ms(median(concurrent))} | 10 sequential ${ms(median(sequential))} | ${(median(concurrent) / median(sequential)).toFixed(2)}× |`);
    console.log(`| overlay create, ${opts.smallMb * 8} MB image | ${ms(median(overlay.big8x!))} | ${opts.smallMb} MB image ${ms(median(overlay.small!))} | ${(median(overlay.big8x!) / median(overlay.small!)).toFixed(2)}× |`);
    console.log(`| create+boot, ${opts.smallMb * 8} MB image | ${ms(median(boot.big8x!))} | ${opts.smallMb} MB image ${ms(median(boot.small!))} | ${(median(boot.big8x!) / median(boot.small!)).toFixed(2)}× |`);
  } finally {
    for (const s of await bhatti.vms.list({ user })) await bhatti.vms.destroy(s.name, { user }).catch(() => undefined);
    await bhatti.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
