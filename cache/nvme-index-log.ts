/**
 * The NVMe tier's index as an append-only text log, one record per line:
 *   `P <fileBytes> <checksum> <json id>`  a block file was committed (renamed into place)
 *   `W <fileBytes> <blockSize> <crc,crc,...> <json object id>`
 *                                         a whole-object file was committed (nvme-whole-file.ts):
 *                                         the object's bytes at their own offsets, and the
 *                                         CRC-32C of each of its blocks
 *   `D <json id>`                         a block or whole-object file was removed
 * Replaying it in order gives the live blocks in write order, which is the LRU order
 * the tier starts with. A line that does not parse (a torn last line after a crash) is
 * skipped: the block it named is then an orphan file that the start-up scan adopts.
 * Ids are JSON strings, so no key can contain a separator that breaks the format.
 */
export interface IndexEntry {
  readonly fileBytes: number;
  /** The block's CRC-32C; 0 for a whole-object file (its blocks' CRCs are in `whole`). */
  readonly checksum: number;
  /** Set for a whole-object file: `fileBytes` is the object's size. */
  readonly whole?: WholeLayout;
}

/** How a whole-object file splits into the cache's blocks, and each block's CRC-32C. */
export interface WholeLayout {
  readonly blockSize: number;
  readonly checksums: readonly number[];
}

export function putRecord(id: string, entry: IndexEntry): string {
  if (entry.whole) return `W ${entry.fileBytes} ${entry.whole.blockSize} ${entry.whole.checksums.join(',')} ${JSON.stringify(id)}\n`;
  return `P ${entry.fileBytes} ${entry.checksum} ${JSON.stringify(id)}\n`;
}

export function deleteRecord(id: string): string {
  return `D ${JSON.stringify(id)}\n`;
}

/** Replays a log; also answers how many records it held (to decide on compaction). */
export function replayIndexLog(text: string): { entries: Map<string, IndexEntry>; records: number } {
  const entries = new Map<string, IndexEntry>();
  let records = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) break; // no newline: a torn final record
    const line = text.slice(start, end);
    start = end + 1;
    records += 1;
    if (line.startsWith('P ')) {
      const second = line.indexOf(' ', 2);
      const third = line.indexOf(' ', second + 1);
      if (second === -1 || third === -1) continue;
      const fileBytes = Number(line.slice(2, second));
      const checksum = Number(line.slice(second + 1, third));
      const id = parseId(line.slice(third + 1));
      if (id === undefined || !Number.isSafeInteger(fileBytes) || !Number.isSafeInteger(checksum)) continue;
      entries.delete(id);
      entries.set(id, { fileBytes, checksum });
    } else if (line.startsWith('W ')) {
      const parsed = parseWhole(line);
      if (parsed === undefined) continue;
      entries.delete(parsed.id);
      entries.set(parsed.id, parsed.entry);
    } else if (line.startsWith('D ')) {
      const id = parseId(line.slice(2));
      if (id !== undefined) entries.delete(id);
    }
  }
  return { entries, records };
}

/** A `W` record, or undefined when any field is malformed (the record is then skipped). */
function parseWhole(line: string): { id: string; entry: IndexEntry } | undefined {
  const fields: string[] = [];
  let at = 2;
  for (let i = 0; i < 3; i++) {
    const space = line.indexOf(' ', at);
    if (space === -1) return undefined;
    fields.push(line.slice(at, space));
    at = space + 1;
  }
  const id = parseId(line.slice(at));
  const fileBytes = Number(fields[0]);
  const blockSize = Number(fields[1]);
  const checksums = fields[2]!.split(',').map(Number);
  if (id === undefined || !Number.isSafeInteger(fileBytes) || fileBytes <= 0 || !Number.isSafeInteger(blockSize) || blockSize <= 0) return undefined;
  if (checksums.length !== Math.ceil(fileBytes / blockSize) || !checksums.every((c) => Number.isInteger(c) && c >= 0 && c <= 0xffff_ffff)) return undefined;
  return { id, entry: { fileBytes, checksum: 0, whole: { blockSize, checksums } } };
}

function parseId(text: string): string | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}
