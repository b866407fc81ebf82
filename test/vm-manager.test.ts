/**
 * Sandboxes end to end: images pulled from a real registry, real QEMU VMs (TCG here),
 * e2fsprogs judging saved images and volumes, and the CLI for exec's exit codes and stdin.
 * One sandbox is shared by the tests that can share it; boots are the slow part.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bhatti, type BhattiError } from '../lib/index.js';
import { cat, fsck } from './helpers/e2fs.js';
import { fixtures, layoutRef } from './helpers/fixtures.js';
import { qemuProcessesMentioning } from './helpers/processes.js';
import { startRegistry, type TestRegistry } from './helpers/registry.js';

const root = resolve(fileURLToPath(import.meta.url), '../..');
const user = userInfo().username;
let registry: TestRegistry;
let bhatti: Bhatti;
let dataDir: string;

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** QEMU processes of this test's data dir. */
const qemuProcesses = (): number[] => qemuProcessesMentioning(dataDir);

function cli(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'cli/main.ts'), ...args], {
      cwd: root,
      env: { ...process.env, BHATTI_DATA_DIR: dataDir, BHATTI_ACCEL: 'tcg' },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    if (input !== undefined) child.stdin!.end(input);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

test.before(async () => {
  await fixtures();
  registry = await startRegistry();
  registry.push(layoutRef('multi'), 'test/multi:1');
  dataDir = mkdtempSync(join(tmpdir(), 'bhatti-vm-'));
  bhatti = await Bhatti.open({ dataDir, accel: 'tcg' });
  await bhatti.images.pull(`${registry.host}/test/multi:1`, { user, name: 'multi' });
  await bhatti.vms.create('main', { user, image: 'multi', memoryMiB: 256 });
});

test.after.always(async () => {
  for (const s of (await bhatti?.vms.list({ user }).catch(() => [])) ?? []) await bhatti.vms.destroy(s.name, { user }).catch(() => undefined);
  await bhatti?.close();
  await registry?.stop();
  for (const pid of dataDir ? qemuProcesses() : []) process.kill(pid, 'SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test.serial('exec returns the exit code and streams stdout and stderr apart', async (t) => {
  const sb = await bhatti.vms.get('main', { user });
  const r = await sb.run(['sh', '-c', 'echo hi; echo err >&2; exit 3']);
  t.is(r.exitCode, 3);
  t.is(r.stdout, 'hi\n');
  t.is(r.stderr, 'err\n');
  t.false(r.timedOut);
});

test.serial('exec honours env, cwd and the user to run as', async (t) => {
  const sb = await bhatti.vms.get('main', { user });
  const r = await sb.run(['sh', '-c', 'echo "$GREETING"; pwd; id -u; id -g'], { env: ['GREETING=hello world'], cwd: '/opt', runAs: 'tester' });
  t.is(r.exitCode, 0, r.stderr);
  t.is(r.stdout, 'hello world\n/opt\n1234\n1234\n');
  const byUid = await sb.run(['id', '-u'], { runAs: '4321' });
  t.is(byUid.stdout.trim(), '4321');
});

test.serial("a bare command name runs the image's program from its PATH, not a boot-kit applet", async (t) => {
  const sb = await bhatti.vms.get('main', { user });
  const mk = await sb.run(['sh', '-c', 'mkdir -p /opt/bin && printf "#!/bin/sh\\necho image-ls \\"\\$@\\"\\n" > /opt/bin/ls && chmod 755 /opt/bin/ls']);
  t.is(mk.exitCode, 0, mk.stderr);
  const r = await sb.run(['ls', '-x', 'y z'], { env: ['PATH=/opt/bin:/bin'] });
  t.is(r.stdout, 'image-ls -x y z\n', r.stderr);
  const missing = await sb.run(['no-such-command']);
  t.is(missing.exitCode, 127);
  t.regex(missing.stderr, /no-such-command: command not found/);
});

test.serial('exec through the CLI: exit code propagates, piped stdin arrives', async (t) => {
  const r = await cli(['exec', 'main', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
  t.is(r.code, 7);
  t.is(r.stdout, 'out\n');
  t.is(r.stderr, 'err\n');
  const piped = await cli(['exec', 'main', '--', 'sh', '-c', 'tr a-z A-Z'], 'piped input\n');
  t.is(piped.code, 0, piped.stderr);
  t.is(piped.stdout, 'PIPED INPUT\n');
  const timeout = await cli(['exec', 'main', '--timeout', '1', '--', 'sleep', '30']);
  t.is(timeout.code, 124);
  t.regex(timeout.stderr, /timed out/);
});

test.serial('ten concurrent execs in one process all complete, faster than one after another', async (t) => {
  const sb = await bhatti.vms.get('main', { user });
  const t0 = Date.now();
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => sb.run(['sh', '-c', `sleep 1; echo ${i}`])));
  const wall = Date.now() - t0;
  t.deepEqual(results.map((r) => r.exitCode), Array(10).fill(0));
  t.deepEqual(results.map((r) => r.stdout), Array.from({ length: 10 }, (_, i) => `${i}\n`));
  t.true(wall < 10_000, `10 × sleep 1 took ${wall} ms`);
});

test.serial('two processes can exec in one sandbox at once (the agent is shared between polls)', async (t) => {
  const t0 = Date.now();
  const slow = cli(['exec', 'main', '--', 'sh', '-c', 'sleep 6; echo slow']);
  await new Promise((r) => setTimeout(r, 2500));
  const quick = await cli(['exec', 'main', '--', 'echo', 'quick']);
  const quickDone = Date.now() - t0;
  t.is(quick.code, 0, quick.stderr);
  t.is(quick.stdout, 'quick\n');
  const s = await slow;
  t.is(s.code, 0, s.stderr);
  t.is(s.stdout, 'slow\n');
  t.true(quickDone < Date.now() - t0, 'the quick exec finished while the slow one was still running');
});

test.serial('the base image is never written; saving a running sandbox makes a clean new image', async (t) => {
  const base = await bhatti.images.imagePath('multi', { user });
  const before = sha256(base);
  const sb = await bhatti.vms.get('main', { user });
  t.is((await sb.run(['sh', '-c', 'echo saved-state > /opt/saved.txt && sync'])).exitCode, 0);
  const img = await bhatti.vms.saveImage('main', { user, name: 'main-snap' });
  t.is(img.origin, 'save');
  t.is(img.source, 'sandbox:main');
  t.is(img.layers.length, 0);
  const file = await bhatti.images.imagePath('main-snap', { user });
  const check = await fsck(file);
  t.true(check.ok, check.output);
  t.is((await cat(file, '/opt/saved.txt')).toString(), 'saved-state\n');
  t.is(sha256(base), before, 'base image unchanged');
  // Still running and usable after the save.
  t.is((await sb.run(['cat', '/opt/saved.txt'])).stdout, 'saved-state\n');
  const taken = await t.throwsAsync(bhatti.vms.saveImage('main', { user, name: 'main-snap' }));
  t.is((taken as BhattiError).code, 'IMAGE_EXISTS');
  const inUse = await t.throwsAsync(bhatti.images.delete('multi', { user }));
  t.is((inUse as BhattiError).code, 'IMAGE_IN_USE');
  t.regex(inUse!.message, /main/);
});

test.serial('stop keeps the root filesystem; exec on a stopped sandbox is refused; start brings it back', async (t) => {
  const sb = await bhatti.vms.get('main', { user });
  await sb.run(['sh', '-c', 'echo across-reboot > /opt/persist.txt; sync']);
  await sb.stop();
  t.is((await sb.info()).state, 'stopped');
  t.deepEqual(qemuProcesses(), []);
  const err = await t.throwsAsync(sb.run(['true']));
  t.is((err as BhattiError).code, 'SANDBOX_STATE');
  t.regex(err!.message, /"main" is stopped/);
  await sb.start();
  t.is((await sb.run(['cat', '/opt/persist.txt'])).stdout, 'across-reboot\n');
});

test.serial('of two concurrent starts one boots and the other says so; the sandbox stays usable', async (t) => {
  await bhatti.vms.stop('main', { user });
  const results = await Promise.allSettled([bhatti.vms.start('main', { user }), bhatti.vms.start('main', { user })]);
  const ok = results.filter((r) => r.status === 'fulfilled');
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  t.is(ok.length, 1, JSON.stringify(failed.map((f) => String(f.reason))));
  t.is(failed[0]!.reason.code, 'SANDBOX_STATE');
  t.regex(failed[0]!.reason.message, /being started by another command/);
  const sb = await bhatti.vms.get('main', { user });
  t.is((await sb.run(['echo', 'still here'])).stdout, 'still here\n');
  t.is(qemuProcesses().length, 1);
});

test.serial('a create killed mid-boot leaves nothing once the next command starts', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'cli/main.ts'), 'create', '--name', 'doomed', '--image', 'multi', '--memory', '256'], {
    cwd: root,
    env: { ...process.env, BHATTI_DATA_DIR: dataDir, BHATTI_ACCEL: 'tcg' },
    stdio: 'ignore',
  });
  // Wait until its QEMU is up, then kill the CLI the hard way.
  const deadline = Date.now() + 30_000;
  while (qemuProcesses().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  t.is(qemuProcesses().length, 2, 'the doomed VM started');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r));
  const next = await cli(['list', '--json']);
  t.is(next.code, 0, next.stderr);
  t.deepEqual(JSON.parse(next.stdout).map((s: { name: string }) => s.name), ['main']);
  t.is(qemuProcesses().length, 1, 'the orphaned QEMU was stopped');
  const again = await bhatti.vms.create('doomed', { user, image: 'multi', memoryMiB: 256 });
  t.is(again.state, 'running');
  await bhatti.vms.destroy('doomed', { user });
});

test.serial('volumes: mounted rw and ro, survive destroy, clone, refuse deletion while attached', async (t) => {
  await bhatti.volumes.create('data', { user, size: 64 << 20 });
  await bhatti.volumes.create('ref', { user, size: 32 << 20 });
  const sb = await bhatti.vms.launch('withvol', {
    user,
    image: 'multi',
    memoryMiB: 256,
    volumes: [
      { volume: 'data', mountPath: '/data', readOnly: false },
      { volume: 'ref', mountPath: '/mnt/ref', readOnly: true },
    ],
  });
  t.is((await sb.run(['sh', '-c', 'echo kept > /data/file && sync'])).exitCode, 0);
  const ro = await sb.run(['sh', '-c', 'touch /mnt/ref/x']);
  t.not(ro.exitCode, 0, 'read-only volume refuses writes');
  t.regex(ro.stderr, /Read-only/i);
  const busy = await t.throwsAsync(bhatti.volumes.delete('data', { user }));
  t.is((busy as BhattiError).code, 'VOLUME_IN_USE');
  const second = await t.throwsAsync(bhatti.vms.create('other', { user, image: 'multi', volumes: [{ volume: 'data', mountPath: '/d', readOnly: false }] }));
  t.is((second as BhattiError).code, 'VOLUME_IN_USE');
  await sb.destroy();
  const vol = join(dataDir, (await bhatti.metadata.getVolume(user, 'data'))!.file);
  t.true((await fsck(vol)).ok);
  t.is((await cat(vol, '/file')).toString(), 'kept\n');
  const copy = await bhatti.volumes.clone('data', 'data-copy', { user });
  t.is(copy.size, 64 << 20);
  t.is((await cat(join(dataDir, (await bhatti.metadata.getVolume(user, 'data-copy'))!.file), '/file')).toString(), 'kept\n');
  await bhatti.volumes.delete('data', { user });
  t.deepEqual((await bhatti.volumes.list({ user })).map((v) => v.name), ['data-copy', 'ref']);
});

test.serial('two concurrent creates cannot both attach one volume read-write', async (t) => {
  await bhatti.volumes.create('contended', { user, size: 32 << 20 });
  const volumes = [{ volume: 'contended', mountPath: '/c', readOnly: false }];
  const results = await Promise.allSettled([
    bhatti.vms.create('race1', { user, image: 'multi', memoryMiB: 256, volumes }),
    bhatti.vms.create('race2', { user, image: 'multi', memoryMiB: 256, volumes }),
  ]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  t.is(won.length, 1, JSON.stringify(lost.map((l) => String(l.reason))));
  t.is(lost[0]!.reason.code, 'VOLUME_IN_USE');
  for (const name of ['race1', 'race2']) await bhatti.vms.destroy(name, { user }).catch(() => undefined);
  await bhatti.volumes.delete('contended', { user });
  t.is(qemuProcesses().length, 1);
});

test.serial('bad input is refused with a clear error and leaves nothing behind', async (t) => {
  const before = readdirSync(join(dataDir, 'sandboxes')).sort();
  const cases: [Promise<unknown>, string, RegExp][] = [
    [bhatti.vms.create('main', { user, image: 'multi' }), 'SANDBOX_EXISTS', /"main"/],
    [bhatti.vms.create('x1', { user, image: 'nope' }), 'IMAGE_NOT_FOUND', /"nope"/],
    [bhatti.vms.create('bad name', { user, image: 'multi' }), 'INVALID_ARGUMENT', /"bad name"/],
    [bhatti.vms.create('x2', { user, image: 'multi', cpus: 999 }), 'INVALID_ARGUMENT', /999/],
    [bhatti.vms.create('x3', { user, image: 'multi', memoryMiB: 10_000_000 }), 'INVALID_ARGUMENT', /10000000/],
    [bhatti.vms.create('x4', { user, image: 'multi', volumes: [{ volume: 'ghost', mountPath: '/g', readOnly: false }] }), 'VOLUME_NOT_FOUND', /"ghost"/],
    [bhatti.vms.exec('ghost', ['true'], { user }), 'SANDBOX_NOT_FOUND', /"ghost"/],
    [bhatti.vms.exec('main', ['true'], { user: 'mallory' }), 'SANDBOX_NOT_FOUND', /"main"/],
    [bhatti.vms.destroy('main', { user: 'mallory' }), 'SANDBOX_NOT_FOUND', /"main"/],
  ];
  for (const [p, code, message] of cases) {
    const err = await t.throwsAsync(p);
    t.is((err as BhattiError).code, code, err?.message);
    t.regex(err!.message, message);
  }
  const mount = await t.throwsAsync(async () => (await import('../lib/index.js')).parseVolumeSpec('data:../etc'));
  t.regex(mount!.message, /"\.\.\/etc"/);
  t.deepEqual(readdirSync(join(dataDir, 'sandboxes')).sort(), before);
  t.deepEqual((await bhatti.vms.list({ user })).map((s) => s.name), ['main']);
  t.is(qemuProcesses().length, 1);
});

test.serial('a guest that never becomes ready fails with its console lines and leaves nothing', async (t) => {
  const junk = join(mkdtempSync(join(dataDir, 'tmp-')), 'junk.ext4');
  writeFileSync(junk, Buffer.alloc(8 << 20));
  await bhatti.images.addImageFile(junk, {
    user,
    name: 'broken',
    source: 'test:zeros',
    origin: 'test',
    config: { env: [], cmd: null, entrypoint: null, workingDir: '/', user: 'root', labels: {}, exposedPorts: [] },
    platform: { os: 'linux', architecture: 'amd64' },
  });
  const err = await t.throwsAsync(bhatti.vms.create('broken', { user, image: 'broken', bootTimeoutMs: 60_000 }));
  t.truthy(err);
  t.regex(err!.message, /console|mount|panic|VFS|sysroot/i, err!.message);
  t.deepEqual((await bhatti.vms.list({ user })).map((s) => s.name), ['main']);
  t.is(qemuProcesses().length, 1);
});

test.serial('a VM killed behind our back is reported stopped, and destroy leaves no process or files', async (t) => {
  const info = await bhatti.vms.inspect('main', { user });
  t.is(info.state, 'running');
  process.kill(info.pid!, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 500));
  // A fresh process (as after a host restart) sees the truth.
  const other = await Bhatti.open({ dataDir, accel: 'tcg' });
  try {
    t.is((await other.vms.inspect('main', { user })).state, 'stopped');
  } finally {
    await other.close();
  }
  await bhatti.vms.destroy('main', { user });
  t.deepEqual(qemuProcesses(), []);
  t.deepEqual(readdirSync(join(dataDir, 'sandboxes')), []);
  t.false(existsSync(join(dataDir, 'sandboxes', info.id)));
  // The image it used can go now.
  await bhatti.images.delete('main-snap', { user });
  t.false((await bhatti.images.list({ user })).some((i) => i.name === 'main-snap'));
});
