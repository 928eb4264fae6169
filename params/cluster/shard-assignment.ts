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
  for (let s = 0; s < shards; s++) {
    const holders = plan[s]!;
    while (holders.length < replicas) {
      // The least loaded member not yet holding the shard; ties go to the member after the
      // shard's position in the ring, so equal loads still spread over different pairs.
      let best: string | undefined;
      for (let i = 0; i < nodes.length; i++) {
        const n = nodes[(s + i) % nodes.length]!;
        if (holders.includes(n)) continue;
        if (best === undefined || load.get(n)! < load.get(best)!) best = n;
      }
      holders.push(best!);
      load.set(best!, load.get(best!)! + 1);
    }
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
