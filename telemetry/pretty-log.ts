import { formatWithOptions } from 'node:util';

/** pino's numeric levels and how a person reads them. */
const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '\x1b[90m' },
  20: { name: 'DEBUG', color: '\x1b[36m' },
  30: { name: 'INFO ', color: '\x1b[32m' },
  40: { name: 'WARN ', color: '\x1b[33m' },
  50: { name: 'ERROR', color: '\x1b[31m' },
  60: { name: 'FATAL', color: '\x1b[35m' },
};
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';
/** Fields every line has, shown in the line's head or not at all. */
const HEAD_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'component']);
/** pino's level for error: a logged error's stack is shown from this level up. */
const ERROR_LEVEL = 50;

export interface PrettyTarget {
  write(text: string): unknown;
}

/**
 * A pino destination that turns each JSON line into one line for people:
 * `12:04:05.123 WARN  [cache] tier read failed tier=nvme err="EIO: ..."`, coloured when
 * `color` is set, with the stack of an error logged at error level or above on the lines
 * after. A line that is not JSON is passed through unchanged.
 */
export class PrettyLogStream {
  readonly #target: PrettyTarget;
  readonly #color: boolean;

  constructor(target: PrettyTarget, color: boolean) {
    this.#target = target;
    this.#color = color;
  }

  write(line: string): void {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#target.write(line);
      return;
    }
    this.#target.write(`${this.format(entry)}\n`);
  }

  format(entry: Record<string, unknown>): string {
    const level = LEVELS[Number(entry.level)] ?? { name: String(entry.level).padEnd(5), color: '' };
    const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : '';
    const paint = (code: string, text: string) => (this.#color && code ? `${code}${text}${RESET}` : text);
    const parts = [paint(DIM, time), paint(level.color, level.name)];
    if (typeof entry.component === 'string') parts.push(paint(DIM, `[${entry.component}]`));
    parts.push(String(entry.msg ?? ''));
    let stack = '';
    for (const [key, value] of Object.entries(entry)) {
      if (HEAD_FIELDS.has(key) || value === undefined) continue;
      if (key === 'err' && value && typeof value === 'object') {
        const err = value as { message?: string; stack?: string; code?: string };
        parts.push(`${paint(DIM, 'err=')}${JSON.stringify(err.message ?? '')}${err.code ? ` ${paint(DIM, 'code=')}${err.code}` : ''}`);
        if (Number(entry.level) >= ERROR_LEVEL && err.stack) stack = `\n${err.stack.split('\n').slice(1).map((l) => `    ${l.trim()}`).join('\n')}`;
        continue;
      }
      parts.push(`${paint(DIM, `${key}=`)}${typeof value === 'string' ? (/[\s"=]/.test(value) || value === '' ? JSON.stringify(value) : value) : formatWithOptions({ breakLength: Infinity, compact: true, colors: false }, '%j', value)}`);
    }
    return parts.join(' ') + stack;
  }
}
