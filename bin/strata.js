#!/usr/bin/env node
// The `strata` executable. The sources are TypeScript run through tsx's loader, so a
// clone works without a build step; the loader is registered before the CLI is imported.
import { register } from 'tsx/esm/api';

// Strata targets Node 20 on purpose (the platform of its users); the SDK's multi-line
// notice about its future Node 22 requirement would otherwise precede every command's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// libuv's pool runs every file-system call, DNS lookup and zlib job; Node's default of 4
// threads lets four slow calls (a table copied from a slow disk, a stat on a hung network
// file system) stall the staging writes and tier reads the mount waits on. It must be set
// before the pool's first use, which is why it is set here, first thing.
process.env.UV_THREADPOOL_SIZE ??= '16';
register();
const { main } = await import('../daemon/cli.ts');
process.exitCode = await main(process.argv.slice(2));
