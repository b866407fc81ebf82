/**
 * Starts a real Distribution registry (Debian's `docker-registry`) on a free loopback port,
 * optionally behind htpasswd basic auth. Tests push fixtures into it with skopeo.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  /** `user:password` when started with auth. */
  auth?: string;
  /** The registry's storage root (for tests that tamper with what it holds). */
  storage: string;
  /** Pushes an OCI layout tag (`dir:tag`) to `host/repo:tag` with skopeo. */
  push(layoutRef: string, repoTag: string): void;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited early:\n${log()}`);
    try {
      const res = await fetch(url);
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not become ready:\n${log()}`);
}

export async function startRegistry(opts: { auth?: { user: string; password: string } } = {}): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'bhatti-reg-'));
  const port = await freePort();
  let authBlock = '';
  if (opts.auth) {
    // htpasswd -B: the registry only accepts bcrypt entries.
    const line = execFileSync('htpasswd', ['-nbB', opts.auth.user, opts.auth.password], { encoding: 'utf8' }).trim();
    writeFileSync(join(dir, 'htpasswd'), line + '\n');
    authBlock = `auth:\n  htpasswd:\n    realm: bhatti-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  const cfg = join(dir, 'config.yml');
  writeFileSync(
    cfg,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${authBlock}`,
  );
  let output = '';
  const child = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  await waitReady(`http://127.0.0.1:${port}/v2/`, child, () => output);
  const host = `127.0.0.1:${port}`;
  const auth = opts.auth ? `${opts.auth.user}:${opts.auth.password}` : undefined;
  return {
    host,
    port,
    auth,
    storage: join(dir, 'data'),
    push(layoutRef, repoTag) {
      const args = ['copy', '--quiet', '--dest-tls-verify=false'];
      if (auth) args.push('--dest-creds', auth);
      args.push(`oci:${layoutRef}`, `docker://${host}/${repoTag}`);
      execFileSync('skopeo', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
