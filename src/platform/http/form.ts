import type { FastifyInstance } from 'fastify';
import { badRequest } from '../errors/api-error.js';

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
