// Checks every response an app sends against the operation openapi.yaml documents for it: the status
// is documented, the content type is one the operation declares, and the body matches the schema.
// Test harnesses pass `validator.inspect` to buildApp({ inspectResponse }) and call `assertClean()`
// at teardown. Responses that are no operation (404/405 on an unknown path, hidden routes such as
// test probes and /docs/ui assets) are not checked: the contract test checks the route table.
import { readFileSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

interface ResponseSpec {
  content?: Record<string, { schema?: unknown }>;
}
interface Operation {
  responses: Record<string, ResponseSpec>;
}

export interface Violation {
  method: string;
  path: string;
  status: number;
  problem: string;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
let loaded: Map<string, Operation> | null = null;

/** Operations of openapi.yaml keyed `METHOD /fastify/:pattern`. */
function operations(): Map<string, Operation> {
  if (loaded) return loaded;
  const spec = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as {
    paths: Record<string, Record<string, Operation>>;
  };
  loaded = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    const pattern = path.replace(/\{(\w+)\}/g, ':$1');
    for (const m of METHODS) if (item[m]) loaded.set(`${m.toUpperCase()} ${pattern}`, item[m]);
  }
  return loaded;
}

const ajv = addFormats(new Ajv2020({ strict: false, allErrors: false, validateFormats: true }));
const compiled = new Map<unknown, ValidateFunction>();

function validatorFor(schema: unknown): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema as object);
    compiled.set(schema, v);
  }
  return v;
}

function bodyText(payload: unknown): string | null {
  if (payload === null || payload === undefined) return '';
  if (typeof payload === 'string') return payload;
  if (Buffer.isBuffer(payload)) return payload.toString('utf8');
  return null; // a stream: not read here
}

export class ContractValidator {
  readonly violations: Violation[] = [];
  /** Responses checked (a test can tell the validator ran). */
  checked = 0;

  /** The check itself (an onSend hook via buildApp's `inspectResponse`). */
  readonly inspect = (request: FastifyRequest, reply: FastifyReply, payload: unknown): void => {
    const route = request.routeOptions.url;
    if (route === undefined) return;
    const method = request.method === 'HEAD' ? 'GET' : request.method;
    const op = operations().get(`${method} ${route}`);
    if (!op) return;
    this.checked++;
    const status = reply.statusCode;
    const problem = this.problemOf(op, status, request.method, reply, payload);
    if (problem) this.violations.push({ method: request.method, path: route, status, problem });
  };

  private problemOf(op: Operation, status: number, method: string, reply: FastifyReply, payload: unknown): string | null {
    const spec = op.responses[String(status)] ?? op.responses[`${String(status)[0]}XX`] ?? op.responses.default;
    if (!spec) return `status ${status} is not documented (documented: ${Object.keys(op.responses).join(', ')})`;
    const text = bodyText(payload);
    const contentType = String(reply.getHeader('content-type') ?? '');
    const media = contentType.split(';')[0]!.trim().toLowerCase();
    const declared = Object.keys(spec.content ?? {});
    if (declared.length === 0) {
      if (text !== null && text !== '') return `a body (${media || 'no content type'}) where none is documented`;
      return null;
    }
    if (method === 'HEAD' || status === 304) return null;
    if (!declared.includes(media)) return `content type ${media || '(none)'} is not documented (documented: ${declared.join(', ')})`;
    const schema = spec.content![media]!.schema;
    if (schema === undefined || text === null || !/json/.test(media)) return null;
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return `the body is not JSON: ${text.slice(0, 80)}`;
    }
    const validate = validatorFor(schema);
    if (validate(body)) return null;
    const e = validate.errors?.[0];
    return `body${e?.instancePath ?? ''} ${e?.message ?? 'is invalid'}${e?.params ? ` ${JSON.stringify(e.params)}` : ''}: ${text.slice(0, 200)}`;
  }

  /** Throws one error listing every violation (method, path, status, problem), if there were any. */
  assertClean(): void {
    if (this.violations.length === 0) return;
    const lines = this.violations.map((v) => `  ${v.method} ${v.path} -> ${v.status}: ${v.problem}`);
    throw new Error(`responses that do not match openapi.yaml:\n${lines.join('\n')}`);
  }
}
