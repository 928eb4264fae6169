import { join } from 'node:path';
import { collectProcessMetrics, createLogger, installLastResort } from '../telemetry/index.js';
import { announceReady, isBackgroundChild, removePidFile, runInBackground } from './background.js';
import { UsageError } from './usage-error.js';
import { withConfigFile } from './config-file.js';
import type { DaemonConfig, MountOptionsInput } from '../config/index.js';
import { ConfigError, earlyDisagreement, earlyOptions } from '../config/early/index.js';
import { daemonOptions } from './daemon-options.js';
import { removeMountRecord, writeMountRecord } from './mount-records.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** `strata mount <store-url> <mountpoint>`: one link at the root; serves until SIGINT or SIGTERM, then exits 0. */
export async function runMount(flags: Values, positionals: string[], args: readonly string[] = []): Promise<number> {
  const values = await withConfigFile(flags);
  // A config file may name the store and mount point (`store`, `mountpoint`); arguments win.
  const [store, mountPoint] = positionals.length === 0 ? [values.store, values.mountpoint] : positionals;
  if (positionals.length > 2 || typeof store !== 'string' || typeof mountPoint !== 'string') {
    throw new UsageError('USAGE', 'mount needs a store URL and a mount point: strata mount s3://bucket/prefix /mnt/x');
  }
  return runDaemon('mount', { ...daemonOptions(values), store, mountPoint }, values, args, 'mounted');
}

/** `strata serve --mount DIR`: links from the state dir, managed through the API. */
export async function runServe(flags: Values, positionals: string[], args: readonly string[] = []): Promise<number> {
  const values = await withConfigFile(flags);
  const mountPoint = typeof values.mount === 'string' ? values.mount : undefined;
  if (!mountPoint || positionals.length > 0) throw new UsageError('USAGE', 'serve needs --mount DIR and no other arguments: strata serve --mount /mnt/strata');
  return runDaemon('serve', { ...daemonOptions(values), mountPoint }, values, args, 'serving');
}

/**
 * Runs the daemon until SIGINT or SIGTERM. With `--background` (and not yet in the
 * background), starts itself as a detached daemon and answers once that one serves.
 */
async function runDaemon(command: string, input: MountOptionsInput, values: Values, args: readonly string[], verb: string): Promise<number> {
  const pidFile = typeof values['pid-file'] === 'string' ? values['pid-file'] : undefined;
  if (values.background === true && !isBackgroundChild()) {
    const config = await validate(input);
    return runInBackground(command, args, config.logFile ?? join(config.stateDir, 'strata.log'));
  }
  // Listening from the start: a stop asked for while the daemon starts (a Ctrl-C once the mount
  // shows in /proc/self/mountinfo, before the ready line) waits for the start to end, then
  // stops cleanly instead of killing the process with its mount left dead.
  const stop = waitForSignal();
  try {
    return await serveUntilStopped(input, verb, pidFile, stop.signal);
  } finally {
    stop.dispose();
  }
}

/** `runDaemon` in the foreground: starts, announces, serves until `stopSignal`, stops. */
async function serveUntilStopped(input: MountOptionsInput, verb: string, pidFile: string | undefined, stopSignal: Promise<NodeJS.Signals>): Promise<number> {
  // The options the first step needs, read without loading the schema (config/early); when
  // they do not read cleanly (or with --cluster) everything is validated first, as the schema words it.
  const quick = earlyOptions(input);
  const validated = quick ? undefined : await validate(input);
  const logOptions = validated ?? quick!;
  const logger = createLogger({ level: logOptions.logLevel, format: logOptions.logFormat, ...(logOptions.logFile ? { file: logOptions.logFile } : {}) });
  // From here on no stray error may end the process: the mount would be left dead.
  const removeLastResort = installLastResort(logger);
  // Parameter tables first: recovered and answering lookups on the API's address while the
  // schema and the rest of the daemon load and start (daemon/params-start.ts).
  const { startParamsEarly, loadDaemon } = await import('../daemon/index.js');
  // Recovered tables go to the lookup threads once the daemon is up: the main thread answers until then.
  let started = () => undefined as void;
  const threadsAfter = new Promise<void>((resolve) => (started = resolve));
  const early = await startParamsEarly(validated ?? quick!, logger, { threadsAfter }).catch(async (err: unknown) => {
    // A mistake in the options is what is reported (as the schema words it), not what it
    // made the early start run into (the default API port held by another daemon).
    if (!validated) await validate(input);
    throw err;
  });
  // The recovered tables' values are checked (on the main thread) before the schema and the
  // rest of the daemon load: the first lookups then wait for the check only, not also for
  // every module the rest of start-up compiles on the same thread (bench/startup.ts).
  await early?.params.valuesChecked.catch(() => undefined);
  // Loaded here, not at the top: `strata config check` and the mount helper's -f share this module without starting anything.
  const [config, Daemon] = await (async () => {
    // Every option is validated before anything but the tables starts: a mistake ends the
    // daemon with the schema's one line, the early socket and tables closed.
    const checked = validated ?? (await validate(input));
    const differs = quick && earlyDisagreement(quick, checked);
    if (differs) throw new ConfigError('CONFIG_INVALID', `internal error: --${differs} was read differently before and after validation; please report this`);
    return [checked, await loadDaemon()] as const;
  })().catch(async (err: unknown) => {
    await early?.api.close();
    await early?.params.close();
    throw err;
  });
  const daemon = await Daemon.start(config, logger, early);
  const what = config.store ? `${config.store} at ${config.mountPoint}` : `links of ${config.stateDir} at ${config.mountPoint}`;
  const api = `${config.api.host}:${daemon.api.port}`;
  await writeMountRecord({ mountPoint: config.mountPoint, pid: process.pid, api }).catch((err: unknown) => logger.warn({ err }, 'cannot record the mount for strata unmount (use SIGTERM)'));
  await announceReady(`strata: ${verb} ${what} (admin API http://${api})`, pidFile);
  started();
  // Node's process metrics (heap, event-loop lag) from here on: loading them (prom-client's
  // default metrics and @opentelemetry/api, some 90 modules) need not delay the mount.
  collectProcessMetrics();
  const signal = await stopSignal;
  logger.info({ signal }, 'shutting down');
  // The loop stays alive until the stop is done: a step that waits on an unref'd timer (a
  // background wait that is no reason to keep a running daemon alive) would otherwise see the
  // process end in the middle of stopping, with exit code 13, once nothing else is left to run.
  const keepAlive = setInterval(() => undefined, 60_000);
  try {
    await daemon.stop();
  } finally {
    clearInterval(keepAlive);
  }
  await removeMountRecord(config.mountPoint);
  await removePidFile(pidFile);
  removeLastResort();
  return 0;
}

/** The options validated by the one schema (config/), loaded only now: it is most of what the early start does without. */
async function validate(input: MountOptionsInput): Promise<DaemonConfig> {
  const { daemonConfig } = await import('../config/index.js');
  return daemonConfig(input);
}

/**
 * `signal` resolves with the first SIGINT or SIGTERM; a second one (during shutdown) ends the
 * process at once, as Node's default does. `dispose` stops listening.
 */
function waitForSignal(): { signal: Promise<NodeJS.Signals>; dispose: () => void } {
  let onSignal: (signal: NodeJS.Signals) => void = () => undefined;
  const dispose = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const signal = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (received) => {
      dispose();
      resolve(received);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return { signal, dispose };
}
