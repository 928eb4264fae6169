#!/usr/bin/env node
// `strata` from the TypeScript sources, through tsx's loader: what the tests spawn, so they
// always run the code as it is in the tree (no stale dist/), and what a developer runs
// between builds. Installed packages run bin/strata.js, the compiled code.
import { register } from 'tsx/esm/api';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// See bin/strata.js: set before libuv's pool is first used.
process.env.UV_THREADPOOL_SIZE ??= '16';
register();
const { main } = await import('../cli/cli.ts');
process.exitCode = await main(process.argv.slice(2));
