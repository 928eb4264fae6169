import { createHash } from 'node:crypto';

/**
 * The weight of `member` for `item` under rendezvous (highest random weight) hashing: the
 * first 8 bytes of SHA-256(member NUL item), as an unsigned 64-bit integer. SHA-256 is
 * overkill for spread but is in every Node build and costs about a microsecond for these
 * short strings, nothing next to a 4 MiB block transfer.
 */
function weight(member: string, item: string): bigint {
  return createHash('sha256').update(member).update('\0').update(item).digest().readBigUInt64BE(0);
}

/**
 * The member that owns `item`: the one with the highest weight. Every daemon that sees the
 * same member list picks the same owner, and when a member leaves only the items it owned
 * move (each to the member with the next-highest weight). Ties (astronomically unlikely)
 * go to the smaller member string so the answer never depends on list order.
 * Answers undefined for an empty list.
 */
export function rendezvousOwner(item: string, members: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const member of members) {
    const w = weight(member, item);
    if (w > bestWeight || (w === bestWeight && best !== undefined && member < best)) {
      best = member;
      bestWeight = w;
    }
  }
  return best;
}
