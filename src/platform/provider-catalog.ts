import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';

/**
 * One quantum backend provider whose credentials users and organizations may store.
 * `schema` is the JSON Schema (draft-07 subset Ajv compiles in strict mode) of one credential.
 */
export interface ProviderSpec {
  /** Stable name used in URLs: `^[a-z][a-z0-9_]{1,62}$`. */
  readonly name: string;
  readonly title: string;
  readonly schema: Readonly<Record<string, unknown>>;
  /** Fields holding secrets: write-only, redacted from logs. */
  readonly secretFields: readonly string[];
  /** Field whose last 4 characters identify the credential in listings (only for long values). */
  readonly hintField: string | null;
}

/** Longest value any credential field may hold. */
const MAX_FIELD = 4096;
const str = (maxLength = MAX_FIELD) => ({ type: 'string', minLength: 1, maxLength });
const httpsUrl = { type: 'string', minLength: 9, maxLength: 2048, pattern: '^https://[^\\s]+$' };

function objectSchema(required: string[], properties: Record<string, unknown>): Record<string, unknown> {
  return { type: 'object', required, properties, additionalProperties: false };
}

/** The providers Tessera knows out of the box (TESSERA_PROVIDERS picks among them, a file adds others). */
export const DEFAULT_PROVIDERS: readonly ProviderSpec[] = [
  {
    name: 'ibm_quantum',
    title: 'IBM Quantum',
    schema: objectSchema(['token'], {
      token: str(),
      instance: str(512),
      channel: { type: 'string', enum: ['ibm_quantum', 'ibm_cloud', 'ibm_quantum_platform', 'local'] },
      url: httpsUrl,
    }),
    secretFields: ['token'],
    hintField: 'token',
  },
  {
    name: 'ionq',
    title: 'IonQ',
    schema: objectSchema(['api_key'], { api_key: str() }),
    secretFields: ['api_key'],
    hintField: 'api_key',
  },
  {
    name: 'aws_braket',
    title: 'Amazon Braket',
    schema: objectSchema(['access_key_id', 'secret_access_key', 'region'], {
      access_key_id: { type: 'string', minLength: 16, maxLength: 128, pattern: '^[A-Z0-9]+$' },
      secret_access_key: str(),
      region: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$' },
      session_token: str(),
    }),
    secretFields: ['secret_access_key', 'session_token'],
    hintField: 'access_key_id',
  },
  {
    name: 'azure_quantum',
    title: 'Azure Quantum',
    schema: objectSchema(['tenant_id', 'client_id', 'client_secret'], {
      tenant_id: str(128),
      client_id: str(128),
      client_secret: str(),
      subscription_id: str(128),
      resource_group: str(128),
      workspace: str(128),
      location: str(64),
    }),
    secretFields: ['client_secret'],
    hintField: 'client_id',
  },
  {
    name: 'iqm',
    title: 'IQM Resonance',
    schema: objectSchema(['token'], { token: str(), url: httpsUrl }),
    secretFields: ['token'],
    hintField: 'token',
  },
];

const NAME = /^[a-z][a-z0-9_]{1,62}$/;

/** A fresh Ajv for credential schemas: strict (unknown keywords are configuration errors), every error reported. */
export function credentialAjv(): Ajv {
  return new Ajv({ allErrors: true, strict: true, coerceTypes: false, useDefaults: false, removeAdditional: false });
}

/** Checks one provider definition; throws Error naming what is wrong. */
function checkSpec(raw: unknown, where: string, ajv: Ajv): ProviderSpec {
  if (!raw || typeof raw !== 'object') throw new Error(`${where} must be an object`);
  const p = raw as Record<string, unknown>;
  if (typeof p.name !== 'string' || !NAME.test(p.name)) throw new Error(`${where}.name must match ${NAME.source}`);
  const schema = p.schema as Record<string, unknown> | undefined;
  if (!schema || typeof schema !== 'object' || schema.type !== 'object' || typeof schema.properties !== 'object') {
    throw new Error(`${where}.schema must be a JSON Schema with type "object" and properties`);
  }
  if (schema.additionalProperties !== false) throw new Error(`${where}.schema must set additionalProperties: false`);
  try {
    ajv.compile(schema);
  } catch (err) {
    throw new Error(`${where}.schema does not compile: ${(err as Error).message}`);
  }
  const props = Object.keys(schema.properties as object);
  const secretFields = p.secretFields ?? p.secret_fields;
  if (!Array.isArray(secretFields) || secretFields.length === 0 || !secretFields.every((f) => typeof f === 'string' && props.includes(f))) {
    throw new Error(`${where}.secretFields must list at least one of its schema properties`);
  }
  const hintField = p.hintField ?? p.hint_field ?? null;
  if (hintField !== null && (typeof hintField !== 'string' || !props.includes(hintField))) {
    throw new Error(`${where}.hintField must be one of its schema properties or null`);
  }
  return Object.freeze({
    name: p.name,
    title: typeof p.title === 'string' && p.title.trim() ? p.title.trim() : p.name,
    schema: Object.freeze(schema),
    secretFields: Object.freeze([...(secretFields as string[])]),
    hintField: hintField as string | null,
  });
}

/**
 * The configured providers:
 * - `TESSERA_PROVIDERS_FILE`: a JSON file `{ "providers": [ { name, title, schema, secretFields, hintField } ] }`
 *   (or the array alone); a bare name with no schema (`{ "name": "ionq" }` or `"ionq"`) takes the built-in definition.
 * - else `TESSERA_PROVIDERS`: comma-separated names among the built-in ones;
 * - else every built-in provider.
 * Throws Error (the caller names the variable) when anything is wrong.
 */
export function providersFromEnv(env: Record<string, string | undefined>): ProviderSpec[] {
  const ajv = credentialAjv();
  const builtin = new Map(DEFAULT_PROVIDERS.map((p) => [p.name, p]));
  const file = env.TESSERA_PROVIDERS_FILE?.trim();
  let list: ProviderSpec[];
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`TESSERA_PROVIDERS_FILE ${file} cannot be read as JSON: ${(err as Error).message}`);
    }
    const items = Array.isArray(parsed) ? parsed : (parsed as { providers?: unknown })?.providers;
    if (!Array.isArray(items)) throw new Error(`TESSERA_PROVIDERS_FILE ${file} must hold an array or { "providers": [...] }`);
    list = items.map((item, i) => {
      const name = typeof item === 'string' ? item : (item as { name?: unknown })?.name;
      const hasSchema = typeof item === 'object' && item !== null && 'schema' in item;
      if (!hasSchema) {
        const known = typeof name === 'string' ? builtin.get(name) : undefined;
        if (!known) throw new Error(`TESSERA_PROVIDERS_FILE providers[${i}] is not a built-in provider and has no schema`);
        return known;
      }
      return checkSpec(item, `TESSERA_PROVIDERS_FILE providers[${i}]`, ajv);
    });
  } else if (env.TESSERA_PROVIDERS?.trim()) {
    list = env.TESSERA_PROVIDERS.split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((name) => {
        const known = builtin.get(name);
        if (!known) {
          throw new Error(
            `TESSERA_PROVIDERS names unknown provider "${name}" (built in: ${[...builtin.keys()].join(', ')}; define others with TESSERA_PROVIDERS_FILE)`,
          );
        }
        return known;
      });
  } else {
    list = [...DEFAULT_PROVIDERS];
  }
  const seen = new Set<string>();
  for (const p of list) {
    if (seen.has(p.name)) throw new Error(`provider ${p.name} is configured twice`);
    seen.add(p.name);
  }
  return list;
}
