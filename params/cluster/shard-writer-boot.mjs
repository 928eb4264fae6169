// Entry of the shard-writer thread: the sources are TypeScript run through tsx, and a
// worker starts without its parent's loader, so it registers tsx before importing them.
import { register } from 'tsx/esm/api';

register();
await import('./shard-writer-worker.ts');
