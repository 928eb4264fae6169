export { metricsRegistry, metricsText, collectProcessMetrics, counter, gauge, histogram } from './metrics.js';
export { createLogger, openLogFile, pinoOf, silentLogger, type LogFormat, type Logger, type LoggerConfig, type LogLevel } from './logger.js';
export { installLastResort } from './last-resort.js';
export { PrettyLogStream } from './pretty-log.js';
