import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deepImports, importEdges, partFolders, staticClosure } from './boundaries.js';

const root = join(import.meta.dirname, '../..');

describe('folders are parts and index.ts is their door', () => {
  it('no import reaches past another folder\'s index.ts', async () => {
    const edges = await importEdges(root);
    expect(edges.length).toBeGreaterThan(300);
    const parts = await partFolders(root, edges);
    expect(parts).toContain('store');
    expect(deepImports(edges, parts)).toEqual([]);
  });

  it('every folder of the product has an index.ts', async () => {
    const edges = await importEdges(root);
    const parts = await partFolders(root, edges);
    const topLevel = new Set(edges.map((e) => e.from.split('/')[0]!));
    expect([...topLevel].filter((folder) => !parts.includes(folder))).toEqual([]);
  });

  it('finds a deep import when there is one', () => {
    const parts = ['store', 'cache'];
    const edges = [
      { from: 'cache/block-cache.ts', specifier: '../store/s3-get.js', target: 'store/s3-get.ts' },
      { from: 'cache/dram-tier.ts', specifier: '../store/index.js', target: 'store/index.ts' },
      { from: 'store/s3-store.ts', specifier: './s3-get.js', target: 'store/s3-get.ts' },
      { from: 'cache/dram-tier.test.ts', specifier: '../store/testing/fake.js', target: 'store/testing/fake.ts' },
      { from: 'cache/dram-tier.ts', specifier: '../store/testing/fake.js', target: 'store/testing/fake.ts' },
    ];
    expect(deepImports(edges, parts)).toEqual([
      'cache/block-cache.ts imports ../store/s3-get.js (use ../store/index.js)',
      'cache/dram-tier.ts imports ../store/testing/fake.js (use ../store/index.js)',
    ]);
  });
});

describe('start-up loads what its first step needs', () => {
  it('the path to a recovered table\'s first lookup loads no request schema, object store, cache tier, HTTP framework or logger', async () => {
    // cli/mount-command.ts imports daemon/index.js before anything else starts; its static
    // imports are what a restarted daemon compiles before it answers (bench/startup.ts).
    const { files, packages } = await staticClosure(root, 'daemon/index.ts');
    expect(files).toContain('daemon/params-start.ts');
    expect(files).toContain('params/served-table.ts');
    expect(files.filter((f) => /^(store|cache|fuse|links|p2p)\//.test(f) || f === 'api/schemas.ts' || f.endsWith('-routes.ts'))).toEqual([]);
    expect(packages).not.toContain('zod');
    expect(packages).not.toContain('fastify');
    expect(packages).not.toContain('@aws-sdk/client-s3');
    expect(packages).not.toContain('pino'); // loaded with the HTTP framework (telemetry/logger.ts)
  });

  it('the closure walk sees packages', async () => {
    const { packages } = await staticClosure(root, 'api/server.ts');
    expect(packages).toContain('fastify');
  });
});
