import { rm } from 'node:fs/promises';
import { decodeDelta } from './delta-body.js';
import { lookupBinding } from './lookup-binding.js';
import { createOverlay, foldToDelta, overlayLayout, OVERLAY_SUFFIX, readOverlayLog } from './overlay-format.js';
import { ServedTable } from './served-table.js';
import type { TableMapper } from './table-mapper.js';
import { TableOverlay } from './table-overlay.js';

/**
 * The last step of a compaction before its switch: the deltas committed to the served
 * version's `overlay` while the compaction thread folded its first `folded` records go,
 * as one delta, into a new overlay of the compacted file at `target`. Nothing to do when
 * none came. On failure the compacted file and its overlay are removed and the error thrown.
 */
export async function carryOverDeltas(overlay: TableOverlay, folded: number, target: string, mapper: TableMapper): Promise<void> {
  const now = overlay.state().records;
  if (now <= folded) return;
  const body = foldToDelta(readOverlayLog(overlay.path, folded, now));
  const next = ServedTable.open(target, mapper, { trusted: true });
  try {
    const binding = lookupBinding()!;
    const handle = next.nativeHandle!;
    await createOverlay(target, overlayLayout(next.dim, next.header.keyCount, next.overlayTag));
    next.attachOverlay(TableOverlay.open(target + OVERLAY_SUFFIX, binding, handle, next.overlayTag, { writer: true }));
    await next.overlay!.apply(body, decodeDelta(body));
  } catch (err) {
    await rm(target, { force: true });
    await rm(target + OVERLAY_SUFFIX, { force: true });
    throw err;
  } finally {
    next.close();
  }
}
