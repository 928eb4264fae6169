/**
 * Configuration: one schema for the daemon's options (`config.ts`), whether the command line
 * read them from flags, a TOML file or `mount -o`; validated once at start, then frozen.
 */
export { ConfigError, DaemonSecrets, daemonConfig, defaultDramBytes, isLoopback, mountOptionsSchema, type DaemonConfig, type MountOptionsInput, type ParamsWireListen, type TierConfig } from './config.js';
export { formatSize, parseSize } from './sizes.js';
