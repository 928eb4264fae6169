import { z } from 'zod';
import { MAX_BATCH_KEYS, MAX_TABLE_NAME_CHARS } from '../params/index.js';

/**
 * The request bodies and parameters of the admin API, each once: the routes validate with
 * them and openapi.ts publishes them, so the document cannot drift from what is checked.
 */

const TIERS = ['dram', 'pmem', 'nvme'] as const;

export const prefetchBodySchema = z
  .object({
    paths: z.array(z.string().min(1).max(4096).startsWith('/', 'must be an absolute path inside the mount')).min(1).max(100_000),
    tier: z.enum(TIERS).optional(),
    pin: z.boolean().default(false),
  })
  .strict();

export const pinBodySchema = z.object({ path: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path inside the mount') }).strict();

export const distributeBodySchema = z
  .object({ paths: z.array(z.string().min(1).max(4096).startsWith('/', 'must be an absolute path inside the mount')).min(1).max(100_000) })
  .strict();

export const flushBodySchema = z.object({ path: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path').optional() }).strict();

export const paramsLoadBodySchema = z.object({ name: z.string().min(1).max(MAX_TABLE_NAME_CHARS), source: z.string().min(1).max(4096), tier: z.enum(['pmem', 'nvme', 'state-dir']).optional() }).strict();
export const paramsLookupBodySchema = z.object({ keys: z.array(z.string()).max(MAX_BATCH_KEYS * 2) }).strict();

/** Replicas per shard when a publish names none: one copy may die without a reload from the store. */
const DEFAULT_REPLICAS = 2;

export const clusterPublishBodySchema = z
  .object({ name: z.string().min(1).max(MAX_TABLE_NAME_CHARS), source: z.string().min(1).max(4096), replicas: z.number().int().min(1).max(64).default(DEFAULT_REPLICAS) })
  .strict();
