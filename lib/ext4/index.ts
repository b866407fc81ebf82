export type { Ext4Builder, Ext4BuildOptions, Ext4BuildResult } from './types.js';
export { Mke2fsBuilder, type Mke2fsBuilderOptions } from './mke2fs-builder.js';
