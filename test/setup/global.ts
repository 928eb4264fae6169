import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startRgw, type S3Endpoint } from '../fixtures/rgw.js';

const REPO = resolve(import.meta.dirname, '../..');
/** Loading fuse-native takes well under a second; 30 s only guards against a hung loader. */
const FUSE_CHECK_TIMEOUT_MS = 30_000;

declare module 'vitest' {
  export interface ProvidedContext {
    /** The Ceph RADOS Gateway shared by the whole run; read it with test/fixtures/s3.ts. */
    testS3: S3Endpoint;
  }
}

/** Raised when the machine cannot run the suite; the message says what to install or change. */
export class TestPrerequisiteError extends Error {
  readonly code = 'TEST_PREREQUISITE_MISSING';
  override name = 'TestPrerequisiteError';
}

/**
 * Vitest global setup: checks that FUSE mounts can work, then starts one Ceph RGW for the run and
 * provides it to every test file as `testS3`. The AWS_* variables are set as well, because Strata
 * takes credentials only from the standard AWS chain. Any missing prerequisite fails the whole run
 * with its reason, so no S3 or mount test can skip silently.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  await checkFuse();
  const rgw = await startRgw();
  const testS3: S3Endpoint = {
    endpoint: rgw.endpoint,
    region: rgw.region,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  };
  process.env.AWS_ACCESS_KEY_ID = testS3.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = testS3.secretAccessKey;
  process.env.AWS_REGION = testS3.region;
  project.provide('testS3', testS3);
  return () => rgw.stop();
}

async function checkFuse(): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) {
    problems.push('the tests mount FUSE file systems and must run as root');
  }
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    problems.push('/dev/fuse is missing or not accessible (load the fuse module, or run the container with --device /dev/fuse)');
  }
  const loadError = await loadFuseNative();
  if (loadError) {
    problems.push(`fuse-native does not load (install libfuse2: run scripts/install-deps.sh): ${loadError}`);
  }
  if (problems.length > 0) {
    throw new TestPrerequisiteError(`FUSE is unavailable:\n- ${problems.join('\n- ')}`);
  }
}

/** Loads fuse-native in a child process, so a broken native binary cannot take the runner down. */
function loadFuseNative(): Promise<string | undefined> {
  return new Promise((resolveLoad) => {
    execFile(process.execPath, ['-e', "require('fuse-native')"], { cwd: REPO, timeout: FUSE_CHECK_TIMEOUT_MS, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (!err) return resolveLoad(undefined);
      const reason = stderr.split('\n').find((line) => /error/i.test(line)) ?? stderr.trim();
      resolveLoad(reason || err.message);
    });
  });
}
