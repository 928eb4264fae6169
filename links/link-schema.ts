import { z } from 'zod';
import { endpointSchema, storeUrlSchema } from '../store/index.js';

/**
 * A link name: what admins type in `strata links rm NAME` and in URLs, so it stays
 * URL- and shell-safe. 63 characters, like a DNS label.
 */
export const LINK_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const glob = z.string().min(1).max(1024);
const globs = z.union([glob, z.array(glob).max(100)]).transform((g) => (Array.isArray(g) ? g : [g]));

export const importPolicySchema = z
  .object({
    mode: z.enum(['lazy', 'eager']).default('lazy'),
    include: globs.optional(),
    exclude: globs.optional(),
    onEvent: z.enum(['invalidate', 'preload']).default('invalidate'),
  })
  .strict();

export const exportPolicySchema = z.object({ mode: z.enum(['async', 'sync', 'none']).default('async') }).strict();

const mountPath = z
  .string()
  .min(1)
  .max(4096)
  .superRefine((path, ctx) => {
    if (!path.startsWith('/')) ctx.addIssue({ code: 'custom', message: 'must be an absolute path inside the mount, e.g. /datasets/imagenet' });
    const parts = path.split('/').filter((p) => p.length > 0);
    if (parts.some((p) => p === '.' || p === '..')) ctx.addIssue({ code: 'custom', message: 'may not contain . or .. segments' });
    if (path.includes('\0')) ctx.addIssue({ code: 'custom', message: 'may not contain NUL' });
  })
  .transform((path) => `/${path.split('/').filter((p) => p.length > 0).join('/')}`);

/** `POST /v1/links` body. */
export const linkCreateSchema = z
  .object({
    name: z.string().regex(LINK_NAME, 'must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit'),
    path: mountPath,
    store: storeUrlSchema,
    endpoint: endpointSchema().optional(),
    region: z.string().min(1).max(64).optional(),
    import: importPolicySchema.prefault({}),
    export: exportPolicySchema.prefault({}),
    readOnly: z.boolean().default(false),
  })
  .strict();

/** `PATCH /v1/links/:name` body: policies and flags; a link's name, path and store stay as created. */
export const linkPatchSchema = z
  .object({
    endpoint: endpointSchema().optional(),
    region: z.string().min(1).max(64).optional(),
    import: importPolicySchema.optional(),
    export: exportPolicySchema.optional(),
    readOnly: z.boolean().optional(),
  })
  .strict();

export type Link = z.output<typeof linkCreateSchema>;
export type LinkInput = z.input<typeof linkCreateSchema>;
export type LinkPatch = z.output<typeof linkPatchSchema>;

/** The include/exclude globs of a link's eager import, as prefetch options. */
export function eagerFilter(link: Link): { include?: readonly string[]; exclude?: readonly string[]; kind: string } {
  return { kind: 'eager-import', ...(link.import.include ? { include: link.import.include } : {}), ...(link.import.exclude ? { exclude: link.import.exclude } : {}) };
}
