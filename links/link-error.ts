import { StrataError } from '../errors/index.js';

export type LinkErrorCode = 'LINK_NOT_FOUND' | 'LINK_EXISTS' | 'LINK_OVERLAP' | 'LINK_BUSY' | 'API_BAD_REQUEST';

/** Links: what an admin asked of a link cannot be done as asked (or the links file is not ours). */
export class LinkError extends StrataError<LinkErrorCode> {}
