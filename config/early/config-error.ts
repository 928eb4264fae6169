import { StrataError } from '../../errors/index.js';

/** A daemon option that is not valid; the message names the option. */
export class ConfigError extends StrataError<'CONFIG_INVALID'> {}
