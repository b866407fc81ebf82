/**
 * Reference parsing against docker's documented normalisation (distribution/reference:
 * ParseNormalizedNamed + TagNameOnly), written out as expected canonical strings.
 */
import test from 'ava';
import { InvalidReferenceError, InvalidArgumentError } from '../lib/errors.js';
import { familiarReference, parseReference, registryApiHost } from '../lib/oci/reference.js';
import { formatPlatform, parsePlatform, platformMatches, selectPlatform, hostPlatform } from '../lib/oci/platform.js';

const D = 'sha256:' + 'a'.repeat(64);

// [input, registry, repository, tag, digest]
const valid: [string, string, string, string | undefined, string | undefined][] = [
  ['python', 'docker.io', 'library/python', 'latest', undefined],
  ['python:3.12', 'docker.io', 'library/python', '3.12', undefined],
  ['python:3.12-slim-bookworm', 'docker.io', 'library/python', '3.12-slim-bookworm', undefined],
  ['user/app', 'docker.io', 'user/app', 'latest', undefined],
  ['user/app:v1', 'docker.io', 'user/app', 'v1', undefined],
  ['library/python', 'docker.io', 'library/python', 'latest', undefined],
  ['docker.io/python', 'docker.io', 'library/python', 'latest', undefined],
  ['docker.io/library/python:3', 'docker.io', 'library/python', '3', undefined],
  ['index.docker.io/python', 'docker.io', 'library/python', 'latest', undefined],
  ['index.docker.io/user/app:1', 'docker.io', 'user/app', '1', undefined],
  ['localhost/app', 'localhost', 'app', 'latest', undefined],
  ['localhost:5000/app:dev', 'localhost:5000', 'app', 'dev', undefined],
  ['127.0.0.1:5000/test/img:1', '127.0.0.1:5000', 'test/img', '1', undefined],
  ['[::1]:5000/app', '[::1]:5000', 'app', 'latest', undefined],
  ['ghcr.io/org/team/app:2.0', 'ghcr.io', 'org/team/app', '2.0', undefined],
  ['quay.io/coreos/etcd', 'quay.io', 'coreos/etcd', 'latest', undefined],
  ['my-registry.example.com:443/a/b', 'my-registry.example.com:443', 'a/b', 'latest', undefined],
  // A first component without '.' or ':' is a Docker Hub namespace, not a host.
  ['myregistry/app', 'docker.io', 'myregistry/app', 'latest', undefined],
  // Uppercase letters are legal in hosts, so an uppercase first component is a registry.
  ['Example.COM/app', 'Example.COM', 'app', 'latest', undefined],
  [`python@${D}`, 'docker.io', 'library/python', undefined, D],
  [`python:3.12@${D}`, 'docker.io', 'library/python', '3.12', D],
  [`127.0.0.1:5000/x@${D}`, '127.0.0.1:5000', 'x', undefined, D],
  // Path-component separators: '.', '_', '__', and runs of '-'.
  ['ns/a.b_c__d---e', 'docker.io', 'ns/a.b_c__d---e', 'latest', undefined],
  ['app:TAG_with.Dots-1', 'docker.io', 'library/app', 'TAG_with.Dots-1', undefined],
  ['app:_tag', 'docker.io', 'library/app', '_tag', undefined],
  [`app:${'t'.repeat(128)}`, 'docker.io', 'library/app', 't'.repeat(128), undefined],
  // A bare name that looks like host:port is a Docker Hub image with a tag.
  ['localhost:5000', 'docker.io', 'library/localhost', '5000', undefined],
];

for (const [input, registry, repository, tag, digest] of valid) {
  test(`parses ${input.length > 60 ? input.slice(0, 57) + '...' : input}`, (t) => {
    const ref = parseReference(input);
    t.is(ref.registry, registry);
    t.is(ref.repository, repository);
    t.is(ref.tag, tag);
    t.is(ref.digest, digest);
    let canonical = `${registry}/${repository}`;
    if (tag !== undefined) canonical += `:${tag}`;
    if (digest !== undefined) canonical += `@${digest}`;
    t.is(ref.toString(), canonical);
    t.is(`${ref}`, canonical);
    // The canonical form is a fixed point.
    t.is(parseReference(canonical).toString(), canonical);
  });
}

const invalid: [string, RegExp][] = [
  ['', /empty/],
  ['Python', /lowercase/],
  ['user/App', /lowercase/],
  ['ghcr.io/Org/app', /lowercase/],
  ['python:', /tag/],
  ['python:-bad', /tag/],
  ['python:.bad', /tag/],
  [`python:${'t'.repeat(129)}`, /tag/],
  ['python:a b', /tag/],
  ['python@sha256:abc', /sha256|digest/],
  [`python@sha256:${'A'.repeat(64)}`, /lowercase hex/],
  [`python@sha256:${'a'.repeat(63)}`, /sha256/],
  [`python@md5:${'a'.repeat(32)}`, /unsupported digest algorithm/],
  ['python@', /digest/],
  ['a'.repeat(64), /64-byte hexadecimal/],
  ['user//app', /empty path component/],
  ['user/app/', /empty path component/],
  ['/app', /.+/],
  ['-app', /path component/],
  ['app-', /path component/],
  ['a___b', /path component/],
  ['a..b', /path component/],
  ['ghcr.io/', /missing repository/],
  ['-bad.io/app', /registry/],
  ['host:port/app', /registry/],
  // '.' makes the first component a host, and '_' is not legal in one.
  ['a.b_c/app', /registry/],
  [`ghcr.io/${'a'.repeat(250)}`, /255/],
  ['app:tag:tag', /tag|path component/],
  ['app@sha256:' + 'a'.repeat(64) + '@x', /digest/],
  // The grammar allows any digits after ':'; the URL parser would later say only "Invalid URL".
  ['127.0.0.1:99999/x:1', /port 99999/],
  ['localhost:0/x', /port 0\b/],
  ['[::1]:65536/x', /port 65536/],
];

test('ports 1 and 65535 are accepted', (t) => {
  t.is(parseReference('127.0.0.1:65535/x:1').registry, '127.0.0.1:65535');
  t.is(parseReference('localhost:1/x').registry, 'localhost:1');
  t.is(parseReference('[::1]/x').registry, '[::1]');
});

for (const [input, reason] of invalid) {
  test(`rejects ${JSON.stringify(input.length > 40 ? input.slice(0, 37) + '...' : input)}`, (t) => {
    const err = t.throws(() => parseReference(input), { instanceOf: InvalidReferenceError });
    t.regex(err!.message, reason);
    t.true(err!.message.includes(`"${input}"`), 'the message names the input');
    t.is((err as InvalidReferenceError).code, 'INVALID_REFERENCE');
  });
}

test('name limit counts the normalised name (255 ok, 256 not)', (t) => {
  // docker.io/library/ is 18 characters.
  t.notThrows(() => parseReference('a'.repeat(255 - 'docker.io/library/'.length)));
  t.throws(() => parseReference('a'.repeat(256 - 'docker.io/library/'.length)), { instanceOf: InvalidReferenceError });
});

test('Docker Hub API lives on registry-1.docker.io', (t) => {
  t.is(registryApiHost(parseReference('python').registry), 'registry-1.docker.io');
  t.is(registryApiHost('docker.io'), 'registry-1.docker.io');
  t.is(registryApiHost('ghcr.io'), 'ghcr.io');
  t.is(registryApiHost('127.0.0.1:5000'), '127.0.0.1:5000');
});

test('familiar form matches what docker prints', (t) => {
  t.is(familiarReference(parseReference('docker.io/library/python:3')), 'python:3');
  t.is(familiarReference(parseReference('user/app')), 'user/app:latest');
  t.is(familiarReference(parseReference('ghcr.io/o/a:1')), 'ghcr.io/o/a:1');
  t.is(familiarReference(parseReference(`python@${D}`)), `python@${D}`);
});

// ---- platforms ----------------------------------------------------------------------------

const platforms: [string, string][] = [
  ['linux/amd64', 'linux/amd64'],
  ['linux/x86_64', 'linux/amd64'],
  ['linux/arm64', 'linux/arm64/v8'],
  ['linux/aarch64', 'linux/arm64/v8'],
  ['linux/arm64/v8', 'linux/arm64/v8'],
  ['linux/arm', 'linux/arm/v7'],
  ['linux/arm/v6', 'linux/arm/v6'],
  ['linux/armhf', 'linux/arm/v7'],
  ['Linux/AMD64', 'linux/amd64'],
  ['arm64', 'linux/arm64/v8'],
  ['linux/riscv64', 'linux/riscv64'],
  ['linux/386', 'linux/386'],
];
for (const [input, out] of platforms) {
  test(`platform ${input} → ${out}`, (t) => {
    t.is(formatPlatform(parsePlatform(input)), out);
  });
}

for (const bad of ['', ' ', 'linux/', '/amd64', 'linux/arm/v7/x', 'linux/am d64', '../../etc', '..', 'linux/.', 'linux/amd64/..', 'linux/amd64/v8;x']) {
  test(`platform ${JSON.stringify(bad)} is rejected`, (t) => {
    const err = t.throws(() => parsePlatform(bad), { instanceOf: InvalidArgumentError });
    t.true(err!.message.includes(`"${bad}"`));
  });
}

test('platform matching: arm64 without variant is v8; arm v7 runs v6; amd64 is not arm64', (t) => {
  t.true(platformMatches({ os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm64' }));
  t.true(platformMatches({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }));
  t.true(platformMatches({ os: 'linux', architecture: 'arm', variant: 'v7' }, { os: 'linux', architecture: 'arm', variant: 'v6' }));
  t.false(platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, { os: 'linux', architecture: 'arm', variant: 'v7' }));
  t.false(platformMatches({ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }));
  t.false(platformMatches({ os: 'linux', architecture: 'amd64' }, { os: 'windows', architecture: 'amd64' }));
});

test('index selection prefers an exact variant over a compatible one', (t) => {
  const list = [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm', variant: 'v6' },
    { os: 'linux', architecture: 'arm', variant: 'v7' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ];
  t.is(selectPlatform(parsePlatform('linux/arm/v7'), list), 2);
  t.is(selectPlatform(parsePlatform('linux/arm/v6'), list), 1);
  t.is(selectPlatform(parsePlatform('linux/arm64'), list), 3);
  t.is(selectPlatform(parsePlatform('linux/amd64'), list), 0);
  t.is(selectPlatform(parsePlatform('linux/s390x'), list), -1);
});

test('host platform is Linux on the CPU Node runs on', (t) => {
  const expected: Record<string, string> = { x64: 'linux/amd64', arm64: 'linux/arm64/v8' };
  const want = expected[process.arch];
  if (!want) return t.pass(`no expectation for ${process.arch}`);
  t.is(formatPlatform(hostPlatform()), want);
});
