export type { EntryType, TarHeader, TarEntry, LayerInput } from './types.js';
export { readTar, type ReadTarOptions } from './tar-reader.js';
export { writeTar, encodeHeader } from './tar-writer.js';
export { decompress, detectCompression, type Compression, type DecompressOptions } from './decompress.js';
export { normalizeEntryPath, ROOT } from './paths.js';
export { flatten, flattenToTar, type FlattenOptions } from './flatten.js';
