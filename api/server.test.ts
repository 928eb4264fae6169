import { describe, expect, it } from 'vitest';
import { silentLogger } from '../telemetry/index.js';
import { buildApi } from './server.js';
import type { DaemonServices } from './services.js';

/** Only what building the routes touches; no request below reaches a service. */
const services = { config: { secrets: {} }, healthy: () => true } as unknown as DaemonServices;

describe('the admin API (buildApi)', () => {
  it("validates a route's fastify schema with fastify's own compilers, loaded when a route first needs them", async () => {
    const app = buildApi({ logger: silentLogger(), services });
    app.post('/echo', { schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } } }, async (request) => request.body);
    app.get('/shaped', { schema: { response: { 200: { type: 'object', properties: { shown: { type: 'number' } } } } } }, async () => ({ shown: 1, dropped: 2 }));
    try {
      expect((await app.inject({ method: 'GET', url: '/shaped' })).json()).toEqual({ shown: 1 });
      const bad = await app.inject({ method: 'POST', url: '/echo', payload: { other: 1 } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ code: 'API_BAD_REQUEST', message: expect.stringContaining('name') });
      const good = await app.inject({ method: 'POST', url: '/echo', payload: { name: 'x' } });
      expect(good.statusCode).toBe(200);
      expect(good.json()).toEqual({ name: 'x' });
    } finally {
      await app.close();
    }
  });
});
