import { readFile } from 'node:fs/promises';
import type { Link } from '../links/index.js';
import { UsageError } from './usage-error.js';
import { apiBase, callApi, table } from './api-client.js';

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** `strata links ls|add|set|rm|sync`: thin client of `/v1/links`. */
export async function runLinks(values: Values, positionals: string[]): Promise<number> {
  const [sub, ...args] = positionals;
  const base = apiBase(values.api);
  const json = values.json === true;
  switch (sub) {
    case 'ls': {
      const { links } = (await callApi(base, 'GET', '/v1/links')) as { links: Link[] };
      if (json) process.stdout.write(`${JSON.stringify(links, null, 2)}\n`);
      else process.stdout.write(table(['name', 'path', 'store', 'import', 'export'], links.map((l) => [l.name, l.path, l.store, l.import.mode, l.export.mode])));
      return 0;
    }
    case 'add': {
      if (args.length !== 3) throw new UsageError('USAGE', 'links add needs NAME PATH STORE-URL: strata links add imagenet /datasets/imagenet s3://bucket/imagenet');
      const [name, path, store] = args as [string, string, string];
      const body = { name, path, store, ...linkFields(values), import: importFields(values) };
      const link = (await callApi(base, 'POST', '/v1/links', body)) as Link;
      process.stdout.write(json ? `${JSON.stringify(link, null, 2)}\n` : `linked ${link.store} at ${link.path} as "${link.name}"\n`);
      return 0;
    }
    case 'set': {
      if (args.length !== 1) throw new UsageError('USAGE', 'links set needs NAME and what to change: strata links set imagenet --import eager --include "train/**"');
      const path = `/v1/links/${encodeURIComponent(args[0]!)}`;
      const changes = importFields(values);
      const body: Record<string, unknown> = { ...linkFields(values) };
      if (Object.keys(changes).length > 0) {
        // PATCH replaces the import policy as a whole: keep what the command line does not change.
        const current = (await callApi(base, 'GET', path)) as Link;
        body.import = { ...current.import, ...changes };
      }
      if (Object.keys(body).length === 0) throw new UsageError('USAGE', 'links set needs an option to change (--import, --include, --exclude, --on-event, --export, --endpoint, --region, --read-only)');
      const link = (await callApi(base, 'PATCH', path, body)) as Link;
      process.stdout.write(json ? `${JSON.stringify(link, null, 2)}\n` : `updated link "${link.name}": import ${link.import.mode}, export ${link.export.mode}${link.readOnly ? ', read-only' : ''}\n`);
      return 0;
    }
    case 'rm': {
      if (args.length !== 1) throw new UsageError('USAGE', 'links rm needs NAME: strata links rm imagenet [--force]');
      await callApi(base, 'DELETE', `/v1/links/${encodeURIComponent(args[0]!)}${values.force === true ? '?force=true' : ''}`);
      if (!json) process.stdout.write(`removed link "${args[0]}"\n`);
      return 0;
    }
    case 'sync': {
      if (args.length !== 1) throw new UsageError('USAGE', 'links sync needs NAME');
      const job = (await callApi(base, 'POST', `/v1/links/${encodeURIComponent(args[0]!)}/sync`)) as { id: string };
      process.stdout.write(json ? `${JSON.stringify(job)}\n` : `sync job ${job.id} started\n`);
      return 0;
    }
    default:
      throw new UsageError('USAGE', `links needs ls, add, set, rm or sync (got ${sub ?? 'nothing'}); run strata links --help`);
  }
}

/** The import policy fields the command line gives (for `add`, the rest default; for `set`, the rest stay). */
function importFields(values: Values): Record<string, unknown> {
  const list = (v: unknown) => (Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : undefined);
  return {
    ...(typeof values.import === 'string' ? { mode: values.import } : {}),
    ...(list(values.include) ? { include: list(values.include) } : {}),
    ...(list(values.exclude) ? { exclude: list(values.exclude) } : {}),
    ...(typeof values['on-event'] === 'string' ? { onEvent: values['on-event'] } : {}),
  };
}

/** Endpoint, region, export policy and read-only, as given on the command line. */
function linkFields(values: Values): Record<string, unknown> {
  return {
    ...(typeof values.endpoint === 'string' ? { endpoint: values.endpoint } : {}),
    ...(typeof values.region === 'string' ? { region: values.region } : {}),
    ...(typeof values.export === 'string' ? { export: { mode: values.export } } : {}),
    ...(values['read-only'] === true ? { readOnly: true } : {}),
  };
}
