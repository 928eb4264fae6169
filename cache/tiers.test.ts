import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../telemetry/index.js';
import { CONFORMANCE_BLOCK, describeTierConformance, type TierHarness } from '../test/tier-conformance.js';
import { DramTier } from './dram-tier.js';
import { NvmeTier } from './nvme-tier.js';
import { recordOffset, readSlotRecord, poolGeometry } from './pmem-pool-layout.js';
import { PmemTier } from './pmem-tier.js';
import type { Tier } from './tier.js';

const logger = silentLogger();
const FOUR_BLOCKS = 4 * CONFORMANCE_BLOCK;

function sha256(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

async function flipByte(path: string, position: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, position);
    one[0] ^= 0xff;
    await handle.write(one, 0, 1, position);
  } finally {
    await handle.close();
  }
}

describeTierConformance(
  'dram',
  (): TierHarness => ({
    open: async () => new DramTier({ capacityBytes: FOUR_BLOCKS, verifyReads: true }, logger),
    corrupt: async (tier: Tier, id: string) => {
      // DRAM answers the stored Buffer itself: changing it is changing the stored block.
      const bytes = (tier as DramTier).getNow(id);
      if (bytes === undefined) throw new Error('block to corrupt is missing');
      bytes[bytes.length - 1] ^= 0xff;
    },
    cleanup: async () => undefined,
  }),
  { persistent: false, ioErrors: false },
);

describeTierConformance(
  'nvme',
  (): TierHarness => {
    let dir = '';
    // Headers add 24 bytes plus the id to each file; 512 bytes of slack covers the test ids.
    const config = () => ({ dir, capacityBytes: 4 * (CONFORMANCE_BLOCK + 512), reserveBytes: 0 });
    const blockPath = (id: string) => join(dir, sha256(id).slice(0, 2), `${sha256(id)}.blk`);
    return {
      open: async () => {
        dir = await mkdtemp(join(tmpdir(), 'strata-nvme-'));
        return NvmeTier.open(config(), logger);
      },
      reopen: () => NvmeTier.open(config(), logger),
      corrupt: async (_tier, id) => {
        const path = blockPath(id);
        const size = (await readFile(path)).length;
        await flipByte(path, size - 1);
      },
      breakIo: async (_tier, id) => {
        // A directory where the block file should be: open succeeds, read fails with EISDIR.
        await unlink(blockPath(id));
        await mkdir(blockPath(id));
      },
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
  { persistent: true, ioErrors: true },
);

describeTierConformance(
  'pmem',
  (): TierHarness => {
    let dir = '';
    const config = () => ({ path: join(dir, 'strata.pool'), capacityBytes: FOUR_BLOCKS, blockSize: CONFORMANCE_BLOCK });
    return {
      open: async () => {
        dir = await mkdtemp(join('/dev/shm', 'strata-pmem-'));
        return PmemTier.open(config(), logger);
      },
      reopen: () => PmemTier.open(config(), logger),
      corrupt: async (_tier, id) => {
        const file = await readFile(config().path);
        const geometry = poolGeometry(CONFORMANCE_BLOCK, 4);
        for (let slot = 0; slot < 4; slot += 1) {
          const record = readSlotRecord(file, recordOffset(slot), CONFORMANCE_BLOCK);
          if (record?.idHash === sha256(id)) {
            await flipByte(config().path, geometry.dataStart + slot * CONFORMANCE_BLOCK + 17);
            return;
          }
        }
        throw new Error('block to corrupt is not in the pool');
      },
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
  { persistent: true, ioErrors: false },
);
