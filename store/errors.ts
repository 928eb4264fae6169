import { StrataError } from '../errors/index.js';

export type StoreErrorCode =
  | 'STORE_URL_INVALID'
  | 'STORE_NOT_FOUND'
  | 'STORE_BUCKET_NOT_FOUND'
  | 'STORE_ACCESS_DENIED'
  | 'STORE_UNREACHABLE'
  | 'STORE_PRECONDITION_FAILED'
  | 'STORE_INVALID_RANGE'
  | 'STORE_IO';

/** Any failure of an `ObjectStore` call. */
export class StoreError extends StrataError<StoreErrorCode> {}
