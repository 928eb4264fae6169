/**
 * The NVMe tier's index as an append-only text log, one record per line:
 *   `P <fileBytes> <checksum> <json id>`  a block file was committed (renamed into place)
 *   `D <json id>`                         a block file was removed
 * Replaying it in order gives the live blocks in write order, which is the LRU order
 * the tier starts with. A line that does not parse (a torn last line after a crash) is
 * skipped: the block it named is then an orphan file that the start-up scan adopts.
 * Ids are JSON strings, so no key can contain a separator that breaks the format.
 */
export interface IndexEntry {
  readonly fileBytes: number;
  readonly checksum: number;
}

export function putRecord(id: string, entry: IndexEntry): string {
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
    } else if (line.startsWith('D ')) {
      const id = parseId(line.slice(2));
      if (id !== undefined) entries.delete(id);
    }
  }
  return { entries, records };
}

function parseId(text: string): string | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}
