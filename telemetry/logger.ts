import { pino, type Logger } from 'pino';

export type { Logger };

export interface LoggerConfig {
  readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
}

/**
 * The process logger: JSON lines on stderr, so stdout stays free for command output.
 * Credentials never reach it: the redact list removes the fields where they could
 * appear if an SDK object or request header is logged by mistake.
 */
export function createLogger(config: LoggerConfig = { level: 'info' }): Logger {
  return pino(
    {
      level: config.level,
      base: { pid: process.pid },
      redact: {
        paths: [
          'credentials',
          '*.credentials',
          'secretAccessKey',
          '*.secretAccessKey',
          'sessionToken',
          '*.sessionToken',
          'authorization',
          '*.authorization',
          'headers.authorization',
          '*.headers.authorization',
        ],
        censor: '[redacted]',
      },
    },
    pino.destination(2),
  );
}

/** A logger that drops everything, for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
