import type { LayerProgress, PullEvents } from '../lib/index.js';
import { formatBytes, shortDigest } from './format.js';

type Listenable = { on<E extends keyof PullEvents>(event: E, fn: PullEvents[E]): unknown };

/**
 * Shows pull progress: a redrawn bar on a terminal, plain lines otherwise (logs, CI),
 * so piped output stays readable.
 */
export function attachPullProgress(op: Listenable, out: NodeJS.WriteStream): () => void {
  const tty = out.isTTY === true;
  const layers = new Map<number, LayerProgress>();
  let total = 0;
  let count = 0;
  let drawn = false;
  let timer: NodeJS.Timeout | undefined;

  const draw = () => {
    let current = 0;
    let done = 0;
    for (const l of layers.values()) {
      current += l.current;
      if (l.status === 'done' || l.status === 'cached') done++;
    }
    const width = 30;
    const frac = total > 0 ? Math.min(1, current / total) : 1;
    const fill = Math.round(frac * width);
    const bar = '='.repeat(Math.max(0, fill - 1)) + (fill > 0 ? '>' : '') + ' '.repeat(width - fill);
    out.write(`\r\x1b[KDownloading [${bar}] ${formatBytes(current)} / ${formatBytes(total)}  ${done}/${count} layers`);
    drawn = true;
  };
  const endLine = () => {
    if (drawn) out.write('\n');
    drawn = false;
  };

  op.on('resolving', (e) => out.write(`Resolving ${e.reference}\n`));
  op.on('resolved', (e) => {
    total = e.totalBytes;
    count = e.layers;
    out.write(`Resolved ${e.digest} (${e.platform}, ${e.layers} layer${e.layers === 1 ? '' : 's'}, ${formatBytes(e.totalBytes)})\n`);
    if (tty) timer = setInterval(draw, 200);
  });
  op.on('layer', (e) => {
    layers.set(e.index, e);
    if (!tty && (e.status === 'done' || e.status === 'cached')) {
      out.write(`Layer ${e.index + 1}/${count} ${shortDigest(e.digest)}: ${e.status === 'cached' ? 'already present' : 'downloaded'} (${formatBytes(e.size)})\n`);
    }
  });
  op.on('converting', (e) => {
    if (timer) clearInterval(timer);
    timer = undefined;
    if (tty) {
      draw();
      endLine();
    }
    out.write(`Converting to ext4 (${e.builder})\n`);
  });
  return () => {
    if (timer) clearInterval(timer);
    endLine();
  };
}
