import t from 'tap';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ContractValidator } from './support/contract-validator.js';
import { harness, bearer } from './support/helper.js';

/** The parts of a request and reply the validator reads. */
function fake(method: string, url: string | undefined, status: number, contentType: string | undefined) {
  const request = { method, routeOptions: { url } } as unknown as FastifyRequest;
  const reply = { statusCode: status, getHeader: (n: string) => (n === 'content-type' ? contentType : undefined) } as unknown as FastifyReply;
  return { request, reply };
}

const JSON_TYPE = 'application/json; charset=utf-8';

t.test('the response validator catches an undocumented status, a wrong content type and a body off the schema', async (t) => {
  const v = new ContractValidator();
  const check = (method: string, url: string | undefined, status: number, type: string | undefined, body: unknown) => {
    const { request, reply } = fake(method, url, status, type);
    v.inspect(request, reply, body);
  };
  check('GET', '/api/sdk-keys', 418, JSON_TYPE, '{"error":"teapot","message":"x"}');
  check('GET', '/api/sdk-keys', 401, 'text/html', '<html>');
  check('GET', '/api/sdk-keys', 401, JSON_TYPE, '{"error":"invalid_token"}');
  check('POST', '/oauth/token', 400, JSON_TYPE, '{"error":"invalid_request","message":"not RFC 6749"}');
  check('DELETE', '/api/sdk-keys/:clientId', 204, JSON_TYPE, '{"deleted":true}');
  t.equal(v.violations.length, 5);
  t.match(v.violations[0], { method: 'GET', path: '/api/sdk-keys', status: 418, problem: /status 418 is not documented/ });
  t.match(v.violations[1]!.problem, /content type text\/html is not documented/);
  t.match(v.violations[2]!.problem, /must have required property 'message'/);
  t.match(v.violations[3]!.problem, /must NOT have additional properties/);
  t.match(v.violations[4]!.problem, /a body .* where none is documented/);
  t.throws(() => v.assertClean(), /GET \/api\/sdk-keys -> 418: status 418 is not documented/, 'one failure listing each violation');
});

t.test('responses that are no operation are not checked: unknown paths (404/405) and hidden routes', async (t) => {
  const v = new ContractValidator();
  for (const [method, url] of [
    ['GET', undefined],
    ['GET', '/docs/ui/static/index.html'],
    ['POST', '/healthz'],
  ] as const) {
    const { request, reply } = fake(method, url, 404, JSON_TYPE);
    v.inspect(request, reply, '{}');
  }
  t.equal(v.checked, 0);
  t.same(v.violations, []);
  t.doesNotThrow(() => v.assertClean());
});

t.test('the harness checks every response of its apps', async (t) => {
  const h = await harness(t);
  const token = await h.apiToken(await h.user());
  await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(token) });
  await h.inject({ method: 'GET', url: '/api/users/me' });
  await h.inject({ method: 'GET', url: '/no/such/path' });
  t.equal(h.validator.checked, 2, 'both operation responses checked, the unknown path skipped');
  t.same(h.validator.violations, []);
});
