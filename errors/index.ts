export { ERROR_CATALOGUE, type ErrorCode } from './catalogue.js';
export { StrataError, isStrataError } from './strata-error.js';
