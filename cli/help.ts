import type { ParseArgsConfig } from 'node:util';
import { DAEMON_OPTIONS } from './daemon-options.js';

interface CommandSpec {
  readonly usage: string;
  readonly summary: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  readonly optionHelp: ReadonlyArray<readonly [string, string]>;
}

const apiOption = { api: { type: 'string' } } as const;

/** Every command and option, with its help text: `strata --help` prints this table. */
export const COMMANDS: Record<string, CommandSpec> = {
  mount: {
    usage: 'strata mount <store-url> <mountpoint> [options]',
    summary: 'Mount a bucket prefix (s3://bucket[/prefix]) or a local directory (file:///abs/dir) and serve it until SIGINT/SIGTERM.',
    options: DAEMON_OPTIONS,
    optionHelp: [
      ['--endpoint URL', 'S3-compatible endpoint (or AWS_ENDPOINT_URL); path-style addressing then'],
      ['--region R', 'S3 region (default us-east-1 or AWS_REGION)'],
      ['--state-dir DIR', 'links, journal and tier files (default ~/.strata)'],
      ['--dram SIZE', 'DRAM tier size, e.g. 2GiB (default: 1GiB or a quarter of RAM, whichever is less)'],
      ['--pmem FILE:SIZE', 'persistent-memory tier: a pool file mapped into memory, e.g. /dev/shm/strata.pool:8GiB'],
      ['--pmem-whole-files on|off', 'keep objects whole in the pmem tier as one file each beside the pool, within its size, read by the kernel through passthrough (default on)'],
      ['--pmem-scrub-rate SIZE', 'bytes per second the background scrub re-reads of the pmem tier\'s whole files (default 16MiB; 0: off)'],
      ['--nvme DIR[:SIZE]', 'NVMe tier: a directory of block files'],
      ['--nvme-whole-files on|off', 'keep objects whole in the NVMe tier as one file each, read by the kernel through passthrough (default on)'],
      ['--nvme-scrub-rate SIZE', 'bytes per second the background scrub re-reads of whole files to check them (default 16MiB; 0: off)'],
      ['--memory SIZE', 'memory budget for the DRAM tier plus readahead, in-flight and upload buffers (default: DRAM + 64MiB); the process stays under it + 192MiB'],
      ['--block-size SIZE', 'cache block size, 1MiB to 16MiB (default 4MiB)'],
      ['--api HOST:PORT', 'admin API address (default 127.0.0.1:7070); non-loopback needs STRATA_TOKEN'],
      ['--close async|sync', 'default close mode for writes (default async)'],
      ['--write-passthrough on|off', 'native FUSE path, async close: the kernel writes new files straight into their staged file (default on)'],
      ['--metadata-ttl SECONDS', 'how long file and folder metadata is trusted (default 1)'],
      ['--allow-other', 'let other users use the mount (permissions checked against modes and owners)'],
      ['--allow-root', 'let root (besides the daemon\'s user) use the mount'],
      ['--uid N, --gid N', 'owner shown for files and folders whose object carries none (default: the daemon\'s)'],
      ['--file-mode OCTAL', 'permissions of files whose object carries none (default 0644)'],
      ['--dir-mode OCTAL', 'permissions of folders (default 0755)'],
      ['--object-metadata listed|known', 'listed: HEAD files seen only in a listing for their mode, owner and link type (s3fs buckets); known (default): use what lookups and writes saw'],
      ['--stale-on-error SECONDS', 'serve cached metadata this long past its TTL while the store is down or hung (default 86400; 0: off)'],
      ['--fuse auto|native|fuse-native', 'FUSE path: the native addon (1 MiB requests, kernel caching, passthrough; needs root) or libfuse 2; auto (default, or STRATA_FUSE) falls back'],
      ['--read-only', 'refuse writes (EROFS)'],
      ['--staging SIZE', 'most bytes staged for upload (default: half the free space of the state dir)'],
      ['--peers LIST', 'share cached blocks with peer daemons: API URLs (http://10.0.0.1:7070,...) or dns:NAME:PORT; needs STRATA_PEER_SECRET'],
      ['--advertise URL', 'this daemon\'s API URL as its peers list it (default: found in --peers by address and port)'],
      ['--peer-timeout SECONDS', 'how long to wait for a block from its owner peer before reading the store (default 5)'],
      ['--lookup-threads N', 'worker threads for parameter-table lookups (default 2, or 1 on one core; 0: the event loop)'],
      ['--params-wire HOST:PORT|PATH', 'also answer parameter-table lookups over the binary protocol there (TCP or a unix socket; off by default; docs/PARAMS.md)'],
      ['--cluster etcd://HOST:PORT[,HOST:PORT]/PREFIX', 'join the parameter-table cluster coordinated through that etcd (docs/PARAMS.md, Cluster)'],
      ['--node-name NAME', 'this member\'s name in the cluster (default: the host name)'],
      ['--log-level LEVEL', 'trace, debug, info (default), warn, error, silent'],
      ['--log-format FORMAT', 'auto (default: coloured lines on a terminal, JSON otherwise), pretty or json'],
      ['--log-file FILE', 'append logs to FILE instead of stderr'],
      ['--config FILE', 'read options from a TOML file (the option names without --; flags win; see strata config check)'],
      ['--background', 'return once mounted (exit 0) or with the error (non-zero); the daemon goes on, logging to --log-file or <state-dir>/strata.log'],
      ['--pid-file FILE', 'write the daemon\'s pid there once it serves (for systemd\'s Type=forking)'],
    ],
  },
  unmount: {
    usage: 'strata unmount <mountpoint> [--timeout SECONDS]',
    summary: 'Stop the daemon serving a mount (uploads finish or are journaled) and wait until it is unmounted; detach a stale mount.',
    options: { timeout: { type: 'string' } },
    optionHelp: [['--timeout SECONDS', 'how long to wait for the daemon to finish (default 120)']],
  },
  csi: {
    usage: 'strata csi --endpoint unix:///csi/csi.sock --mount DIR [--node-id NAME] [--api HOST:PORT]',
    summary: 'The Kubernetes CSI node plugin (csi.strata.io) for the strata serve daemon on this node (docs/KUBERNETES.md).',
    options: { ...apiOption, endpoint: { type: 'string' }, mount: { type: 'string' }, 'node-id': { type: 'string' } },
    optionHelp: [
      ['--endpoint unix://PATH', 'the gRPC socket the kubelet (through the registrar) calls'],
      ['--mount DIR', 'the mount point of the node\'s strata serve; volumes are bind-mounted from its /csi folder'],
      ['--node-id NAME', 'this node\'s name in NodeGetInfo (default: the host name)'],
      ['--api HOST:PORT', 'the daemon\'s admin API (default 127.0.0.1:7070)'],
    ],
  },
  config: {
    usage: 'strata config check FILE',
    summary: 'Check a config file: every option is validated as strata mount would, without mounting.',
    options: {},
    optionHelp: [['check FILE', 'prints the options it would run with, or one line naming the wrong one (exit 2)']],
  },
  serve: {
    usage: 'strata serve --mount DIR [options]',
    summary: 'Run the daemon with the links persisted in the state dir (managed with strata links and the API).',
    options: { mount: { type: 'string' }, ...DAEMON_OPTIONS },
    optionHelp: [['--mount DIR', 'the mount point (an empty folder)'], ['(others)', 'as for strata mount']],
  },
  links: {
    usage: 'strata links ls|add|set|rm|sync [NAME PATH STORE-URL] [options]',
    summary: 'List, add, change, remove or sync bucket links of a running `strata serve`.',
    options: {
      ...apiOption,
      json: { type: 'boolean' },
      endpoint: { type: 'string' },
      region: { type: 'string' },
      import: { type: 'string' },
      include: { type: 'string', multiple: true },
      exclude: { type: 'string', multiple: true },
      'on-event': { type: 'string' },
      export: { type: 'string' },
      'read-only': { type: 'boolean' },
      force: { type: 'boolean' },
    },
    optionHelp: [
      ['add NAME PATH STORE-URL', 'link s3://bucket/prefix (or file:///dir) at PATH inside the mount'],
      ['set NAME [options]', 'change a link\'s policies (the options below; name, path and store stay)'],
      ['rm NAME [--force]', 'remove a link (refused while it has pending uploads, unless --force)'],
      ['sync NAME', 'revalidate the link against the store; eager links refetch what changed'],
      ['--import lazy|eager', 'lazy loads on first read; eager prefetches matching objects'],
      ['--include GLOB / --exclude GLOB', 'which keys eager import fetches (repeatable)'],
      ['--on-event invalidate|preload', 'what an S3 event notification does to a created object'],
      ['--export async|sync|none', 'how writes go back to the store'],
      ['--endpoint URL, --region R', 'the link\'s S3 endpoint and region'],
      ['--api HOST:PORT, --json', 'the daemon to talk to; machine-readable output'],
    ],
  },
  warmup: {
    usage: 'strata warmup PATH... [--manifest FILE] [--tier T] [--pin] [--api HOST:PORT]',
    summary: 'Prefetch files or folders into the cache, with a progress bar; exits when done (Ctrl-C cancels).',
    options: { ...apiOption, json: { type: 'boolean' }, manifest: { type: 'string' }, tier: { type: 'string' }, pin: { type: 'boolean' } },
    optionHelp: [
      ['PATH...', 'paths in the mount (/mnt/strata/datasets/x or /datasets/x)'],
      ['--manifest FILE', 'a file with one path per line'],
      ['--tier dram|pmem|nvme', 'the tier every block must be in when the job is done (pmem/nvme: fetched blocks skip DRAM)'],
      ['--pin', 'keep the files cached'],
      ['--json', 'print the final job as JSON'],
    ],
  },
  distribute: {
    usage: 'strata distribute PATH... [--api HOST:PORT] [--json]',
    summary: 'Spread files to every peer (--peers): each fetches the blocks it owns from the store, then the rest from its peers.',
    options: { ...apiOption, json: { type: 'boolean' } },
    optionHelp: [
      ['PATH...', 'paths in the mount (/mnt/strata/models/x or /models/x)'],
      ['--json', 'print this daemon\'s final job and the peers\' jobs as JSON'],
    ],
  },
  params: {
    usage: 'strata params build|load|mget|publish|ls ...',
    summary: 'Build parameter tables (embedding lookups), load them into the daemon, look up keys.',
    options: { ...apiOption, json: { type: 'boolean' }, dim: { type: 'string' }, shards: { type: 'string' }, strict: { type: 'boolean' }, tier: { type: 'string' }, replicas: { type: 'string' } },
    optionHelp: [
      ['build --dim D [--shards N] [--strict] INPUT DEST', 'turn (uint64 key, D x float32) records into the served format (runs locally)'],
      ['load NAME SOURCE [--tier pmem|nvme]', 'load or replace a table from a file, a path in the mount or a store URL (default tier: pmem, nvme when pmem lacks room)'],
      ['mget NAME KEY...', 'print the vectors of decimal keys (float32 values with the digits of a float32)'],
      ['publish NAME SOURCE [--replicas R]', 'publish a table to the daemon\'s cluster: shards spread over the members, R copies each (default 2), switched in two phases'],
      ['ls', 'the tables served here (name, version, keys, dim, shards, tier, size, source) and, in a cluster, its tables, versions and replication state'],
      ['--api HOST:PORT, --json', 'the daemon to talk to; machine-readable output'],
    ],
  },
  jobs: {
    usage: 'strata jobs [ls] | strata jobs cancel ID [--api HOST:PORT] [--json]',
    summary: 'List background jobs (prefetch, sync, eager import) with their progress, or cancel one.',
    options: { ...apiOption, json: { type: 'boolean' } },
    optionHelp: [
      ['ls', 'every job the daemon remembers (the last 200 finished ones)'],
      ['cancel ID', 'stop a queued or running job'],
    ],
  },
  status: {
    usage: 'strata status [--api HOST:PORT] [--json]',
    summary: 'Show the cache tiers of a running daemon (capacity, use, hits, misses, evictions) and its parameter-table cluster.',
    options: { ...apiOption, json: { type: 'boolean' } },
    optionHelp: [
      ['--api HOST:PORT', 'the daemon\'s admin API (default 127.0.0.1:7070); STRATA_TOKEN is sent if set'],
      ['--json', 'print the JSON answer instead of a table'],
    ],
  },
};

export function helpText(command?: string): string {
  const spec = command ? COMMANDS[command] : undefined;
  if (spec) return commandHelp(spec);
  const lines = [
    'strata: a data-lake cache that mounts object-store buckets through FUSE',
    '',
    'Usage: strata <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, s]) => `  ${name.padEnd(10)} ${s.summary}`),
    '',
    ...Object.values(COMMANDS).flatMap((s) => commandHelp(s).split('\n')),
    'Credentials come from the standard AWS chain (environment, ~/.aws, instance roles).',
    '',
  ];
  return lines.join('\n');
}

function commandHelp(spec: CommandSpec): string {
  const width = Math.max(...spec.optionHelp.map(([flag]) => flag.length));
  return [`${spec.usage}`, `  ${spec.summary}`, ...spec.optionHelp.map(([flag, text]) => `    ${flag.padEnd(width)}  ${text}`), ''].join('\n') + '\n';
}
