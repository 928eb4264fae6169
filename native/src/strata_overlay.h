/*
 * In-place deltas of a parameter table (strata_overlay.c): an overlay file beside the
 * table, updated by one writer while lookups read it. docs/PARAMS.md, "In-place deltas",
 * describes the layout and why a SIGKILL at any instruction leaves a delta whole or absent.
 */
#ifndef STRATA_OVERLAY_H
#define STRATA_OVERLAY_H

#include "lookup_table.h"

typedef struct overlay overlay;

/* The overlay handle in `value` (a type-tagged external), NULL for undefined; 0 when it is something else. */
int get_overlay(napi_env env, napi_value value, overlay **out);

/*
 * Patches the base answer of keys [from, to) (bitmap and rows in `out`, as js_mget writes
 * them) with what the overlay holds at its published epoch, read once: a key the overlay
 * deletes is cleared, one it upserts gets the overlay's row. Answers the new found count.
 */
uint32_t overlay_patch(overlay *ov, const uint32_t *keys, uint32_t n, uint32_t from, uint32_t to, uint32_t *out, uint32_t found);

/*
 * Brackets every lookup of the kernel (any thread): an apply paces itself while lookups are in
 * progress in the process, and runs flat out otherwise (strata_overlay.c, "pacing").
 */
void overlay_lookups_begin(void);
void overlay_lookups_end(void);

/* Adds overlayMap, overlayRecover, overlayApply, overlayPacing, overlayInfo and overlayUnmap to the addon's exports. */
void overlay_register(napi_env env, napi_value exports);

#endif
