// Entry of a compaction worker thread: registers tsx (a worker starts without its parent's
// loader) before importing the TypeScript source, as lookup-worker-boot.mjs does.
import { register } from 'tsx/esm/api';

register();
await import('./compaction-worker.ts');
