import t from 'tap';
import { harness, cliOnHarness } from './support/helper.js';
import { main } from '../src/cli.js';

t.test('tessera users suspend|activate --user ends sessions and tokens on running instances', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const apiToken = await h.apiToken(u);
  const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } })).json().id;
  t.equal((await h.inject({ method: 'GET', url: '/gateway/verify', headers: { 'x-access-token': session } })).statusCode, 200);

  cliOnHarness(t, h);
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const capture = async (argv: string[]) => {
    (process.stdout as { write: unknown }).write = (c: string) => (out.push(String(c)), true);
    try {
      return await main(argv);
    } finally {
      (process.stdout as { write: unknown }).write = write;
    }
  };

  t.equal(await capture(['users', 'suspend', '--user', u.email]), 0);
  t.match(JSON.parse(out.join('')), { id: u.id, status: 'suspended', api_tokens_revoked: 1, sessions_ended: 1 });
  const res = await h.inject({ method: 'GET', url: '/gateway/verify', headers: { 'x-access-token': session } });
  t.equal(res.statusCode, 401);
  t.match(res.headers['www-authenticate'], /error="invalid_token"/);

  out.length = 0;
  t.equal(await capture(['users', 'activate', '--user', u.id]), 0);
  t.match(JSON.parse(out.join('')), { id: u.id, status: 'active' });
  t.equal(await capture(['users', 'suspend']), 1, '--user is required');
});
