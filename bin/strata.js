#!/usr/bin/env node
// The `strata` executable. The sources are TypeScript run through tsx's loader, so a
// clone works without a build step; the loader is registered before the CLI is imported.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../daemon/cli.ts');
process.exitCode = await main(process.argv.slice(2));
