/** Significant digits that always identify a float32 (FLT_DECIMAL_DIG). */
const FLOAT32_MAX_DIGITS = 9;

/**
 * The shortest decimal that reads back as the same float32: `0.1` for the float32 nearest
 * 0.1, where JavaScript's own formatting (float64 digits) prints 0.10000000149011612.
 * Answered as a number, so JSON and text output both use those digits.
 */
export function float32Shortest(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const single = Math.fround(value);
  for (let digits = 1; digits < FLOAT32_MAX_DIGITS; digits++) {
    const candidate = Number(single.toPrecision(digits));
    if (Math.fround(candidate) === single) return candidate;
  }
  return Number(single.toPrecision(FLOAT32_MAX_DIGITS));
}
