import { createHash } from 'node:crypto';
import { createServer, Agent, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../test/fixtures/rgw.js';
import { PayloadHasher } from './payload-hasher.js';
import { GetFailure, objectAddress, SignedGet, type SignedGetOptions } from './s3-get.js';

describe('objectAddress', () => {
  it('addresses a given endpoint path-style, keeping its port and path', () => {
    expect(objectAddress('data', 'us-east-1', 'http://127.0.0.1:7480', {})).toEqual({ protocol: 'http:', hostname: '127.0.0.1', port: 7480, basePath: '/data' });
    expect(objectAddress('data', 'us-east-1', 'https://gw.example.org/s3/', {})).toEqual({ protocol: 'https:', hostname: 'gw.example.org', port: undefined, basePath: '/s3/data' });
    expect(objectAddress('data', 'us-east-1', 'http://[::1]:9000', {})).toMatchObject({ hostname: '::1', port: 9000 });
  });

  it('addresses AWS buckets virtual-hosted in their region', () => {
    expect(objectAddress('my-bucket', 'eu-west-1', undefined, {})).toEqual({ protocol: 'https:', hostname: 'my-bucket.s3.eu-west-1.amazonaws.com', port: undefined, basePath: '' });
    expect(objectAddress('models', 'cn-north-1', undefined, {})?.hostname).toBe('models.s3.cn-north-1.amazonaws.com.cn');
  });

  it('leaves to the SDK what only its endpoint rules know', () => {
    expect(objectAddress('dotted.bucket.name', 'us-east-1', undefined, {})).toBeUndefined();
    expect(objectAddress('data', 'us-east-1', undefined, { AWS_USE_FIPS_ENDPOINT: 'true' })).toBeUndefined();
    expect(objectAddress('data', 'us-east-1', undefined, { AWS_USE_DUALSTACK_ENDPOINT: 'TRUE' })).toBeUndefined();
    expect(objectAddress('data', 'us-east-1', undefined, { AWS_ENDPOINT_URL_S3: 'http://elsewhere:1' })).toBeUndefined();
    expect(objectAddress('fast--usw2-az1--x-s3', 'us-west-2', undefined, {})).toBeUndefined();
    expect(objectAddress('data', 'not a region', undefined, {})).toBeUndefined();
    expect(objectAddress('data', 'us-east-1', 'ftp://host', {})).toBeUndefined();
    expect(objectAddress('data', 'us-east-1', 'not a url', {})).toBeUndefined();
  });
});

/** A local HTTP server whose answers the test scripts; it records every request it was sent. */
class ScriptedServer {
  readonly requests: IncomingMessage[] = [];
  #server: Server | undefined;
  #handler: (req: IncomingMessage, res: ServerResponse, n: number) => void = () => {};

  async start(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<number> {
    this.#handler = handler;
    this.#server = createServer((req, res) => {
      this.requests.push(req);
      this.#handler(req, res, this.requests.length);
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }
}

function xmlError(res: ServerResponse, status: number, code: string): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>scripted ${code}</Message></Error>`);
}

async function bodyOf(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res as AsyncIterable<Buffer>) text += chunk.toString();
  return text;
}

/** A SignedGet's options for the scripted server on `port`. */
function testOptions(port: number, agent: Agent, overrides: Partial<SignedGetOptions>): SignedGetOptions {
  return {
    address: { protocol: 'http:', hostname: '127.0.0.1', port, basePath: '/bucket' },
    region: 'us-east-1',
    credentials: async () => ({ accessKeyId: 'AKTEST', secretAccessKey: 'secret-not-in-logs' }),
    agent,
    maxAttempts: 4,
    connectTimeoutMs: 1_000,
    socketTimeoutMs: 5_000,
    storeUrl: 's3://bucket',
    endpointName: `http://127.0.0.1:${port}`,
    ...overrides,
  };
}

describe('SignedGet', () => {
  const server = new ScriptedServer();
  const agent = new Agent({ keepAlive: true });
  afterEach(async () => {
    await server.stop();
    server.requests.length = 0;
  });

  function getter(port: number, overrides: Partial<SignedGetOptions> = {}): SignedGet {
    return new SignedGet(testOptions(port, agent, overrides));
  }

  it('sends a SigV4-signed GET with the key encoded per segment, its range and If-Match', async () => {
    const port = await server.start((_req, res) => {
      res.writeHead(206, { etag: '"abc"', 'content-range': 'bytes 2-5/10', 'content-length': '4' });
      res.end('2345');
    });
    const res = await getter(port, { credentials: async () => ({ accessKeyId: 'AKTEST', secretAccessKey: 's', sessionToken: 'token-1' }) }).get({ key: 'a b/c+d!(1).bin', range: [2, 5], ifMatch: 'abc' });
    expect(res.statusCode).toBe(206);
    expect(await bodyOf(res)).toBe('2345');
    const sent = server.requests[0]!;
    expect(sent.method).toBe('GET');
    expect(sent.url).toBe('/bucket/a%20b/c%2Bd%21%281%29.bin');
    expect(sent.headers.range).toBe('bytes=2-5');
    expect(sent.headers['if-match']).toBe('"abc"');
    expect(sent.headers.host).toBe(`127.0.0.1:${port}`);
    expect(sent.headers['x-amz-content-sha256']).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sent.headers['x-amz-security-token']).toBe('token-1');
    expect(sent.headers['x-amz-date']).toMatch(/^\d{8}T\d{6}Z$/);
    expect(sent.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKTEST\/\d{8}\/us-east-1\/s3\/aws4_request, SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}$/);
    expect(sent.headers.authorization).toContain('if-match');
    expect(sent.headers.authorization).toContain('range');
  });

  it('retries throttling and transient 5xx with backoff, logging each retry, then answers', async () => {
    const port = await server.start((_req, res, n) => {
      if (n === 1) return xmlError(res, 503, 'SlowDown');
      if (n === 2) return xmlError(res, 500, 'InternalError');
      res.writeHead(200, { etag: '"e"', 'content-length': '2' });
      res.end('ok');
    });
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const res = await getter(port, { logger }).get({ key: 'k' });
    expect(await bodyOf(res)).toBe('ok');
    expect(server.requests).toHaveLength(3);
    expect(lines.map((l) => l.attempt)).toEqual([2, 3]);
    expect(lines.every((l) => l.msg === 'retrying a store request' && l.command === 'GetObject')).toBe(true);
    expect(JSON.stringify(lines)).not.toContain('secret-not-in-logs');
  });

  it('answers a client error at once, as a failure carrying S3 code and status', async () => {
    const port = await server.start((_req, res) => xmlError(res, 404, 'NoSuchKey'));
    const err = await getter(port).get({ key: 'missing' }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(GetFailure);
    expect(err).toMatchObject({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
    expect(server.requests).toHaveLength(1);
  });

  it('names a failure without an error body by its status', async () => {
    const port = await server.start((_req, res) => {
      res.writeHead(412);
      res.end();
    });
    await expect(getter(port).get({ key: 'k', ifMatch: 'old' })).rejects.toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
  });

  it('stops a request that never answers when its signal aborts, without retrying it', async () => {
    const port = await server.start(() => {}); // never answers
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    await expect(getter(port).get({ key: 'k', signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(server.requests).toHaveLength(1);
  });

  it('gives up on a silent socket after the socket timeout, retrying it as a dropped connection', async () => {
    const port = await server.start(() => {}); // never answers
    const err = await getter(port, { socketTimeoutMs: 150, maxAttempts: 2 }).get({ key: 'k' }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ name: 'TimeoutError', code: 'ETIMEDOUT' });
    expect(server.requests).toHaveLength(2);
  });

  it('starts no attempt after two socket timeouts in all, whatever maxAttempts allows (a hung store)', async () => {
    const port = await server.start(() => {}); // never answers
    const started = Date.now();
    const err = await getter(port, { socketTimeoutMs: 150, maxAttempts: 10 }).get({ key: 'k' }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ETIMEDOUT' });
    expect(server.requests.length).toBeLessThanOrEqual(3); // the budget can end during the second attempt's backoff at most
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('gives a store found silent 1 s per GET, without a retry, until one is answered', async () => {
    let answering = false;
    const port = await server.start((_req, res) => {
      if (answering) res.end('ok');
    });
    const g = getter(port, { socketTimeoutMs: 3_000, maxAttempts: 4 });
    let started = Date.now();
    await expect(g.get({ key: 'k' })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    // The full timeout, then one retry with the short one.
    const first = Date.now() - started;
    expect(first).toBeGreaterThanOrEqual(3_900);
    expect(first).toBeLessThan(5_500);
    started = Date.now();
    await expect(g.get({ key: 'k' })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(Date.now() - started).toBeLessThan(1_900);
    expect(server.requests).toHaveLength(3);
    answering = true;
    await expect(g.get({ key: 'k' }).then(bodyOf)).resolves.toBe('ok');
  }, 20_000);

  it('reports a refused connection after its retries', async () => {
    const port = await freePort();
    const err = await getter(port, { maxAttempts: 2 }).get({ key: 'k' }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('SignedGet.getBody over plain HTTP', () => {
  const server = new ScriptedServer();
  const agent = new Agent({ keepAlive: true });
  const getters: SignedGet[] = [];
  afterEach(async () => {
    for (const g of getters.splice(0)) g.close();
    await server.stop();
    server.requests.length = 0;
  });

  function getter(port: number, overrides: Partial<SignedGetOptions> = {}): SignedGet {
    const g = new SignedGet(testOptions(port, agent, { maxIdleSockets: 4, ...overrides }));
    getters.push(g);
    return g;
  }

  it('reads bodies of any size whole, signed as get() signs them, over one kept-alive connection', async () => {
    const data = Buffer.alloc(5 * 1024 * 1024 + 17);
    for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE(i, i);
    const sockets = new Set<unknown>();
    const port = await server.start((req, res) => {
      sockets.add(req.socket);
      const [first, last] = (/bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '') ?? [0, 0, data.length - 1]).slice(1).map(Number) as [number, number];
      res.writeHead(req.headers.range ? 206 : 200, { etag: '"v1"', 'content-length': String(last - first + 1), 'content-range': `bytes ${first}-${last}/${data.length}` });
      // Several writes, so the body arrives in several reads.
      const body = data.subarray(first, last + 1);
      for (let at = 0; at < body.length; at += 300_000) res.write(body.subarray(at, at + 300_000));
      res.end();
    });
    const g = getter(port);
    expect(g.readsDirect).toBe(true);
    const whole = await g.getBody({ key: 'a b/c.bin' });
    expect(whole.body.equals(data)).toBe(true);
    expect(whole.header('etag')).toBe('"v1"');
    const part = await g.getBody({ key: 'a b/c.bin', range: [3, 1_000_002], ifMatch: 'v1' });
    expect(part.body.equals(data.subarray(3, 1_000_003))).toBe(true);
    expect(part.header('content-range')).toBe(`bytes 3-1000002/${data.length}`);
    const tiny = await g.getBody({ key: 'k', range: [0, 0] });
    expect(tiny.body).toEqual(data.subarray(0, 1));
    expect(sockets.size).toBe(1);
    const sent = server.requests[1]!;
    expect(sent.url).toBe('/bucket/a%20b/c.bin');
    expect(sent.headers['if-match']).toBe('"v1"');
    expect(sent.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKTEST\/.*Signature=[0-9a-f]{64}$/);
  });

  it('answers an error with S3 code and status, and the next request still works', async () => {
    const port = await server.start((req, res, n) => {
      if (n === 1) return xmlError(res, 404, 'NoSuchKey');
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    });
    const g = getter(port);
    await expect(g.getBody({ key: 'missing' })).rejects.toMatchObject({ name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
    expect((await g.getBody({ key: 'k' })).body.toString()).toBe('ok');
  });

  it('reads a chunked error answer that arrives in pieces', async () => {
    const port = await server.start((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/xml' }); // no Content-Length: chunked
      res.write('<?xml version="1.0"?><Error><Code>AccessDenied</Code>');
      setTimeout(() => res.end('<Message>no</Message></Error>'), 30);
    });
    await expect(getter(port, { socketTimeoutMs: 2_000 }).getBody({ key: 'k' })).rejects.toMatchObject({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
  });

  it('retries throttling as get() does', async () => {
    const port = await server.start((_req, res, n) => {
      if (n === 1) return xmlError(res, 503, 'SlowDown');
      res.writeHead(200, { 'content-length': '3' });
      res.end('yes');
    });
    expect((await getter(port).getBody({ key: 'k' })).body.toString()).toBe('yes');
    expect(server.requests).toHaveLength(2);
  });

  it('reads a chunked 2xx answer through node:http instead', async () => {
    const port = await server.start((_req, res) => {
      res.writeHead(200, { etag: '"c"' }); // no Content-Length: chunked
      res.write('chunk-1 ');
      res.end('chunk-2');
    });
    const answer = await getter(port).getBody({ key: 'k' });
    expect(answer.body.toString()).toBe('chunk-1 chunk-2');
    expect(answer.header('etag')).toBe('"c"');
  });

  it('resends at once on a new connection when the store closed the kept-alive one', async () => {
    const port = await server.start((req, res) => {
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
      // The server drops the connection right after answering, as an idle timeout does.
      setTimeout(() => req.socket.destroy(), 20);
    });
    const g = getter(port, { maxAttempts: 1 });
    expect((await g.getBody({ key: 'a' })).body.toString()).toBe('ok');
    await new Promise((r) => setTimeout(r, 100));
    expect((await g.getBody({ key: 'b' })).body.toString()).toBe('ok');
  });

  it('fails a silent socket after the socket timeout, as a dropped connection, and stops at an abort', async () => {
    const port = await server.start(() => {}); // never answers
    const err = await getter(port, { socketTimeoutMs: 150, maxAttempts: 2 }).getBody({ key: 'k' }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ name: 'TimeoutError', code: 'ETIMEDOUT' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(getter(port).getBody({ key: 'k', signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('PayloadHasher', () => {
  it('hashes shared and ordinary bodies on worker threads, as node:crypto does', async () => {
    const hasher = new PayloadHasher();
    try {
      const shared = Buffer.from(new SharedArrayBuffer(3 * 1024 * 1024 + 5));
      shared.fill(0x5a);
      const plain = Buffer.from('hello, store');
      const [a, b] = await Promise.all([hasher.hash(shared), hasher.hash(plain)]);
      expect(a).toBe(createHash('sha256').update(shared).digest('hex'));
      expect(b).toBe(createHash('sha256').update(plain).digest('hex'));
    } finally {
      hasher.close();
    }
  });
});
