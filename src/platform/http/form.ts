import type { FastifyInstance, FastifyReply, FastifyRequest, preValidationHookHandler } from 'fastify';
import { badRequest } from '../errors/api-error.js';
import { invalidRequest, invalidTarget } from '../errors/oauth-error.js';

/** Largest OAuth request body accepted (form parameters only). */
export const OAUTH_BODY_LIMIT = 16 * 1024;

/** A form body after {@link formOnly}: each parameter once, empty ones dropped. */
export type FormBody = Record<string, string | undefined>;

export type ParsedForm = Record<string, string | string[]>;

/**
 * Strict application/x-www-form-urlencoded (WHATWG URL §5.1, RFC 6749 Appendix B): `+` is a space,
 * every `%` must start a valid escape and the result must be valid UTF-8. Lenient parsers keep a
 * broken escape as literal text, so `%zz` or `%E0%A4` would reach credential checks as something
 * the client never meant; here they are a 400. A name sent twice becomes an array (the OAuth
 * routes refuse those). The result has no prototype: `__proto__` or `constructor` are plain names.
 */
export function parseForm(input: string): ParsedForm {
  const out = Object.create(null) as ParsedForm;
  if (input === '') return out;
  for (const piece of input.split('&')) {
    if (piece === '') continue;
    const eq = piece.indexOf('=');
    const name = decodeComponent(eq < 0 ? piece : piece.slice(0, eq));
    const value = eq < 0 ? '' : decodeComponent(piece.slice(eq + 1));
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}

function decodeComponent(s: string): string {
  const plain = s.replace(/\+/g, ' ');
  if (!plain.includes('%')) return plain;
  try {
    return decodeURIComponent(plain);
  } catch {
    throw badRequest('malformed form body: broken percent-encoding or invalid UTF-8');
  }
}

/** Registers the strict form parser in `app`'s context: register it only where routes read forms (the OAuth endpoints). */
export function registerFormParser(app: FastifyInstance, bodyLimit: number): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    try {
      done(null, parseForm(body as string));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}

/**
 * Before validation, on every OAuth endpoint: parameters only in an
 * application/x-www-form-urlencoded body (never in the URL: RFC 6749 §2.3.1, §3.2), each at most
 * once (§3.1: "Request and response parameters MUST NOT be included more than once").
 * A callback hook, not an async one: it does no I/O, and Fastify runs a callback hook without
 * the promise and microtask turn an async hook costs on every token request.
 */
export const formOnly: preValidationHookHandler = function formOnly(request, _reply, done) {
  try {
    keepFormParameters(request);
  } catch (err) {
    done(err as Error);
    return;
  }
  done();
};

function keepFormParameters(request: FastifyRequest): void {
  const q = request.url.indexOf('?');
  if (q >= 0 && request.url.length > q + 1) {
    throw invalidRequest('send parameters in the request body, never in the URL');
  }
  const type = request.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)) {
    throw invalidRequest('send parameters as application/x-www-form-urlencoded');
  }
  const body = (request.body ?? {}) as Record<string, unknown>;
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(body)) {
    // Appendix A: param-name = 1*name-char (ALPHA / DIGIT / "-" / "." / "_"). `scope[a]`, `a b`, NUL, ... are not names.
    if (!PARAM_NAME.test(name)) throw invalidRequest('malformed parameter name: letters, digits, "-", "." and "_" only');
    if (Array.isArray(value)) {
      // RFC 8707 §2 lets `resource` repeat, and lets a server that issues single-audience tokens refuse that.
      if (name === 'resource') throw invalidTarget('one resource per token request: Tessera issues tokens for a single audience');
      throw invalidRequest(`parameter ${name.slice(0, 64)} was sent more than once`);
    }
    // §3.1: "Parameters sent without a value MUST be treated as if they were omitted from the request."
    if (typeof value === 'string' && value !== '') kept[name] = value;
  }
  request.body = kept;
}

const PARAM_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** RFC 6749 §5.1: token responses (and everything else secret-bearing) must not be cached. */
export function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}
