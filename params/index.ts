export { ParamsService, MAX_BATCH_KEYS, parseKey, type ParamsServiceConfig, type ParamsTableInfo, type RecoveryReport } from './params-service.js';
export { buildTable, type BuildOptions, type BuildReport } from './table-builder.js';
export { allocateDelta, encodeDelta, decodeDelta, DELTA_HEADER_BYTES, type DeltaBody } from './delta-body.js';
export { ServedTable, mgetAnswerBytes } from './served-table.js';
export { defaultTableMapper, MmapTableMapper, ReadTableMapper, type TableMapper } from './table-mapper.js';
export { ParamsError, type ParamsErrorCode } from './params-error.js';
export { crc32c } from './crc32c.js';
export { TableWriter, type TableWriterOptions, type TableWriterResult } from './table-writer.js';
