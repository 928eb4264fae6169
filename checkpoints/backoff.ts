/**
 * Delay before retry number `attempt` (1 for the first retry): exponential from `baseMs`,
 * capped at `maxMs`, with "equal jitter" (half fixed, half random) so that many uploads
 * failing together do not retry in lockstep, while no retry comes sooner than half the step.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  // 2 ** 30 already exceeds any sensible cap; clamping the exponent keeps the number finite.
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step / 2 + (step / 2) * random());
}
