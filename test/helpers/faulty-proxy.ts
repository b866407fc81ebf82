/**
 * A loopback HTTP proxy in front of the real test registry that injects faults into blob
 * downloads: slow transfers (to interrupt a pull mid-way), connections cut after N bytes
 * (to exercise resume), and flipped bytes (to exercise digest checks).
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FaultOptions {
  /** Bytes per second for blob bodies (0 = unthrottled). */
  throttle?: number;
  /** Cut the connection after this many body bytes of a blob response... */
  cutAfter?: number;
  /** ...for this many blob responses (default: all). */
  cutTimes?: number;
  /** Flip one byte in the middle of every blob body. */
  corrupt?: boolean;
}

export interface FaultyProxy {
  host: string;
  /** Blob GET requests seen, with their Range headers. */
  blobRequests: { path: string; range?: string }[];
  faults: FaultOptions;
  stop(): Promise<void>;
}

export async function startFaultyProxy(upstream: string, faults: FaultOptions = {}): Promise<FaultyProxy> {
  const [upHost, upPort] = upstream.split(':') as [string, string];
  const blobRequests: FaultyProxy['blobRequests'] = [];
  let cuts = 0;
  const state: FaultyProxy = { host: '', blobRequests, faults, stop: async () => undefined };
  const server: Server = createServer((req, res) => {
    const isBlob = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');
    if (isBlob) blobRequests.push({ path: req.url!, range: req.headers.range });
    const up = request(
      { host: upHost, port: Number(upPort), method: req.method, path: req.url, headers: { ...req.headers, host: upstream } },
      (upRes: IncomingMessage) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        const f = state.faults;
        if (!isBlob || upRes.statusCode! >= 300) {
          upRes.pipe(res);
          return;
        }
        // Only a response long enough to be cut counts against cutTimes.
        const length0 = Number(upRes.headers['content-length'] ?? 0);
        const cutThis = f.cutAfter !== undefined && length0 > f.cutAfter && (f.cutTimes === undefined || cuts < f.cutTimes);
        if (cutThis) cuts++;
        const length = Number(upRes.headers['content-length'] ?? 0);
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          let out = chunk;
          if (f.corrupt && sent <= length / 2 && sent + chunk.length > length / 2) {
            out = Buffer.from(chunk);
            const i = Math.floor(length / 2) - sent;
            out[i] = out[i]! ^ 0xff;
          }
          if (cutThis && sent + out.length >= f.cutAfter!) {
            // Deliver exactly cutAfter bytes, give the client time to consume them, then drop the connection.
            res.write(out.subarray(0, Math.max(0, f.cutAfter! - sent)));
            sent = f.cutAfter!;
            upRes.removeAllListeners('data');
            upRes.removeAllListeners('end');
            upRes.pause();
            setTimeout(() => {
              upRes.destroy();
              res.destroy();
            }, 300);
            return;
          }
          sent += out.length;
          const flushed = res.write(out);
          if (!flushed || f.throttle) {
            upRes.pause();
            const delay = f.throttle ? (out.length / f.throttle) * 1000 : 0;
            const resume = () => setTimeout(() => upRes.resume(), delay);
            if (flushed) resume();
            else res.once('drain', resume);
          }
        });
        upRes.on('end', () => res.end());
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.stop = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
