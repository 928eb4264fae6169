import { z } from 'zod';
import { parseStoreUrl } from '../store/index.js';

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

const storeUrl = z.string().superRefine((url, ctx) => {
  try {
    parseStoreUrl(url);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

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

/** Longer endpoint URLs are not S3 endpoints; the limit keeps store requests (and the links file) sane. */
const MAX_ENDPOINT_LENGTH = 2048;

const httpUrl = z.string().superRefine((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error();
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an http(s) URL' });
    return;
  }
  // Credentials come from the AWS chain; a URL carrying them would be stored and shown by GET /v1/links.
  if (url.username || url.password) ctx.addIssue({ code: 'custom', message: 'may not carry credentials (user:password@); they come from the AWS chain' });
  if (text.length > MAX_ENDPOINT_LENGTH) ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_ENDPOINT_LENGTH} characters` });
  if (url.search || url.hash) ctx.addIssue({ code: 'custom', message: 'may not carry a query or fragment' });
});

/** `POST /v1/links` body. */
export const linkCreateSchema = z
  .object({
    name: z.string().regex(LINK_NAME, 'must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit'),
    path: mountPath,
    store: storeUrl,
    endpoint: httpUrl.optional(),
    region: z.string().min(1).max(64).optional(),
    import: importPolicySchema.prefault({}),
    export: exportPolicySchema.prefault({}),
    readOnly: z.boolean().default(false),
  })
  .strict();

/** `PATCH /v1/links/:name` body: policies and flags; a link's name, path and store stay as created. */
export const linkPatchSchema = z
  .object({
    endpoint: httpUrl.optional(),
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
