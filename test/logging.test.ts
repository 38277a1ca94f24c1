import t from 'tap';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loggerOptions, redactUrl } from '../src/platform/log.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { log: pino(loggerOptions('info'), stream), lines };
}

t.test('secret-bearing headers and fields never reach a log line', async (t) => {
  const { log, lines } = capture();
  log.info(
    {
      req: { method: 'POST', url: '/oauth/token?client_secret=s3cr3t&x=1', headers: { authorization: 'Bearer AAA', 'x-access-token': 'BBB', cookie: 'c=CCC' } },
    },
    'r',
  );
  log.info({ input: { client_secret: 'DDD', apiToken: 'EEE', name: 'ok' } }, 'b');
  log.info({ body: { anything: 'III' } }, 'whole bodies are never logged');
  log.info({ client_secret: 'FFF', token: 'GGG', credential: { secret: 'HHH' } }, 'top');
  const all = lines.join('\n');
  for (const s of ['s3cr3t', 'AAA', 'BBB', 'CCC', 'DDD', 'EEE', 'FFF', 'GGG', 'HHH', 'III']) t.notMatch(all, s, `${s} redacted`);
  t.match(all, /\[redacted\]/);
  t.match(all, /"name":"ok"/, 'ordinary fields stay');
});

t.test('query strings lose the values of sensitive parameters only', async (t) => {
  t.equal(redactUrl('/oauth/token?client_secret=abc&grant_type=client_credentials'), '/oauth/token?client_secret=[redacted]&grant_type=client_credentials');
  t.equal(redactUrl('/x?access_token=abc'), '/x?access_token=[redacted]');
  t.equal(redactUrl('/healthz'), '/healthz');
});
