import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PendingUpload } from './pending-upload.js';
import { StagedFile } from './staged-file.js';
import type { UploadRecord } from './upload-record.js';

const PART = 5 * 1024 * 1024;

describe('PendingUpload transitions', () => {
  let dir: string;
  let staged: StagedFile;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-pending-'));
    staged = await StagedFile.create(join(dir, 'a.data'));
    await staged.write(0, Buffer.from('hello'));
  });
  afterEach(async () => {
    await staged.close();
    await rm(dir, { recursive: true, force: true });
  });

  const fresh = (): PendingUpload => new PendingUpload({ id: 'u1', storeId: 's', key: 'a/b', staged, partSize: PART, mtimeMs: 1000, openSeq: 1 });

  it('starts writing, dirty, streamed, with a writing record', () => {
    const u = fresh();
    expect([u.state, u.recordState, u.released, u.dirty, u.cancelled, u.gone, u.mode]).toEqual(['writing', 'writing', false, true, false, false, 'stream']);
    expect(u.settled).toBe(false);
  });

  it('release: writing → queued, the record closed, in the given order and time', () => {
    const u = fresh();
    u.release([2000, 7], 2000);
    expect([u.state, u.recordState, u.released]).toEqual(['queued', 'closed', true]);
    expect(u.order).toEqual([2000, 7]);
    expect(u.record()).toMatchObject({ state: 'closed', order: [2000, 7], mtimeMs: 2000, key: 'a/b', size: 5 });
  });

  it('a released upload goes uploading → committing → done, and the record follows', async () => {
    const u = fresh();
    u.release([1, 1], 1);
    u.uploading();
    expect([u.state, u.recordState]).toEqual(['uploading', 'closed']);
    u.completing();
    expect([u.state, u.recordState]).toEqual(['committing', 'committing']);
    u.settle('done');
    expect(u.state).toBe('done');
    expect(u.settled).toBe(true);
    expect(u.uploadedBytes).toBe(5);
    await u.finished;
    await u.inStore;
  });

  it('a failure counts an attempt and makes a released upload retrying; a landed part resumes it', () => {
    const u = fresh();
    u.release([1, 1], 1);
    u.uploading();
    u.failed(new Error('503'));
    expect([u.state, u.attempts, u.lastError]).toEqual(['retrying', 1, '503']);
    u.partLanded();
    expect(u.state).toBe('uploading');
  });

  it('a failed part of an open file leaves it writing; the commit task of an fsync marks it retrying', () => {
    const u = fresh();
    u.failed('boom');
    expect([u.state, u.attempts, u.lastError]).toEqual(['writing', 1, 'boom']);
    u.retrying();
    expect(u.state).toBe('retrying');
    u.partLanded();
    expect(u.state).toBe('writing'); // not released: back to writing
  });

  it('an interrupt queues a released upload again with a closed record, and an open one writing', () => {
    const released = fresh();
    released.release([1, 1], 1);
    released.uploading();
    released.completing();
    released.interrupted();
    expect([released.state, released.recordState]).toEqual(['queued', 'closed']);

    const open = fresh();
    open.uploading();
    open.interrupted();
    expect([open.state, open.recordState]).toEqual(['uploading', 'writing']);
  });

  it('an interrupt leaves a settled upload settled', () => {
    const u = fresh();
    u.release([1, 1], 1);
    u.settle('done');
    u.interrupted();
    expect(u.state).toBe('done');
  });

  it('an fsync commit of an open file makes it clean and writing again, its record writing', () => {
    const u = fresh();
    u.uploading();
    u.completing();
    u.landed = true;
    u.committedOpen();
    expect([u.state, u.recordState, u.dirty, u.landed]).toEqual(['writing', 'writing', false, false]);
    u.touched(5000);
    expect([u.dirty, u.mtimeMs]).toEqual([true, 5000]);
  });

  it('touched drops an explicit mtime and keeps the other attributes', () => {
    const u = fresh();
    u.meta = { mode: 0o644, mtime: 123 };
    u.copiedCurrent(true);
    expect(u.dirty).toBe(false);
    u.touched(9);
    expect(u.meta).toEqual({ mode: 0o644 });
    expect(u.dirty).toBe(true);
  });

  it('a lost multipart upload sends the record back to closed', () => {
    const u = fresh();
    u.release([1, 1], 1);
    u.completing();
    u.multipartLost();
    expect([u.state, u.recordState]).toEqual(['committing', 'closed']);
  });

  it('cancel then settle: cancelled and settled; markGone answers true once', async () => {
    const u = fresh();
    u.cancel();
    expect(u.cancelled).toBe(true);
    expect(u.markGone()).toBe(true);
    expect(u.markGone()).toBe(false);
    u.settle('cancelled');
    expect(u.settled).toBe(true);
    await u.finished;
  });

  it('moves keep their order unless given one; a fall-back makes the file whole', () => {
    const u = fresh();
    u.release([1, 1], 1);
    u.moved('c/d');
    expect([u.key, u.order]).toEqual(['c/d', [1, 1]]);
    u.moved('e/f', [3, 2]);
    expect([u.key, u.order]).toEqual(['e/f', [3, 2]]);
    u.fellBack();
    expect(u.mode).toBe('whole');
  });

  it('resumed from a record: released, recovered, queued, with its parts and upload; moved before the crash it starts over', () => {
    const record: UploadRecord = {
      version: 1,
      id: 'r1',
      storeId: 's',
      key: 'old/x',
      stagedFile: staged.path,
      size: 5,
      partSizeBytes: PART,
      uploadId: 'up-1',
      parts: [{ partNumber: 1, etag: '"e1"', size: PART }],
      state: 'committing',
      order: [10, 3],
      mtimeMs: 10,
    };
    const u = PendingUpload.resumed(record, staged, 4);
    expect([u.state, u.recordState, u.released, u.recovered, u.hasRecord, u.dirty]).toEqual(['queued', 'committing', true, true, true, true]);
    expect(u.multipart).toEqual({ key: 'old/x', uploadId: 'up-1' });
    expect([...u.parts.keys()]).toEqual([1]);
    expect(u.order).toEqual([10, 3]);
    u.reconciled();
    expect(u.recovered).toBe(false);

    const moved = PendingUpload.resumed(record, staged, 5);
    moved.movedBeforeCrash('new/x');
    expect([moved.key, moved.recovered, moved.recordState]).toEqual(['new/x', false, 'closed']);
  });
});
