import { pino, type DestinationStream, type Logger } from 'pino';
import { PrettyLogStream } from './pretty-log.js';

export type { Logger };

export type LogFormat = 'json' | 'pretty' | 'auto';

export interface LoggerConfig {
  readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** `json`: one JSON object per line; `pretty`: a line for people; `auto` (default): pretty on a terminal, JSON otherwise. */
  readonly format?: LogFormat;
  /** Append to this file (created with its folder) instead of writing to stderr. */
  readonly file?: string;
}

/**
 * The process logger: on stderr (or `file`), so stdout stays free for command output.
 * Coloured lines on a terminal unless NO_COLOR is set. Credentials never reach it: the
 * redact list removes the fields where they could appear if an SDK object or request
 * header is logged by mistake.
 */
export function createLogger(config: LoggerConfig = { level: 'info' }): Logger {
  const destination = config.file ? pino.destination({ dest: config.file, append: true, mkdir: true, sync: true }) : pino.destination(2);
  const terminal = !config.file && process.stderr.isTTY === true;
  const pretty = config.format === 'pretty' || ((config.format ?? 'auto') === 'auto' && terminal);
  const stream: DestinationStream = pretty ? new PrettyLogStream(destination, terminal && !process.env.NO_COLOR) : destination;
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
    stream,
  );
}

/** A logger that drops everything, for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
