import { defineConfig } from 'vitest/config';

// The project targets Node 20 on purpose; keep the SDK's notice about Node 22 out of test output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**'],
    // The S3 tests share one Ceph RADOS Gateway started here; it fails the run with
    // its reason when the gateway cannot start, so no S3 or mount test can skip silently.
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: FUSE mounts and the gateway compete with the test workers.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
