import { StrataError } from '../errors/index.js';

export type ParamsErrorCode =
  | 'PARAMS_TABLE_NOT_FOUND'
  | 'PARAMS_TABLE_VERIFYING'
  | 'PARAMS_BAD_INPUT'
  | 'PARAMS_DUPLICATE_KEY'
  | 'PARAMS_BAD_TABLE'
  | 'PARAMS_UNSUPPORTED_MEDIA_TYPE'
  | 'PARAMS_BAD_KEYS'
  | 'PARAMS_BATCH_TOO_LARGE'
  | 'PARAMS_BAD_DELTA'
  | 'PARAMS_NO_SPACE'
  | 'INTERNAL';

/** Any failure of the parameter-table service reported on purpose. */
export class ParamsError extends StrataError<ParamsErrorCode> {}
