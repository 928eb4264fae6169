#!/usr/bin/env node
// The `strata` executable. The sources are TypeScript run through tsx's loader, so a
// clone works without a build step; the loader is registered before the CLI is imported.
import { register } from 'tsx/esm/api';

// Strata targets Node 20 on purpose (the platform of its users); the SDK's multi-line
// notice about its future Node 22 requirement would otherwise precede every command's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
register();
const { main } = await import('../daemon/cli.ts');
process.exitCode = await main(process.argv.slice(2));
