import { createReadStream } from 'node:fs';
import { Mke2fsBuilder } from './lib/ext4/mke2fs-builder.js';
import { flatten } from './lib/layers/flatten.js';
const t0 = Date.now();
const res = await new Mke2fsBuilder().build(flatten([{ digest: 'x', open: () => createReadStream('/tmp/prof/l.tar') }]), '/tmp/prof/out.ext4', { tmpDir: '/tmp/prof', headroom: 0.1 });
console.log(res, Date.now() - t0, process.memoryUsage().rss / 1e6);
