/**
 * An embedder's view: open the store, pull an image with progress, list what is there.
 *   npx tsx examples/pull-and-list.ts 127.0.0.1:5000/debian/bookworm:minbase [data-dir]
 */
import { Bhatti } from '../lib/index.js';

const [reference, dataDir] = process.argv.slice(2);
if (!reference) {
  console.error('usage: pull-and-list.ts REF [DATA_DIR]');
  process.exit(1);
}

const controller = new AbortController();
process.once('SIGINT', () => controller.abort());

await using bhatti = await Bhatti.open({ dataDir });
const user = 'example';
const result = await bhatti.images
  .pull(reference, { user, signal: controller.signal })
  .on('resolved', (e) => console.log(`resolved ${e.digest}: ${e.layers} layers, ${e.totalBytes} bytes`))
  .on('layer', (e) => e.status !== 'downloading' && e.status !== 'waiting' && console.log(`layer ${e.index}: ${e.status}`))
  .on('converting', (e) => console.log(`converting with ${e.builder}`));
console.log(`${result.status}: ${result.image.name} (${result.image.size} bytes of ext4)`);

for (const image of await bhatti.images.list({ user })) {
  console.log(`${image.name}\t${image.scope}\t${image.source}\t${image.digest}`);
}
