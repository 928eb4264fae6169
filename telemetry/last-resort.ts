import { counter } from './metrics.js';
import type { Logger } from './logger.js';

const escaped = counter('strata_unhandled_errors_total', 'Errors no code path handled (a bug): logged and counted, the daemon kept serving', ['kind']);

/**
 * The daemon's last resort for an error no code path handled: a promise rejected with no
 * handler, or an exception thrown from a callback. Node's default is to exit, which leaves a
 * mount whose every call fails with ENOTCONN until someone unmounts it by hand, and loses
 * the uploads in flight. The daemon instead logs the error at `fatal` with its stack, counts
 * it in `strata_unhandled_errors_total{kind}` and keeps serving: the request that failed
 * has failed (its caller sees an error or a timeout), the rest go on. Such an error is
 * always a bug to report; the code is written so that none reaches here (store requests
 * become values that never reject before they are raced, see namespace/namespace.ts).
 *
 * Answers a function that removes the handlers again (a daemon stopped in-process).
 */
export function installLastResort(logger: Logger): () => void {
  const onRejection = (reason: unknown) => {
    escaped.inc({ kind: 'unhandled-rejection' });
    logger.fatal({ err: reason }, 'BUG: a promise was rejected and nothing handled it; the daemon keeps serving (please report this with the log)');
  };
  const onException = (err: Error) => {
    escaped.inc({ kind: 'uncaught-exception' });
    logger.fatal({ err }, 'BUG: an exception escaped every handler; the daemon keeps serving (please report this with the log)');
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
