import type { ParamsService } from '../params-service.js';

/**
 * Loads table `to` as a copy of the served table `from`, with every row `from` serves: its
 * file, then its in-place deltas (which live in the file's overlay, not in the file) folded
 * into one delta. The path and the deltas are read in one turn, so they are of one version
 * of `from` even if a compaction switches it while the file is copied.
 */
export async function copyServedTable(params: ParamsService, from: string, to: string): Promise<void> {
  const table = params.table(from);
  const path = table.path;
  const carried = table.inPlaceDeltas();
  await params.load(to, path);
  if (!carried) return;
  try {
    await params.applyDelta(to, carried);
  } catch (err) {
    await params.unload(to).catch(() => undefined);
    throw err;
  }
}
