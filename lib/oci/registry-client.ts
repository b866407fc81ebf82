/**
 * A client for the OCI distribution API (`/v2/`): the auth challenge dance (anonymous or
 * credentialed bearer tokens, basic auth), manifests by tag or digest, and blobs as streams
 * with resumable ranges. Retries only what can succeed on a second try (5xx, 429, network).
 */
import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import got, { type Request as GotRequest, type PlainResponse } from 'got';
import {
  AbortedError,
  BhattiError,
  DigestMismatchError,
  ManifestUnknownError,
  RegistryAuthError,
  RegistryError,
  throwIfAborted,
  BlobUnknownError,
} from '../errors.js';
import { detectManifestMediaType, MANIFEST_ACCEPT } from './manifest.js';
import { registryApiHost, validateDigest } from './reference.js';

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface RegistryClientOptions {
  /** Registry as written in references: `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  registry: string;
  auth?: RegistryCredentials;
  /** Allow plain HTTP and unverified TLS for this registry (always allowed for loopback hosts). */
  insecure?: boolean;
  /** Cancels every request of this client. */
  signal?: AbortSignal;
  /** Retries for 5xx, 429 and network errors (default 3). */
  retries?: number;
  /** First backoff delay; doubles per retry (default 250 ms). */
  retryDelayMs?: number;
  /** Connect, first-byte and idle timeout per request (default 30 s). */
  timeoutMs?: number;
  userAgent?: string;
}

export interface ManifestResponse {
  /** Digest of `bytes` (sha256 unless fetched by a digest of another algorithm). */
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** Manifests are small JSON documents; anything bigger is not a manifest. */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;
/** Error bodies and token answers we bother to read. */
const SMALL_BODY_MAX = 1024 * 1024;
const DEFAULT_USER_AGENT = 'bhatti/0.1 (+@bhatti/core)';

type Scheme = 'https' | 'http';

interface Challenge {
  scheme: 'bearer' | 'basic';
  params: Record<string, string>;
}

interface Sent {
  res: PlainResponse;
  body: GotRequest;
}

/** Is `host[:port]` a loopback address, where plain HTTP is as private as TLS? */
export function isLoopbackHost(hostPort: string): boolean {
  let host = hostPort;
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.includes(':')) host = host.slice(0, host.lastIndexOf(':'));
  host = host.toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Parses `WWW-Authenticate` (RFC 7235: `Scheme k=v, k="v", Scheme2 …`) and returns the first
 * challenge we can answer, Bearer preferred.
 */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const found: { scheme: string; params: Record<string, string> }[] = [];
  const token = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/;
  let rest = header;
  while (rest.length > 0) {
    rest = rest.replace(/^[\s,]+/, '');
    const word = token.exec(rest)?.[0];
    if (!word) break;
    rest = rest.slice(word.length);
    const eq = /^\s*=\s*/.exec(rest);
    if (eq && found.length > 0) {
      // An auth-param of the current challenge.
      rest = rest.slice(eq[0].length);
      let value: string;
      if (rest.startsWith('"')) {
        const m = /^"((?:[^"\\]|\\.)*)"/.exec(rest);
        if (!m) break;
        value = m[1]!.replace(/\\(.)/g, '$1');
        rest = rest.slice(m[0].length);
      } else {
        value = /^[^\s,]*/.exec(rest)![0];
        rest = rest.slice(value.length);
      }
      found[found.length - 1]!.params[word.toLowerCase()] = value;
    } else {
      found.push({ scheme: word.toLowerCase(), params: {} });
    }
  }
  const usable = found.filter((c): c is Challenge => c.scheme === 'bearer' || c.scheme === 'basic');
  return usable.find((c) => c.scheme === 'bearer') ?? usable[0];
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    const onAbort = () => {
      clearTimeout(t);
      reject(new AbortedError());
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function readCapped(stream: Readable, max: number, tooBig: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    n += (chunk as Buffer).length;
    if (n > max) {
      stream.destroy();
      throw tooBig();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'DNS lookup failed',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPROTO: 'TLS handshake failed (is it plain HTTP?)',
};

/** Network errors worth another try; a missing DNS name or a bad certificate will not heal. */
const RETRYABLE_CODES = new Set(['ECONNREFUSED', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);

function errCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code ?? e?.cause?.code ?? '';
}

function isCertError(code: string): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code);
}

/** Readable that drops the first `skip` bytes: a server that ignores Range sends the whole blob. */
class SkipBytes extends Transform {
  constructor(private remaining: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.remaining >= chunk.length) {
      this.remaining -= chunk.length;
      return cb();
    }
    const out = this.remaining > 0 ? chunk.subarray(this.remaining) : chunk;
    this.remaining = 0;
    cb(null, out);
  }
}

/** One registry, one set of credentials; caches the scheme, the auth challenge and tokens per scope. */
export class RegistryClient {
  /** Registry as in references (used in messages). */
  readonly registry: string;
  /** Host that serves the API (`registry-1.docker.io` for `docker.io`). */
  readonly host: string;
  private readonly auth?: RegistryCredentials;
  private readonly allowHttp: boolean;
  private readonly signal?: AbortSignal;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly timeoutMs: number;
  private readonly userAgent: string;
  private pinged?: Promise<Scheme>;
  /** Last challenge seen; null when `/v2/` answered 200 without one. */
  private challenge?: Challenge | null;
  private readonly tokens = new Map<string, { token: string; expires: number }>();

  constructor(opts: RegistryClientOptions) {
    this.registry = opts.registry;
    this.host = registryApiHost(opts.registry);
    this.auth = opts.auth;
    this.allowHttp = opts.insecure === true || isLoopbackHost(this.host);
    this.signal = opts.signal;
    this.retries = opts.retries ?? 3;
    this.retryDelayMs = opts.retryDelayMs ?? 250;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.userAgent = opts.userAgent ?? DEFAULT_USER_AGENT;
  }

  /**
   * Fetches a manifest (or index) by tag or digest. Fetched by digest, the bytes must hash to
   * it; fetched by tag, the digest is computed from the bytes (never taken from headers).
   */
  async getManifest(repository: string, reference: string, opts: RequestOptions = {}): Promise<ManifestResponse> {
    const byDigest = reference.includes(':');
    if (byDigest) this.checkDigest(reference);
    const refName = `${this.registry}/${repository}${byDigest ? '@' : ':'}${reference}`;
    const signal = this.combine(opts.signal);
    const { res, body } = await this.get(`/v2/${repository}/manifests/${reference}`, repository, signal, {
      accept: MANIFEST_ACCEPT.join(', '),
    });
    if (res.statusCode !== 200) await this.fail(res, body, repository, refName, signal);
    const len = Number(res.headers['content-length']);
    const tooBig = () => new RegistryError(this.registry, `manifest of ${refName} is larger than ${MANIFEST_MAX_BYTES} bytes`);
    if (len > MANIFEST_MAX_BYTES) {
      body.destroy();
      throw tooBig();
    }
    const bytes = await this.guard(readCapped(body, MANIFEST_MAX_BYTES, tooBig), signal, `reading manifest ${refName}`);
    const algo = byDigest ? reference.slice(0, reference.indexOf(':')) : 'sha256';
    const digest = `${algo}:${createHash(algo).update(bytes).digest('hex')}`;
    if (byDigest && digest !== reference) throw new DigestMismatchError(reference, digest, `manifest of ${refName}`);
    return { digest, mediaType: detectManifestMediaType(res.headers['content-type'], bytes), bytes };
  }

  /**
   * Opens a blob's bytes as a stream, from `offset` on (Range request; a 200 answer is skipped
   * forward). Follows redirects to blob storage without forwarding credentials. The caller
   * verifies the digest.
   */
  async openBlob(repository: string, digest: string, opts: { offset?: number; signal?: AbortSignal } = {}): Promise<Readable> {
    this.checkDigest(digest);
    const offset = opts.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RegistryError(this.registry, `invalid blob offset ${offset}`);
    const signal = this.combine(opts.signal);
    const what = `blob ${digest} of ${this.registry}/${repository}`;
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const { res, body } = await this.get(`/v2/${repository}/blobs/${digest}`, repository, signal, headers);
    let skip = 0;
    if (res.statusCode === 206 && offset > 0) {
      const start = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1];
      if (start !== undefined && Number(start) !== offset) {
        body.destroy();
        throw new RegistryError(this.registry, `registry ${this.registry} answered a range request for ${what} from byte ${start} instead of ${offset}`);
      }
    } else if (res.statusCode === 200) {
      skip = offset;
    } else {
      await this.fail(res, body, repository, what, signal, digest);
    }
    const out = new SkipBytes(skip);
    body.on('error', (err) => out.destroy(this.mapError(err, signal, `downloading ${what}`)));
    out.on('close', () => {
      if (!body.destroyed) body.destroy();
    });
    body.pipe(out);
    return out;
  }

  /** Reads a small blob (an image config) into memory, refusing more than `max` bytes, and verifies its digest. */
  async readBlob(repository: string, digest: string, max: number, opts: RequestOptions = {}): Promise<Buffer> {
    const stream = await this.openBlob(repository, digest, opts);
    const what = `blob ${digest} of ${this.registry}/${repository}`;
    const bytes = await readCapped(stream, max, () => new RegistryError(this.registry, `${what} is larger than ${max} bytes`));
    const algo = digest.slice(0, digest.indexOf(':'));
    const actual = `${algo}:${createHash(algo).update(bytes).digest('hex')}`;
    if (actual !== digest) throw new DigestMismatchError(digest, actual, what);
    return bytes;
  }

  // ---- internals -------------------------------------------------------------------------

  private checkDigest(digest: string): void {
    const bad = validateDigest(digest);
    if (bad) throw new RegistryError(this.registry, `invalid digest "${digest}": ${bad}`);
  }

  private combine(signal?: AbortSignal): AbortSignal | undefined {
    if (signal && this.signal) return AbortSignal.any([signal, this.signal]);
    return signal ?? this.signal;
  }

  /** Awaits `p`, translating stream and network errors into typed ones. */
  private async guard<T>(p: Promise<T>, signal: AbortSignal | undefined, context?: string): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw this.mapError(err, signal, context);
    }
  }

  private mapError(err: unknown, signal: AbortSignal | undefined, context?: string): BhattiError {
    if (signal?.aborted) return new AbortedError();
    if (err instanceof BhattiError) return err;
    const code = errCode(err);
    if (code === 'ERR_ABORTED' || (err as Error)?.name === 'AbortError') return new AbortedError();
    let reason = NETWORK_REASONS[code];
    if (!reason && isCertError(code)) reason = `TLS certificate rejected (${code}); use the insecure option only if you trust this registry`;
    if (!reason && /SSL|TLS/.test(code)) reason = `TLS error (${code})`;
    reason ??= (err as Error)?.message ?? String(err);
    const msg = context ? `registry ${this.registry}: ${reason} while ${context}` : `cannot reach registry ${this.registry}: ${reason}`;
    return new RegistryError(this.registry, msg, { cause: err });
  }

  /** Sends one GET and resolves once response headers are in; the body is left unread. */
  private send(url: string, headers: Record<string, string>, signal: AbortSignal | undefined, scheme: Scheme): Promise<Sent> {
    throwIfAborted(signal);
    const t = this.timeoutMs;
    const body = got.stream(url, {
      method: 'GET',
      headers: { 'user-agent': this.userAgent, ...headers },
      throwHttpErrors: false,
      retry: { limit: 0 },
      followRedirect: true,
      decompress: false,
      timeout: { lookup: t, connect: t, secureConnect: t, response: t, socket: t },
      https: { rejectUnauthorized: !(scheme === 'https' && this.allowHttp) },
      ...(signal ? { signal } : {}),
    });
    return new Promise<Sent>((resolve, reject) => {
      // The error listener stays: later body errors reach the consumer's own listeners.
      body.on('error', reject);
      body.once('response', (res: PlainResponse) => resolve({ res, body }));
    });
  }

  private backoff(attempt: number, res?: PlainResponse): number {
    const retryAfter = Number(res?.headers['retry-after']);
    if (Number.isFinite(retryAfter) && retryAfter >= 0) return Math.min(retryAfter * 1000, 30_000);
    const base = this.retryDelayMs * 2 ** attempt;
    return Math.min(base * (0.8 + Math.random() * 0.4), 10_000);
  }

  /** GET with retries for 5xx, 429 and network errors; other answers are returned as they are. */
  private async sendWithRetries(url: string, headers: Record<string, string>, signal: AbortSignal | undefined, scheme: Scheme, retries = this.retries): Promise<Sent> {
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(signal);
      let sent: Sent;
      try {
        sent = await this.send(url, headers, signal, scheme);
      } catch (err) {
        const mapped = this.mapError(err, signal);
        if (mapped instanceof AbortedError || attempt >= retries || !RETRYABLE_CODES.has(errCode(err))) throw mapped;
        await sleep(this.backoff(attempt), signal);
        continue;
      }
      const status = sent.res.statusCode;
      if ((status >= 500 || status === 429) && attempt < retries) {
        sent.body.destroy();
        await sleep(this.backoff(attempt, sent.res), signal);
        continue;
      }
      return sent;
    }
  }

  /**
   * Pings `/v2/` once per client to choose the scheme and learn the auth challenge. HTTPS is
   * tried first; plain HTTP only for loopback or insecure registries after HTTPS fails to connect.
   */
  private ensurePinged(signal: AbortSignal | undefined): Promise<Scheme> {
    if (!this.pinged) {
      this.pinged = this.ping(signal);
      // A failed or aborted ping is not remembered: the next call tries again.
      this.pinged.catch(() => (this.pinged = undefined));
    }
    return this.pinged;
  }

  private async ping(signal: AbortSignal | undefined): Promise<Scheme> {
    let sent: Sent;
    let scheme: Scheme = 'https';
    if (this.allowHttp) {
      try {
        sent = await this.send(`https://${this.host}/v2/`, {}, signal, 'https');
      } catch (err) {
        if (signal?.aborted) throw new AbortedError();
        scheme = 'http';
        sent = await this.sendWithRetries(`http://${this.host}/v2/`, {}, signal, 'http');
      }
    } else {
      sent = await this.sendWithRetries(`https://${this.host}/v2/`, {}, signal, 'https');
    }
    const { res, body } = sent;
    body.destroy();
    if (res.statusCode === 401) {
      this.challenge = parseChallenge(res.headers['www-authenticate']) ?? null;
    } else if (res.statusCode === 200) {
      this.challenge = null;
    } else if (res.statusCode === 404) {
      throw new RegistryError(this.registry, `${this.host} does not serve the registry API (/v2/ answered 404)`);
    } else if (res.statusCode >= 500 || res.statusCode === 429) {
      throw new RegistryError(this.registry, `registry ${this.registry} is unavailable (/v2/ answered ${res.statusCode})`);
    }
    // Other answers (403 from some proxies) are left to the real request to explain.
    return scheme;
  }

  /** Authorization header for `repository`, fetching a bearer token if the registry wants one. */
  private async authHeader(repository: string, signal: AbortSignal | undefined): Promise<Record<string, string>> {
    const c = this.challenge;
    if (!c) return {};
    if (c.scheme === 'basic') return this.auth ? { authorization: this.basic() } : {};
    const token = await this.token(c, `repository:${repository}:pull`, signal);
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  private basic(): string {
    return `Basic ${Buffer.from(`${this.auth!.username}:${this.auth!.password}`).toString('base64')}`;
  }

  private async token(c: Challenge, scope: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    const cached = this.tokens.get(scope);
    if (cached && cached.expires > Date.now()) return cached.token;
    const realm = c.params.realm;
    if (!realm || !/^https?:\/\//i.test(realm)) {
      throw new RegistryError(this.registry, `registry ${this.registry} sent a bearer challenge without a usable realm (${JSON.stringify(realm)})`);
    }
    const url = new URL(realm);
    if (c.params.service) url.searchParams.set('service', c.params.service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    if (this.auth) headers.authorization = this.basic();
    const { res, body } = await this.guard(
      this.sendWithRetries(url.toString(), headers, signal, url.protocol === 'https:' ? 'https' : 'http'),
      signal,
      `fetching a token from ${url.host}`,
    );
    if (res.statusCode === 401 || res.statusCode === 403) {
      body.destroy();
      throw new RegistryAuthError(
        this.registry,
        this.auth
          ? `registry ${this.registry} refused the credentials for user "${this.auth.username}"`
          : `registry ${this.registry} requires credentials; pass them with --auth user:token`,
      );
    }
    const text = await this.guard(readCapped(body, SMALL_BODY_MAX, () => new RegistryError(this.registry, 'token answer too large')), signal, 'reading a token');
    if (res.statusCode !== 200) {
      throw new RegistryError(this.registry, `token server ${url.host} answered ${res.statusCode}: ${text.toString('utf8').slice(0, 200).trim()}`);
    }
    let json: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      json = JSON.parse(text.toString('utf8'));
    } catch {
      throw new RegistryError(this.registry, `token server ${url.host} answered with invalid JSON`);
    }
    const token = typeof json.token === 'string' && json.token ? json.token : typeof json.access_token === 'string' ? json.access_token : '';
    if (!token) throw new RegistryError(this.registry, `token server ${url.host} answered without a token`);
    // Tokens live 60 s unless told otherwise; refresh a little early.
    const ttl = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 60;
    this.tokens.set(scope, { token, expires: Date.now() + Math.max(ttl - 10, 5) * 1000 });
    return token;
  }

  /**
   * Authenticated GET of a path on the registry. A 401 with a fresh challenge (or an expired
   * token) earns one retry with new credentials; the answer is returned whatever its status.
   */
  private async get(path: string, repository: string, signal: AbortSignal | undefined, extra: Record<string, string> = {}): Promise<Sent> {
    return this.guard(
      (async () => {
        const scheme = await this.ensurePinged(signal);
        const url = `${scheme}://${this.host}${path}`;
        let sent = await this.sendWithRetries(url, { ...extra, ...(await this.authHeader(repository, signal)) }, signal, scheme);
        if (sent.res.statusCode === 401) {
          const fresh = parseChallenge(sent.res.headers['www-authenticate']);
          // Retry only if the next try can differ: a new challenge, or a bearer token to renew.
          const changed = fresh && JSON.stringify(fresh) !== JSON.stringify(this.challenge);
          if (fresh && (changed || fresh.scheme === 'bearer')) {
            sent.body.destroy();
            this.challenge = fresh;
            this.tokens.delete(`repository:${repository}:pull`);
            sent = await this.sendWithRetries(url, { ...extra, ...(await this.authHeader(repository, signal)) }, signal, scheme);
          }
        }
        return sent;
      })(),
      signal,
    );
  }

  /** Turns a non-success answer into the right typed error. */
  private async fail(res: PlainResponse, body: GotRequest, repository: string, what: string, signal: AbortSignal | undefined, blobDigest?: string): Promise<never> {
    let detail = '';
    let codes: string[] = [];
    try {
      const text = await readCapped(body, SMALL_BODY_MAX, () => new Error('too big'));
      const json = JSON.parse(text.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
      if (Array.isArray(json.errors)) {
        codes = json.errors.map((e) => String(e.code ?? ''));
        detail = json.errors.map((e) => e.message ?? e.code).filter(Boolean).join('; ');
      }
    } catch {
      if (signal?.aborted) throw new AbortedError();
      // Error bodies are optional and often not JSON.
    }
    const status = res.statusCode;
    if (status === 401 || status === 403) {
      let msg: string;
      if (this.auth) {
        msg = `registry ${this.registry} refused access to ${repository} for user "${this.auth.username}" (wrong credentials, or no pull permission)`;
      } else {
        msg = `registry ${this.registry} denied anonymous access to ${repository}: it needs credentials (pass them with --auth user:token), or the repository does not exist`;
      }
      throw new RegistryAuthError(this.registry, msg);
    }
    const unknown = codes.some((c) => c === 'MANIFEST_UNKNOWN' || c === 'NAME_UNKNOWN' || c === 'BLOB_UNKNOWN');
    if (status === 404 || unknown) {
      // A missing blob stays missing: not REGISTRY_UNAVAILABLE, so nobody retries or resumes it.
      if (blobDigest !== undefined) {
        throw new BlobUnknownError(blobDigest, `blob ${blobDigest} not found in ${this.registry}/${repository}${detail ? ` (${detail})` : ''}`);
      }
      throw new ManifestUnknownError(what, detail ? ` (${detail})` : '');
    }
    throw new RegistryError(
      this.registry,
      `registry ${this.registry} answered ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''} for ${what}${detail ? `: ${detail}` : ''}`,
    );
  }
}
