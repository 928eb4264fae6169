import { readFile, writeFile } from 'node:fs/promises';

/**
 * Free page reporting (Linux's page_reporting, used by virtio-balloon guests such as Firecracker
 * microVMs) hands memory a guest frees back to the host; the next touch of such a page costs a
 * fault in the host as well as in the guest. On the 2-core development VM a never-used or
 * reported page cost 3.2 s per GiB to touch, against 0.4 s for one the host still backs
 * (1 GiB at a time, base pages), and `min_free_ms` was 0: memory freed by dropping the page cache
 * before a read was reported at once and paid for again by whoever took it next. A cache
 * daemon filling 1 GiB of blocks takes new memory where the SDK reuses its buffers, so on such a
 * machine a cold read measures the hypervisor's memory policy more than the client.
 *
 * While a benchmark runs, pages must stay free this long before they are reported, so memory
 * freed a moment ago is reused as a host that pins guest memory (or bare metal) would reuse it.
 */
const KNOB = '/sys/module/page_reporting/parameters/min_free_ms';
const HOLD_MS = 60_000;

/**
 * Holds freed memory in the guest for the benchmark (where the knob exists and may be written);
 * answers a line saying what was done and the function that puts the old value back.
 */
export async function holdFreedMemory(): Promise<{ line: string; restore(): Promise<void> }> {
  let before: string;
  try {
    before = (await readFile(KNOB, 'utf8')).trim();
    await writeFile(KNOB, `${HOLD_MS}\n`);
  } catch {
    return { line: 'free page reporting: not on this kernel, or not writable; memory as the machine has it', restore: async () => undefined };
  }
  return {
    line: `free page reporting: pages report to the host after ${HOLD_MS} ms free during this run (was ${before} ms)`,
    restore: () => writeFile(KNOB, `${before}\n`),
  };
}

/**
 * Runs a benchmark's measurements with freed memory held (`holdFreedMemory`), printing its line
 * first and putting the setting back after, whatever happens.
 */
export async function withFreedMemoryHeld<T>(measure: () => Promise<T>): Promise<T> {
  const memory = await holdFreedMemory();
  process.stdout.write(`${memory.line}\n`);
  try {
    return await measure();
  } finally {
    await memory.restore();
  }
}
