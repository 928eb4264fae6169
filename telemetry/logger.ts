import { openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as Pino from 'pino';
import { makeFoldersSync } from '../durable/index.js';
import { PrettyLogStream } from './pretty-log.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/**
 * What the code logs through: pino's level methods and `child`. A pino logger is one; the
 * process logger (createLogger) is one that loads pino only when it must (below).
 */
export interface Logger {
  readonly level: string;
  trace: Pino.LogFn;
  debug: Pino.LogFn;
  info: Pino.LogFn;
  warn: Pino.LogFn;
  error: Pino.LogFn;
  fatal: Pino.LogFn;
  child(bindings: Pino.Bindings, options?: { level?: LogLevel }): Logger;
}

export type LogFormat = 'json' | 'pretty' | 'auto';

export interface LoggerConfig {
  readonly level: LogLevel;
  /** `json`: one JSON object per line; `pretty`: a line for people; `auto` (default): pretty on a terminal, JSON otherwise. */
  readonly format?: LogFormat;
  /** Append to this file (created with its folder) instead of writing to stderr. */
  readonly file?: string;
}

/** pino's numeric levels. */
const LEVELS: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
type Method = Exclude<LogLevel, 'silent'>;

/**
 * Records logged before pino is loaded are written at the latest this long after the first of
 * them, whatever start-up is doing.
 */
const HOLD_AT_MOST_MS = 1_000;

/**
 * The process logger: on stderr (or `file`), so stdout stays free for command output.
 * Coloured lines on a terminal unless NO_COLOR is set. Credentials never reach it: the
 * redact list removes the fields where they could appear if an SDK object or request
 * header is logged by mistake.
 *
 * pino (some 30 modules, a fifth of the modules a daemon loads before its first parameter
 * lookup, bench/startup.ts) is loaded when the first record at `error` or above is logged,
 * when `pinoOf` asks for it (the HTTP framework's logger, which the daemon starts after the
 * early answers), or at most HOLD_AT_MOST_MS after a lower record was held, or at exit. A
 * record held until then is written as logged: its own time, bindings and arguments.
 */
export function createLogger(config: LoggerConfig = { level: 'info' }): Logger {
  const fd = config.file === undefined ? undefined : openLogFile(config.file);
  return new DeferredLogger(new PinoLoader(config, fd), [], LEVELS[config.level], config.level);
}

/**
 * Opens `--log-file` for appending (readable by its owner's group, not by everyone), its folder
 * created; createLogger calls it at once rather than when pino loads: a path
 * that cannot be written fails the command at once with its reason (the system error, which the
 * CLI words in one line). Not pino's own destination: it makes the folder with Node's recursive
 * mkdir, which loops forever under /proc (durable/index.ts, makeFolders).
 */
export function openLogFile(file: string): number {
  makeFoldersSync(dirname(file));
  return openSync(file, 'a', 0o640);
}

/** A logger that drops everything, for unit tests. */
export function silentLogger(): Logger {
  return SILENT;
}

/**
 * The pino logger behind `logger`, loading it now if it was not yet: for a library that wants
 * pino's own interface (fastify's `loggerInstance`). A logger that is not the process logger
 * (a pino logger a test made) is answered as it is.
 */
export function pinoOf(logger: Logger): Pino.Logger {
  return logger instanceof DeferredLogger ? logger.target() : (logger as Pino.Logger);
}

const noop: Pino.LogFn = () => undefined;
const SILENT: Logger = { level: 'silent', trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => SILENT };

interface Held {
  readonly logger: DeferredLogger;
  readonly method: Method;
  readonly args: unknown[];
  readonly time: number;
}

/** Loads pino once for a process logger and its children, and holds their records until then. */
class PinoLoader {
  readonly #config: LoggerConfig;
  /** The open `--log-file`, if any. */
  readonly #fd: number | undefined;
  #root: Pino.Logger | undefined;
  #held: Held[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** The time a held record is written with, while it is. */
  #replaying: number | undefined;
  readonly #atExit = () => this.root();

  constructor(config: LoggerConfig, fd: number | undefined) {
    this.#config = config;
    this.#fd = fd;
  }

  get loaded(): boolean {
    return this.#root !== undefined;
  }

  hold(record: Held): void {
    this.#held.push(record);
    if (this.#timer) return;
    this.#timer = setTimeout(() => this.root(), HOLD_AT_MOST_MS).unref();
    process.once('exit', this.#atExit);
  }

  root(): Pino.Logger {
    if (this.#root) return this.#root;
    this.#root = this.#build();
    clearTimeout(this.#timer);
    process.off('exit', this.#atExit);
    const held = this.#held;
    this.#held = [];
    try {
      for (const { logger, method, args, time } of held) {
        this.#replaying = time;
        (logger.target()[method] as (...a: unknown[]) => void)(...args);
      }
    } finally {
      this.#replaying = undefined;
    }
    return this.#root;
  }

  #build(): Pino.Logger {
    const { pino } = createRequire(import.meta.url)('pino') as typeof Pino;
    const config = this.#config;
    const destination = pino.destination({ dest: this.#fd ?? 2, sync: true });
    const terminal = this.#fd === undefined && process.stderr.isTTY === true;
    const pretty = config.format === 'pretty' || ((config.format ?? 'auto') === 'auto' && terminal);
    const stream: Pino.DestinationStream = pretty ? new PrettyLogStream(destination, terminal && !process.env.NO_COLOR) : destination;
    return pino(
      {
        level: config.level,
        base: { pid: process.pid },
        // pino's own format (`,"time":<ms since the epoch>`), with a held record's own time.
        timestamp: () => `,"time":${this.#replaying ?? Date.now()}`,
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
}

type ChildPath = ReadonlyArray<readonly [Pino.Bindings, { level?: LogLevel } | undefined]>;

/** The process logger or one of its children: pino's once it is loaded, held records before. */
class DeferredLogger implements Logger {
  readonly #loader: PinoLoader;
  /** The `child` calls from the root to here, replayed on pino once it is loaded. */
  readonly #path: ChildPath;
  readonly #threshold: number;
  readonly level: string;
  #target: Pino.Logger | undefined;

  constructor(loader: PinoLoader, path: ChildPath, threshold: number, level: string) {
    this.#loader = loader;
    this.#path = path;
    this.#threshold = threshold;
    this.level = level;
  }

  /** This logger's pino logger, loading pino if need be. */
  target(): Pino.Logger {
    if (this.#target) return this.#target;
    let target = this.#loader.root();
    for (const [bindings, options] of this.#path) target = target.child(bindings, options);
    this.#target = target;
    return target;
  }

  child(bindings: Pino.Bindings, options?: { level?: LogLevel }): Logger {
    const level = options?.level ?? this.level;
    return new DeferredLogger(this.#loader, [...this.#path, [bindings, options]], LEVELS[level as LogLevel] ?? this.#threshold, level);
  }

  trace(...args: unknown[]): void {
    this.#log('trace', args);
  }
  debug(...args: unknown[]): void {
    this.#log('debug', args);
  }
  info(...args: unknown[]): void {
    this.#log('info', args);
  }
  warn(...args: unknown[]): void {
    this.#log('warn', args);
  }
  error(...args: unknown[]): void {
    this.#log('error', args);
  }
  fatal(...args: unknown[]): void {
    this.#log('fatal', args);
  }

  #log(method: Method, args: unknown[]): void {
    if (LEVELS[method] < this.#threshold) return;
    // An error is written at once: it may be the last thing the process says.
    if (this.#target || this.#loader.loaded || LEVELS[method] >= LEVELS.error) {
      (this.target()[method] as (...a: unknown[]) => void)(...args);
      return;
    }
    this.#loader.hold({ logger: this, method, args, time: Date.now() });
  }
}
