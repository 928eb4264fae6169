import { z } from 'zod';
import { parseStoreUrl } from './url.js';

/**
 * The schemas of the two URLs that name a store, shared by the daemon's options
 * (`strata mount URL --endpoint E`) and links (`POST /v1/links`), so both accept and refuse
 * the same things with the same words.
 */

/** `s3://bucket[/prefix]` or `file:///absolute/dir` (see parseStoreUrl). */
export const storeUrlSchema = z.string().superRefine((url, ctx) => {
  try {
    parseStoreUrl(url);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/** Longer endpoint URLs are not S3 endpoints; the limit keeps store requests (and the links file) sane. */
const MAX_ENDPOINT_LENGTH = 2048;

/** An S3 endpoint: see httpUrlSchema; credentials come from the AWS chain. */
export function endpointSchema(label?: string): z.ZodType<string> {
  return httpUrlSchema(label, 'they come from the AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE)');
}

/**
 * An http(s) URL without credentials (a URL carrying them would be stored, logged and shown by
 * `GET /v1/links`; `credentialsHint` says where they come from instead), query or fragment.
 * `label` (`--endpoint`) starts each message when the caller shows messages without a field
 * name.
 */
export function httpUrlSchema(label: string | undefined, credentialsHint: string): z.ZodType<string> {
  const say = (message: string) => (label ? `${label}: ${message}` : message);
  return z.string().superRefine((text, ctx) => {
    let url: URL;
    try {
      url = new URL(text);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme');
    } catch {
      ctx.addIssue({ code: 'custom', message: say(`"${text.slice(0, 100)}" is not an http(s) URL`) });
      return;
    }
    if (url.username || url.password) ctx.addIssue({ code: 'custom', message: say(`may not carry credentials (user:password@); ${credentialsHint}`) });
    if (text.length > MAX_ENDPOINT_LENGTH) ctx.addIssue({ code: 'custom', message: say(`must be at most ${MAX_ENDPOINT_LENGTH} characters`) });
    if (url.search || url.hash) ctx.addIssue({ code: 'custom', message: say('may not carry a query or fragment') });
  });
}
