/**
 * The registry client and RegistrySource against a real Distribution registry. Test images are
 * built with umoci and pushed with skopeo; expected digests come from umoci's layout and
 * `skopeo manifest-digest`, never from the code under test.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  AbortedError,
  BhattiError,
  DigestMismatchError,
  ManifestUnknownError,
  PlatformNotFoundError,
  RegistryAuthError,
  RegistryError,
  UnsupportedImageError,
} from '../lib/errors.js';
import { RegistryClient, RegistrySource, parsePlatform, parseManifest, normaliseRuntimeConfig } from '../lib/oci/index.js';
import { checkImageManifest } from '../lib/oci/manifest.js';
import { freePort, startRegistry, type TestRegistry } from './helpers/registry.js';

// ---- fixtures -----------------------------------------------------------------------------

interface LayoutEntry {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const work = mkdtempSync(join(tmpdir(), 'bhatti-oci-reg-'));
const L = join(work, 'L');
let reg: TestRegistry;
let authReg: TestRegistry;
const AUTH = { username: 'alice', password: 's3cret-pw' };

let amdDigest = '';
let armDigest = '';
let indexDigest = '';
let dockerDigest = '';
let layerDigest = '';
let layerBytes: Buffer = Buffer.alloc(0);

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function blobPath(digest: string): string {
  return join(L, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

function layoutIndex(): { schemaVersion: number; manifests: LayoutEntry[] } {
  return JSON.parse(readFileSync(join(L, 'index.json'), 'utf8'));
}

function tagDigest(tag: string): string {
  const e = layoutIndex().manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!e) throw new Error(`no tag ${tag} in layout`);
  return e.digest;
}

function skopeoCopyAll(src: string, dest: string, extra: string[] = [], creds?: string): void {
  const args = ['copy', '--quiet', '--all', '--dest-tls-verify=false', ...extra];
  if (creds) args.push('--dest-creds', creds);
  run('skopeo', [...args, `oci:${L}:${src}`, `docker://${dest}`]);
}

/** Digest of what the registry serves, as skopeo computes it. */
function registryDigest(ref: string, creds?: string): string {
  const args = ['inspect', '--raw', '--tls-verify=false'];
  if (creds) args.push('--creds', creds);
  const raw = execFileSync('skopeo', [...args, `docker://${ref}`]);
  const f = join(work, 'raw-manifest');
  writeFileSync(f, raw);
  return run('skopeo', ['manifest-digest', f]).trim();
}

test.before(async () => {
  run('umoci', ['init', '--layout', L]);
  run('umoci', ['new', '--image', `${L}:base`]);
  const bundle = join(work, 'bundle');
  run('umoci', ['unpack', '--image', `${L}:base`, bundle]);
  writeFileSync(join(bundle, 'rootfs', 'hello.txt'), 'hello from a test image\n');
  // Random bytes do not compress, so the layer is big enough for ranges and mid-stream aborts.
  writeFileSync(join(bundle, 'rootfs', 'random.bin'), Buffer.from(Array.from({ length: 1 << 20 }, () => (Math.random() * 256) | 0)));
  run('umoci', ['repack', '--image', `${L}:base`, bundle]);
  run('umoci', ['config', '--image', `${L}:base`, '--tag', 'amd', '--os', 'linux', '--architecture', 'amd64', '--config.cmd', '/bin/sh', '--config.env', 'FOO=bar']);
  run('umoci', ['config', '--image', `${L}:base`, '--tag', 'arm', '--os', 'linux', '--architecture', 'arm64']);
  amdDigest = tagDigest('amd');
  armDigest = tagDigest('arm');
  const amdManifest = JSON.parse(readFileSync(blobPath(amdDigest), 'utf8'));
  layerDigest = amdManifest.layers[0].digest;
  layerBytes = readFileSync(blobPath(layerDigest));

  // A multi-platform index written by hand around umoci's manifests, with a buildkit-style
  // attestation entry that must never be chosen.
  const idx = layoutIndex();
  const entry = (digest: string, platform: object, annotations?: object) => {
    const m = idx.manifests.find((e) => e.digest === digest)!;
    return { mediaType: m.mediaType, digest, size: m.size, platform, ...(annotations ? { annotations } : {}) };
  };
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        entry(amdDigest, { os: 'linux', architecture: 'amd64' }),
        entry(armDigest, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
        entry(amdDigest, { os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest' }),
      ],
    }),
  );
  indexDigest = `sha256:${createHash('sha256').update(index).digest('hex')}`;
  writeFileSync(blobPath(indexDigest), index);
  idx.manifests.push({
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: indexDigest,
    size: index.length,
    annotations: { 'org.opencontainers.image.ref.name': 'multi' },
  });
  writeFileSync(join(L, 'index.json'), JSON.stringify(idx));

  reg = await startRegistry();
  reg.push(`${L}:amd`, 'test/img:amd');
  reg.push(`${L}:arm`, 'test/img:arm');
  skopeoCopyAll('multi', `${reg.host}/test/img:multi`);
  // Docker formats: a schema2 manifest and a manifest list, converted by skopeo.
  skopeoCopyAll('amd', `${reg.host}/test/img:docker`, ['--format', 'v2s2']);
  skopeoCopyAll('multi', `${reg.host}/test/img:dockerlist`, ['--format', 'v2s2']);
  dockerDigest = registryDigest(`${reg.host}/test/img:docker`);

  authReg = await startRegistry({ auth: { user: AUTH.username, password: AUTH.password } });
  authReg.push(`${L}:amd`, 'test/img:amd');
});

test.after.always(async () => {
  await reg?.stop();
  await authReg?.stop();
  rmSync(work, { recursive: true, force: true });
});

const amd64 = parsePlatform('linux/amd64');
const arm64 = parsePlatform('linux/arm64');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

// ---- resolve --------------------------------------------------------------------------------

test('resolves an OCI image by tag', async (t) => {
  const src = new RegistrySource(`${reg.host}/test/img:amd`);
  t.is(src.description, `${reg.host}/test/img:amd`);
  const img = await src.resolve({ platform: amd64 });
  t.is(img.manifestDigest, amdDigest);
  t.is(img.indexDigest, undefined);
  t.is(img.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  t.deepEqual(img.platform, { os: 'linux', architecture: 'amd64' });
  const manifest = JSON.parse(readFileSync(blobPath(amdDigest), 'utf8'));
  t.deepEqual(img.layers.map((l) => l.digest), manifest.layers.map((l: LayoutEntry) => l.digest));
  t.is(img.configDescriptor.digest, manifest.config.digest);
  t.deepEqual(img.config.config?.Cmd, ['/bin/sh']);
  t.is(img.config.rootfs?.diff_ids.length, 1);
  const rc = normaliseRuntimeConfig(img.config);
  t.true(rc.env.includes('FOO=bar'));
  t.deepEqual(rc.cmd, ['/bin/sh']);
});

test('resolves by digest', async (t) => {
  const img = await new RegistrySource(`${reg.host}/test/img@${armDigest}`).resolve({ platform: arm64 });
  t.is(img.manifestDigest, armDigest);
  t.is(img.config.architecture, 'arm64');
});

test('chooses the platform from an OCI index and skips attestations', async (t) => {
  const src = new RegistrySource(`${reg.host}/test/img:multi`);
  const arm = await src.resolve({ platform: arm64 });
  t.is(arm.manifestDigest, armDigest);
  t.is(arm.indexDigest, indexDigest);
  t.deepEqual(arm.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
  const amd = await src.resolve({ platform: amd64 });
  t.is(amd.manifestDigest, amdDigest);
  // The index by its digest resolves the same way.
  const byDigest = await new RegistrySource(`${reg.host}/test/img@${indexDigest}`).resolve({ platform: arm64 });
  t.is(byDigest.manifestDigest, armDigest);
});

test('a platform the index lacks is PlatformNotFoundError listing what there is', async (t) => {
  const err = await t.throwsAsync(new RegistrySource(`${reg.host}/test/img:multi`).resolve({ platform: parsePlatform('linux/s390x') }), {
    instanceOf: PlatformNotFoundError,
  });
  t.regex(err!.message, /linux\/s390x/);
  t.regex(err!.message, /linux\/amd64/);
  t.regex(err!.message, /linux\/arm64/);
  t.notRegex(err!.message, /unknown/);
});

test('a single-platform image for another CPU is PlatformNotFoundError', async (t) => {
  const err = await t.throwsAsync(new RegistrySource(`${reg.host}/test/img:arm`).resolve({ platform: amd64 }), {
    instanceOf: PlatformNotFoundError,
  });
  t.regex(err!.message, /linux\/arm64/);
});

test('resolves Docker schema2 manifests and manifest lists', async (t) => {
  const img = await new RegistrySource(`${reg.host}/test/img:docker`).resolve({ platform: amd64 });
  t.is(img.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  t.is(img.manifestDigest, dockerDigest);
  t.is(img.layers[0]!.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip');
  const listDigest = registryDigest(`${reg.host}/test/img:dockerlist`);
  const fromList = await new RegistrySource(`${reg.host}/test/img:dockerlist`).resolve({ platform: arm64 });
  t.is(fromList.indexDigest, listDigest);
  t.is(fromList.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  t.is(fromList.config.architecture, 'arm64');
});

test('the client returns manifest bytes that hash to the digest skopeo reports', async (t) => {
  const client = new RegistryClient({ registry: reg.host });
  const m = await client.getManifest('test/img', 'docker');
  t.is(m.digest, dockerDigest);
  t.is(`sha256:${createHash('sha256').update(m.bytes).digest('hex')}`, dockerDigest);
  const idx = await client.getManifest('test/img', indexDigest);
  t.is(idx.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.deepEqual(idx.bytes, readFileSync(blobPath(indexDigest)));
});

// ---- blobs ----------------------------------------------------------------------------------

test('blob stream bytes hash to their digest', async (t) => {
  const src = new RegistrySource(`${reg.host}/test/img:amd`);
  const img = await src.resolve({ platform: amd64 });
  const bytes = await readAll(await src.openBlob(img.layers[0]!));
  t.is(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layerDigest);
  t.is(bytes.length, img.layers[0]!.size);
  t.true(bytes.equals(layerBytes));
});

test('openBlob resumes from an offset', async (t) => {
  const client = new RegistryClient({ registry: reg.host });
  for (const offset of [1, 1000, layerBytes.length - 1]) {
    const bytes = await readAll(await client.openBlob('test/img', layerDigest, { offset }));
    t.true(bytes.equals(layerBytes.subarray(offset)), `offset ${offset}`);
  }
});

// ---- errors ---------------------------------------------------------------------------------

test('an unknown tag or repository is ManifestUnknownError naming the reference', async (t) => {
  const e1 = await t.throwsAsync(new RegistrySource(`${reg.host}/test/img:nope`).resolve({ platform: amd64 }), { instanceOf: ManifestUnknownError });
  t.true(e1!.message.includes(`${reg.host}/test/img:nope`));
  const e2 = await t.throwsAsync(new RegistrySource(`${reg.host}/no/such:1`).resolve({ platform: amd64 }), { instanceOf: ManifestUnknownError });
  t.true(e2!.message.includes(`${reg.host}/no/such:1`));
  const d = `sha256:${'0'.repeat(64)}`;
  const e3 = await t.throwsAsync(new RegistryClient({ registry: reg.host }).getManifest('test/img', d), { instanceOf: ManifestUnknownError });
  t.true(e3!.message.includes(d));
});

test('a missing blob is a BLOB_UNKNOWN user error naming it, not a retryable RegistryError', async (t) => {
  const d = `sha256:${'1'.repeat(64)}`;
  const err = await t.throwsAsync(new RegistryClient({ registry: reg.host }).openBlob('test/img', d), { instanceOf: BhattiError });
  // REGISTRY_UNAVAILABLE would make the blob store resume the download again and again.
  t.false(err instanceof RegistryError);
  t.is((err as BhattiError).code, 'BLOB_UNKNOWN');
  t.is((err as BhattiError).kind, 'user');
  t.regex(err!.message, new RegExp(`^blob ${d} not found in ${reg.host.replace(/[.[\]]/g, '\\$&')}/test/img\\b`));
});

/**
 * Pushes a copy of the amd image whose config `edit` changed, optionally wrapped in an index
 * whose only entry has `platform`; the registry (and skopeo) accept any strings there.
 */
function pushEdited(tag: string, edit: (config: Record<string, unknown>) => void, platform?: object): void {
  const manifest = JSON.parse(readFileSync(blobPath(amdDigest), 'utf8'));
  const config = JSON.parse(readFileSync(blobPath(manifest.config.digest), 'utf8'));
  edit(config);
  const put = (bytes: Buffer): string => {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    writeFileSync(blobPath(digest), bytes);
    return digest;
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  manifest.config = { ...manifest.config, digest: put(configBytes), size: configBytes.length };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  let top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: put(manifestBytes), size: manifestBytes.length };
  if (platform) {
    const index = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ ...top, platform }] }),
    );
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: put(index), size: index.length };
  }
  const idx = layoutIndex();
  idx.manifests.push({ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } });
  writeFileSync(join(L, 'index.json'), JSON.stringify(idx));
  skopeoCopyAll(tag, `${reg.host}/test/img:${tag}`);
}

test('a config platform that could not be stored and parsed back is UnsupportedImageError naming it', async (t) => {
  pushEdited('badvariant', (c) => {
    c.variant = '../../x y';
  });
  const err = await t.throwsAsync(new RegistrySource(`${reg.host}/test/img:badvariant`).resolve({ platform: amd64 }), {
    instanceOf: UnsupportedImageError,
  });
  t.true(err!.message.includes('../../x y'), err!.message);
  t.true(err!.message.includes(`${reg.host}/test/img:badvariant`), err!.message);
  pushEdited('badarch', (c) => {
    c.architecture = 'amd64\n';
  });
  const err2 = await t.throwsAsync(new RegistrySource(`${reg.host}/test/img:badarch`).resolve({ platform: amd64 }), {
    instanceOf: UnsupportedImageError,
  });
  t.false(err2!.message.includes('\n'), 'the message stays one line');
});

test('an index entry platform that could not be stored is UnsupportedImageError naming it', async (t) => {
  pushEdited('badentry', () => {}, { os: 'linux', architecture: 'amd64', variant: '../..' });
  const err = await t.throwsAsync(new RegistrySource(`${reg.host}/test/img:badentry`).resolve({ platform: amd64 }), {
    instanceOf: UnsupportedImageError,
  });
  t.true(err!.message.includes('"../.."'), err!.message);
});

test('an unreachable registry is a RegistryError, quickly', async (t) => {
  const port = await freePort();
  const started = Date.now();
  const err = await t.throwsAsync(new RegistrySource(`127.0.0.1:${port}/x/y:1`, { retryDelayMs: 50 }).resolve({ platform: amd64 }), {
    instanceOf: RegistryError,
  });
  t.is(err!.message, `cannot reach registry 127.0.0.1:${port}: connection refused`);
  t.true(Date.now() - started < 5000);
});

test('basic-auth registry: no credentials, right ones, wrong ones', async (t) => {
  const anon = await t.throwsAsync(new RegistrySource(`${authReg.host}/test/img:amd`).resolve({ platform: amd64 }), {
    instanceOf: RegistryAuthError,
  });
  t.regex(anon!.message, /--auth user:token/);
  t.true(anon!.message.includes(authReg.host));

  const src = new RegistrySource(`${authReg.host}/test/img:amd`, { auth: AUTH });
  const img = await src.resolve({ platform: amd64 });
  t.is(img.manifestDigest, amdDigest);
  const bytes = await readAll(await src.openBlob(img.layers[0]!));
  t.is(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layerDigest);

  const wrong = await t.throwsAsync(
    new RegistrySource(`${authReg.host}/test/img:amd`, { auth: { username: 'alice', password: 'nope' } }).resolve({ platform: amd64 }),
    { instanceOf: RegistryAuthError },
  );
  t.regex(wrong!.message, /refused/);
  t.regex(wrong!.message, /alice/);
});

// ---- a bearer-token front (what docker.io does) --------------------------------------------

interface TokenProxy {
  host: string;
  /** Scopes asked for at /token. */
  tokenScopes: string[];
  /** Answer this many /v2/ requests with 503 first. */
  failNext: number;
  /** Append a byte to manifests fetched by digest. */
  corrupt: boolean;
  /** Drop Range headers, as a server without range support would. */
  ignoreRange: boolean;
  stop(): Promise<void>;
}

/**
 * A loopback server that demands bearer tokens for `/v2/`, issues them at `/token` (checking
 * basic credentials if configured) and forwards authorised requests to the real registry.
 */
async function startTokenProxy(upstream: string, creds?: { username: string; password: string }, field: 'token' | 'access_token' = 'token'): Promise<TokenProxy> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const issued = new Set<string>();
  const state: TokenProxy = { host, tokenScopes: [], failNext: 0, corrupt: false, ignoreRange: false, stop: async () => {} };
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', `http://${host}`);
    if (url.pathname === '/token') {
      const want = creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : undefined;
      if (want && req.headers.authorization !== want) {
        res.writeHead(401).end('{"details":"incorrect username or password"}');
        return;
      }
      state.tokenScopes.push(url.searchParams.get('scope') ?? '');
      const tok = `tok-${issued.size + 1}`;
      issued.add(tok);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ [field]: tok, expires_in: 300 }));
      return;
    }
    if (state.failNext > 0) {
      state.failNext--;
      res.writeHead(503).end();
      return;
    }
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer || !issued.has(bearer)) {
      const scope = /^\/v2\/(.+)\/(?:manifests|blobs)\//.exec(url.pathname)?.[1];
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="http://${host}/token",service="proxy-test"${scope ? `,scope="repository:${scope}:pull"` : ''}`,
        'content-type': 'application/json',
      });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    const headers: Record<string, string> = {};
    if (req.headers.accept) headers.accept = req.headers.accept;
    if (req.headers.range && !state.ignoreRange) headers.range = req.headers.range;
    const up = await fetch(`http://${upstream}${url.pathname}`, { headers });
    const out: Record<string, string> = {};
    for (const h of ['content-type', 'docker-content-digest', 'content-range']) {
      const v = up.headers.get(h);
      if (v) out[h] = v;
    }
    res.writeHead(up.status, out);
    if (state.corrupt && /\/manifests\/sha256:/.test(url.pathname)) {
      res.end(Buffer.concat([Buffer.from(await up.arrayBuffer()), Buffer.from(' ')]));
      return;
    }
    if (!up.body) return void res.end();
    Readable.fromWeb(up.body as never).pipe(res);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  state.stop = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}

test('bearer tokens: anonymous token flow, one token per scope', async (t) => {
  const proxy = await startTokenProxy(reg.host);
  t.teardown(() => proxy.stop());
  const src = new RegistrySource(`${proxy.host}/test/img:multi`);
  const img = await src.resolve({ platform: arm64 });
  t.is(img.manifestDigest, armDigest);
  const bytes = await readAll(await src.openBlob(img.layers[0]!));
  t.true(bytes.equals(layerBytes));
  t.deepEqual(proxy.tokenScopes, ['repository:test/img:pull']);
});

test('bearer tokens: credentials go to the token server; access_token is accepted', async (t) => {
  const proxy = await startTokenProxy(reg.host, AUTH, 'access_token');
  t.teardown(() => proxy.stop());
  const img = await new RegistrySource(`${proxy.host}/test/img:amd`, { auth: AUTH }).resolve({ platform: amd64 });
  t.is(img.manifestDigest, amdDigest);
  const err = await t.throwsAsync(
    new RegistrySource(`${proxy.host}/test/img:amd`, { auth: { username: 'alice', password: 'bad' } }).resolve({ platform: amd64 }),
    { instanceOf: RegistryAuthError },
  );
  t.regex(err!.message, /refused the credentials for user "alice"/);
  const anon = await t.throwsAsync(new RegistrySource(`${proxy.host}/test/img:amd`).resolve({ platform: amd64 }), { instanceOf: RegistryAuthError });
  t.regex(anon!.message, /--auth user:token/);
});

test('5xx answers are retried, then reported', async (t) => {
  const proxy = await startTokenProxy(reg.host);
  t.teardown(() => proxy.stop());
  proxy.failNext = 2;
  const img = await new RegistrySource(`${proxy.host}/test/img:amd`, { retryDelayMs: 10 }).resolve({ platform: amd64 });
  t.is(img.manifestDigest, amdDigest);
  t.is(proxy.failNext, 0);
  proxy.failNext = 100;
  const err = await t.throwsAsync(new RegistryClient({ registry: proxy.host, retries: 2, retryDelayMs: 10 }).getManifest('test/img', 'amd'), {
    instanceOf: RegistryError,
  });
  t.regex(err!.message, /503/);
  t.is(proxy.failNext, 97, 'one try plus two retries');
});

test('a manifest that does not hash to its digest is DigestMismatchError', async (t) => {
  const proxy = await startTokenProxy(reg.host);
  t.teardown(() => proxy.stop());
  proxy.corrupt = true;
  await t.throwsAsync(new RegistryClient({ registry: proxy.host }).getManifest('test/img', amdDigest), { instanceOf: DigestMismatchError });
});

test('a server that ignores Range still yields the bytes from the offset', async (t) => {
  const proxy = await startTokenProxy(reg.host);
  t.teardown(() => proxy.stop());
  proxy.ignoreRange = true;
  const bytes = await readAll(await new RegistryClient({ registry: proxy.host }).openBlob('test/img', layerDigest, { offset: 12345 }));
  t.true(bytes.equals(layerBytes.subarray(12345)));
});

// ---- cancellation ---------------------------------------------------------------------------

test('an aborted signal rejects with AbortedError', async (t) => {
  const ac = new AbortController();
  ac.abort();
  await t.throwsAsync(new RegistrySource(`${reg.host}/test/img:amd`).resolve({ platform: amd64, signal: ac.signal }), { instanceOf: AbortedError });
  // The client-wide signal works too.
  await t.throwsAsync(new RegistryClient({ registry: reg.host, signal: ac.signal }).getManifest('test/img', 'amd'), { instanceOf: AbortedError });
});

test('aborting mid-download errors the blob stream with AbortedError', async (t) => {
  const ac = new AbortController();
  const stream = await new RegistryClient({ registry: reg.host }).openBlob('test/img', layerDigest, { signal: ac.signal });
  const err = await t.throwsAsync(
    (async () => {
      let n = 0;
      for await (const c of stream) {
        n += (c as Buffer).length;
        if (n > 0) ac.abort();
      }
    })(),
  );
  t.true(err instanceof AbortedError, `got ${err?.name}: ${err?.message}`);
});

test('aborting during retry backoff stops at once', async (t) => {
  const proxy = await startTokenProxy(reg.host);
  t.teardown(() => proxy.stop());
  proxy.failNext = 1000;
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  const started = Date.now();
  await t.throwsAsync(new RegistryClient({ registry: proxy.host, retryDelayMs: 5000 }).getManifest('test/img', 'amd', { signal: ac.signal }), {
    instanceOf: AbortedError,
  });
  t.true(Date.now() - started < 2000);
});

// ---- manifest checks on hand-written documents ----------------------------------------------

test('schema1 manifests are UnsupportedImageError', (t) => {
  const doc = Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [], history: [] }));
  const e1 = t.throws(() => parseManifest(doc, 'application/vnd.docker.distribution.manifest.v1+prettyjws', 'x:y'), { instanceOf: UnsupportedImageError });
  t.regex(e1!.message, /schema 1/);
  t.throws(() => parseManifest(doc, 'application/json', 'x:y'), { instanceOf: UnsupportedImageError });
});

test('foreign layers and unknown layer types are UnsupportedImageError', (t) => {
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  const manifest = (layerType: string, urls?: string[]) =>
    parseManifest(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: d('a'), size: 10 },
          layers: [{ mediaType: layerType, digest: d('b'), size: 10, ...(urls ? { urls } : {}) }],
        }),
      ),
      'application/vnd.docker.distribution.manifest.v2+json',
      'x:y',
    );
  const foreign = manifest('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', ['https://example.com/l']);
  t.throws(() => checkImageManifest(foreign as never, 'x:y'), { instanceOf: UnsupportedImageError, message: /foreign/ });
  t.throws(() => checkImageManifest(manifest('application/vnd.in-toto+json') as never, 'x:y'), { instanceOf: UnsupportedImageError });
  t.notThrows(() => checkImageManifest(manifest('application/vnd.oci.image.layer.v1.tar+zstd') as never, 'x:y'));
  // A digest that is not a digest never gets near the blob cache.
  t.throws(
    () =>
      parseManifest(
        Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: 'x', digest: 'sha256:../../etc', size: 1 }, layers: [] })),
        'application/vnd.oci.image.manifest.v1+json',
        'x:y',
      ),
    { instanceOf: UnsupportedImageError },
  );
});

test('normaliseRuntimeConfig fills docker defaults', (t) => {
  t.deepEqual(normaliseRuntimeConfig({}), {
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    cmd: null,
    entrypoint: null,
    workingDir: '/',
    user: 'root',
    labels: {},
    exposedPorts: [],
  });
  const rc = normaliseRuntimeConfig({
    config: { Env: ['PATH=/x', 'A=1'], Entrypoint: ['/e'], Cmd: ['c'], WorkingDir: '/app', User: '1000:1000', Labels: { a: 'b' }, ExposedPorts: { '80/tcp': {}, '53/udp': {} } },
  });
  t.deepEqual(rc, { env: ['PATH=/x', 'A=1'], cmd: ['c'], entrypoint: ['/e'], workingDir: '/app', user: '1000:1000', labels: { a: 'b' }, exposedPorts: ['53/udp', '80/tcp'] });
});
