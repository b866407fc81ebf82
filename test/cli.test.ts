/**
 * The `bhatti` CLI as a user runs it: real processes, a real registry (with and without
 * auth), exit codes, --json output, progress lines, and Ctrl+C in the middle of a pull.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFaultyProxy } from './helpers/faulty-proxy.js';
import { fixtures, layoutRef } from './helpers/fixtures.js';
import { startRegistry, type TestRegistry } from './helpers/registry.js';

const root = resolve(fileURLToPath(import.meta.url), '../..');
let registry: TestRegistry;
let authRegistry: TestRegistry;
const dirs: string[] = [];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI from source (no build needed), optionally sending SIGINT once `interruptWhen` matches stdout. */
function bhatti(args: string[], opts: { env?: NodeJS.ProcessEnv; interruptWhen?: RegExp } = {}): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'cli/main.ts'), ...args], {
      cwd: root,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d) => {
      stdout += d;
      if (opts.interruptWhen && !sent && opts.interruptWhen.test(stdout)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'bhatti-cli-'));
  dirs.push(d);
  return d;
}

test.before(async () => {
  await fixtures();
  registry = await startRegistry();
  registry.push(layoutRef('tiny'), 'test/tiny:1');
  registry.push(layoutRef('multi'), 'test/multi:1');
  authRegistry = await startRegistry({ auth: { user: 'ci', password: 's3cret' } });
  authRegistry.push(layoutRef('tiny'), 'private/tiny:1');
});

test.after.always(async () => {
  await registry?.stop();
  await authRegistry?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('pull, list, inspect, delete with --json and exit code 0', async (t) => {
  const d = dataDir();
  const pull = await bhatti(['image', 'pull', `${registry.host}/test/tiny:1`, '--name', 'app', '--data-dir', d, '--json']);
  t.is(pull.code, 0, pull.stderr);
  const result = JSON.parse(pull.stdout);
  t.is(result.status, 'pulled');
  t.is(result.image.name, 'app');

  const list = await bhatti(['image', 'list', '--data-dir', d, '--json']);
  t.is(list.code, 0);
  t.deepEqual(JSON.parse(list.stdout).map((i: { name: string }) => i.name), ['app']);

  const table = await bhatti(['image', 'list', '--data-dir', d]);
  t.regex(table.stdout.split('\n')[0]!, /^NAME\s+SOURCE\s+DIGEST\s+SIZE\s+SCOPE\s+CREATED$/);
  t.regex(table.stdout, new RegExp(`app\\s+${registry.host}/test/tiny:1\\s+[0-9a-f]{12}\\s+[0-9.]+ MB\\s+private`));

  const inspect = await bhatti(['image', 'inspect', 'app', '--data-dir', d, '--json']);
  t.is(inspect.code, 0);
  t.is(JSON.parse(inspect.stdout).digest, result.image.digest);

  const refuse = await bhatti(['image', 'delete', 'app', '--data-dir', d]);
  t.is(refuse.code, 1, 'no confirmation without a terminal');
  t.regex(refuse.stderr, /-y/);
  const del = await bhatti(['image', 'delete', 'app', '-y', '--data-dir', d]);
  t.is(del.code, 0, del.stderr);
  t.deepEqual(readdirSync(join(d, 'images', 'store')), []);
});

test('without --json a pull prints plain progress lines and says when nothing changed', async (t) => {
  const d = dataDir();
  const first = await bhatti(['image', 'pull', `${registry.host}/test/multi:1`, '--data-dir', d]);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /^Resolving .*test\/multi:1$/m);
  t.regex(first.stdout, /^Layer 1\/4 [0-9a-f]{12}: downloaded/m);
  t.regex(first.stdout, /^Converting to ext4/m);
  t.regex(first.stdout, /^Pulled multi:1 /m);
  t.false(first.stdout.includes('\r'), 'no terminal control characters when not on a TTY');
  const again = await bhatti(['image', 'pull', `${registry.host}/test/multi:1`, '--data-dir', d]);
  t.is(again.code, 0);
  t.regex(again.stdout, /Image multi:1 is up to date \(sha256:[0-9a-f]{64}\)/);
});

test('user errors exit 1 with one line naming the bad value', async (t) => {
  const d = dataDir();
  const cases: [string[], RegExp][] = [
    [['image', 'pull', `${registry.host}/test/tiny:1`, '--name', '../etc'], /"\.\.\/etc"/],
    [['image', 'pull', `${registry.host}/test/nope:1`], /test\/nope:1/],
    [['image', 'pull', 'a//b'], /"a\/\/b"/],
    [['image', 'inspect', 'ghost'], /"ghost"/],
    [['image', 'delete', 'ghost', '-y'], /"ghost"/],
    [['image', 'pull', `${authRegistry.host}/private/tiny:1`], /credentials.*--auth/],
    [['image', 'pull', `${authRegistry.host}/private/tiny:1`, '--auth', 'ci:wrong'], /refused|denied|invalid/i],
    [['image', 'pull', `${authRegistry.host}/private/tiny:1`, '--auth', 'nocolon'], /user:token/],
  ];
  for (const [args, message] of cases) {
    const r = await bhatti([...args, '--data-dir', d]);
    t.is(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, message, args.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    t.regex(r.stderr, /^bhatti: /);
  }
  const usage = await bhatti(['image', 'pull', '--no-such-flag', 'x', '--data-dir', d]);
  t.is(usage.code, 1);
  const json = await bhatti(['image', 'inspect', 'ghost', '--json', '--data-dir', d]);
  t.deepEqual(JSON.parse(json.stderr), { error: { code: 'IMAGE_NOT_FOUND', message: 'image "ghost" not found' } });
  t.deepEqual(readdirSync(join(d, 'images', 'store')), []);
});

test('credentials from --auth or BHATTI_REGISTRY_AUTH', async (t) => {
  const d = dataDir();
  const a = await bhatti(['image', 'pull', `${authRegistry.host}/private/tiny:1`, '--auth', 'ci:s3cret', '--name', 'a', '--data-dir', d, '--json']);
  t.is(a.code, 0, a.stderr);
  const b = await bhatti(['image', 'pull', `${authRegistry.host}/private/tiny:1`, '--name', 'b', '--data-dir', d, '--json'], {
    env: { BHATTI_REGISTRY_AUTH: 'ci:s3cret' },
  });
  t.is(b.code, 0, b.stderr);
  t.is(JSON.parse(b.stdout).downloadedLayers, 0, 'layers came from the blob cache');
});

test('BHATTI_DATA_DIR chooses the data dir', async (t) => {
  const d = dataDir();
  const r = await bhatti(['image', 'pull', `${registry.host}/test/tiny:1`, '--json'], { env: { BHATTI_DATA_DIR: d } });
  t.is(r.code, 0, r.stderr);
  t.true(existsSync(join(d, 'bhatti.db')));
  t.is(readdirSync(join(d, 'images', 'store')).length, 1);
});

test('Ctrl+C mid-pull exits 130 and leaves nothing behind', async (t) => {
  const proxy = await startFaultyProxy(registry.host, { throttle: 100_000 });
  try {
    const d = dataDir();
    const r = await bhatti(['image', 'pull', `${proxy.host}/test/multi:1`, '--data-dir', d], { interruptWhen: /^Resolved /m });
    t.is(r.code, 130, r.stderr);
    t.regex(r.stderr, /interrupted/);
    t.deepEqual(readdirSync(join(d, 'images', 'store')), []);
    t.deepEqual(existsSync(join(d, 'tmp')) ? readdirSync(join(d, 'tmp')) : [], []);
    const list = await bhatti(['image', 'list', '--json', '--data-dir', d]);
    t.deepEqual(JSON.parse(list.stdout), []);
  } finally {
    await proxy.stop();
  }
});
