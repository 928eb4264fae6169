/**
 * The options the daemon's first step needs (its logs, and the parameter tables answering
 * lookups on the API's address: daemon/params-start.ts), read from the same input by the same
 * rules as the schema (config.ts uses the rules from here) but without loading it: the schema
 * pulls in zod and the parts whose option formats it checks (peers, the cluster), which would
 * hold that first lookup back (bench/startup.ts). The schema still validates every option
 * afterwards; `earlyDisagreement` says if the two readings differ.
 */
export { ConfigError } from './config-error.js';
export { earlyDisagreement, earlyOptions, type EarlyOptions, type ParamsStartConfig } from './early-options.js';
export { DEFAULT_API, DEFAULT_LOOKUP_THREADS, LOG_FORMATS, LOG_LEVELS, MAX_LOOKUP_THREADS, MIN_TOKEN_LENGTH, defaultStateDir, isLoopback, parseHostPort, parseLookupThreads, splitPathSize, type LogFormat, type LogLevel } from './option-rules.js';
