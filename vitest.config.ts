import { defineConfig } from 'vitest/config';

// The project targets Node 20 on purpose; keep the SDK's notice about Node 22 out of test output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/**
 * Integration tests: what needs the Ceph RADOS Gateway, FUSE, root or a packed npm tarball.
 * They live under test/ (end-to-end, set-up, package) or are named `*-rgw.test.ts` (the
 * gateway) or `*-root.test.ts` (root, for instance to mount a small tmpfs) beside the code. Everything else is a unit test that runs
 * anywhere, without root or services (`npm run test:unit`).
 */
const INTEGRATION = ['test/e2e/**/*.test.ts', 'test/setup/**/*.test.ts', 'test/package/**/*.test.ts', '**/*-rgw.test.ts', '**/*-root.test.ts'];

export default defineConfig({
  test: {
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: FUSE mounts and the gateway compete with the test workers.
    maxWorkers: 2,
    fileParallelism: true,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: ['node_modules/**', 'dist/**', ...INTEGRATION],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: INTEGRATION,
          exclude: ['node_modules/**', 'dist/**'],
          // One Ceph RADOS Gateway for the whole project, started here; it fails the run with
          // its reason when the gateway cannot start, so no S3 or mount test can skip silently.
          globalSetup: ['test/setup/global.ts'],
        },
      },
    ],
  },
});
