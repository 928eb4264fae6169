import { describe, expect, it } from 'vitest';
import { blockId, blockIdInVersion, objectVersionId, splitBlockId } from './block-key.js';

describe('block ids and object version ids', () => {
  const ref = { storeId: 's3://b/p', key: 'dir/a,b].bin', etag: '"e,1"', size: 10 };

  it('builds and splits a block id through its object version id, commas and brackets in names included', () => {
    const id = blockId({ storeId: ref.storeId, key: ref.key, etag: ref.etag, index: 7 });
    expect(blockIdInVersion(objectVersionId(ref), 7)).toBe(id);
    expect(splitBlockId(id)).toEqual({ objectId: objectVersionId(ref), index: 7 });
  });

  it('answers undefined for what is not a block id', () => {
    expect(splitBlockId(objectVersionId({ ...ref, etag: 'x' }))).toBeUndefined();
    expect(splitBlockId('["s","k","e",-1]')).toBeUndefined();
    expect(splitBlockId('["s","k","e",1.5]')).toBeUndefined();
    expect(splitBlockId('no id')).toBeUndefined();
  });
});
