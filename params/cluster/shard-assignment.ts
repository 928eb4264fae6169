import { ClusterError } from './cluster-error.js';

/**
 * Places each of `shards` shards on `replicas` distinct members of `members`, spread
 * evenly: every member ends with floor or ceil of shards x replicas / members shards.
 *
 * With `keep` (the current assignment), holders of a shard that are still members keep
 * it, so a repair moves only the shards of the member that left; the new replicas go to
 * the least loaded members. Deterministic for the same inputs (members are taken in
 * sorted order), so a coordinator that takes over computes the same plan.
 */
export function assignShards(shards: number, members: readonly string[], replicas: number, keep?: readonly (readonly string[])[]): string[][] {
  const nodes = [...new Set(members)].sort();
  if (replicas < 1) throw new ClusterError('CLUSTER_NOT_ENOUGH_MEMBERS', `replicas must be at least 1, got ${replicas}`);
  if (nodes.length < replicas) throw new ClusterError('CLUSTER_NOT_ENOUGH_MEMBERS', `${replicas} replicas need ${replicas} members; the cluster has ${nodes.length} (${nodes.join(', ') || 'none'})`);
  const live = new Set(nodes);
  const load = new Map(nodes.map((n) => [n, 0]));
  const plan: string[][] = [];
  for (let s = 0; s < shards; s++) {
    const held = (keep?.[s] ?? []).filter((n) => live.has(n)).slice(0, replicas);
    for (const n of held) load.set(n, load.get(n)! + 1);
    plan.push([...held]);
  }
  // How many shards each pair of members holds together: spreading pairs means the
  // replicas of a dead member's shards are on many members, so the repair load spreads too.
  const together = new Map<string, number>();
  const pair = (a: string, b: string) => (a < b ? `${a} ${b}` : `${b} ${a}`);
  const note = (holders: readonly string[]) => {
    for (let i = 0; i < holders.length; i++) for (let j = i + 1; j < holders.length; j++) together.set(pair(holders[i]!, holders[j]!), (together.get(pair(holders[i]!, holders[j]!)) ?? 0) + 1);
  };
  for (const holders of plan) note(holders);
  for (let s = 0; s < shards; s++) {
    const holders = plan[s]!;
    if (holders.length >= replicas) continue;
    for (const h of holders) for (const o of holders) if (h < o) together.set(pair(h, o), (together.get(pair(h, o)) ?? 0) - 1); // re-noted below
    while (holders.length < replicas) {
      // The least loaded member not yet holding the shard, then the one sharing fewest
      // shards with its holders; remaining ties go to the member after the shard's
      // position in the ring.
      let best: string | undefined;
      let bestKey: [number, number] = [Infinity, Infinity];
      for (let i = 0; i < nodes.length; i++) {
        const n = nodes[(s + i) % nodes.length]!;
        if (holders.includes(n)) continue;
        const key: [number, number] = [load.get(n)!, holders.reduce((sum, h) => sum + (together.get(pair(h, n)) ?? 0), 0)];
        if (key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) {
          best = n;
          bestKey = key;
        }
      }
      holders.push(best!);
      load.set(best!, load.get(best!)! + 1);
    }
    note(holders);
  }
  return plan;
}

/** The shards `node` holds in `assignment`, ascending. */
export function shardsOf(assignment: readonly (readonly string[])[], node: string): number[] {
  const out: number[] = [];
  assignment.forEach((holders, s) => {
    if (holders.includes(node)) out.push(s);
  });
  return out;
}
