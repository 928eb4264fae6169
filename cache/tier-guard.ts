import type { Logger } from '../telemetry/index.js';
import type { Tier } from './tier.js';

/**
 * Calls into tiers that treat a throw as a miss. Tiers count their own failures and never
 * throw by contract; a tier that breaks it is logged once and its calls answer "not there".
 */
export class TierGuard {
  readonly #logger: Logger;
  readonly #failing = new Set<Tier>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  has(tier: Tier, id: string): boolean {
    try {
      return tier.has(id);
    } catch (err) {
      this.failed(tier, 'has', err);
      return false;
    }
  }

  async get(tier: Tier, id: string): Promise<Buffer | undefined> {
    try {
      return await tier.get(id);
    } catch (err) {
      this.failed(tier, 'get', err);
      return undefined;
    }
  }

  async put(tier: Tier, id: string, bytes: Buffer, checksum?: number): Promise<boolean> {
    try {
      return await tier.put(id, bytes, checksum);
    } catch (err) {
      this.failed(tier, 'put', err);
      return false;
    }
  }

  /** Logs the first failure of `tier` (further failures are not logged). */
  failed(tier: Tier, op: string, err: unknown): void {
    if (this.#failing.has(tier)) return;
    this.#failing.add(tier);
    this.#logger.warn({ tier: tier.name, op, err }, 'tier call threw; treated as a miss (further failures are not logged)');
  }
}
