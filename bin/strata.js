#!/usr/bin/env node
// The `strata` executable: runs the compiled package in dist/ (`npm run build`; the
// `prepare` step builds it at `npm ci`/`npm install` in a clone, and the published package
// ships it). bin/strata-dev.js runs the TypeScript sources instead, for development.

// Strata targets Node 20 on purpose (the platform of its users); the SDK's multi-line
// notice about its future Node 22 requirement would otherwise precede every command's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// libuv's pool runs every file-system call, DNS lookup and zlib job; Node's default of 4
// threads lets four slow calls (a table copied from a slow disk, a stat on a hung network
// file system) stall the staging writes and tier reads the mount waits on. It must be set
// before the pool's first use, which is why it is set here, first thing.
process.env.UV_THREADPOOL_SIZE ??= '16';
let cli;
try {
  cli = await import('../dist/cli/cli.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/cli/cli.js')) throw err;
  process.stderr.write('strata: the package is not built (no dist/); run npm run build, or node bin/strata-dev.js to run the sources\n');
  process.exit(1);
}
process.exitCode = await cli.main(process.argv.slice(2));
