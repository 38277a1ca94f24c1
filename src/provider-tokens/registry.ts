import type { ErrorObject, ValidateFunction } from 'ajv';
import { credentialAjv, type ProviderSpec } from '../platform/provider-catalog.js';

export interface CredentialProblem {
  /** JSON pointer into the credential (`/region`), empty for the object itself. */
  field: string;
  message: string;
}

/** Shortest value of the hint field for which its last 4 characters are shown. */
export const HINT_MIN_LENGTH = 16;

/**
 * The configured providers with their compiled credential validators. Validation messages name
 * fields and rules, never the values sent (they may be secrets).
 */
export class ProviderRegistry {
  private readonly byName = new Map<string, { spec: ProviderSpec; validate: ValidateFunction }>();

  constructor(specs: readonly ProviderSpec[]) {
    const ajv = credentialAjv();
    for (const spec of specs) this.byName.set(spec.name, { spec, validate: ajv.compile(spec.schema) });
  }

  get names(): string[] {
    return [...this.byName.keys()];
  }

  get(name: string): ProviderSpec | undefined {
    return this.byName.get(name)?.spec;
  }

  /** Problems with a credential for `provider` (empty when it is valid). */
  validate(provider: string, credential: unknown): CredentialProblem[] {
    const entry = this.byName.get(provider);
    if (!entry) return [{ field: '', message: `unknown provider ${provider}` }];
    if (entry.validate(credential)) return [];
    return (entry.validate.errors ?? []).map(describe);
  }

  /**
   * `…abcd` for a long enough hint field; `null` when the field is absent or too short for four
   * characters to be a safe thing to show (a short secret would lose a large share of its entropy).
   */
  hint(provider: string, credential: Record<string, unknown>): string | null {
    const field = this.byName.get(provider)?.spec.hintField;
    if (!field) return null;
    const value = credential[field];
    if (typeof value !== 'string' || value.length < HINT_MIN_LENGTH) return null;
    return `…${value.slice(-4)}`;
  }
}

/** One Ajv error as field + message, without the offending value. */
function describe(e: ErrorObject): CredentialProblem {
  const field = e.instancePath;
  switch (e.keyword) {
    case 'required':
      return { field: `${field}/${String(e.params.missingProperty)}`, message: 'is required' };
    case 'additionalProperties':
      return { field: `${field}/${String(e.params.additionalProperty)}`, message: 'is not a field of this provider' };
    case 'type':
      return { field, message: `must be ${String(e.params.type)}` };
    case 'minLength':
      return { field, message: e.params.limit === 1 ? 'must not be empty' : `must be at least ${String(e.params.limit)} characters` };
    case 'maxLength':
      return { field, message: `must be at most ${String(e.params.limit)} characters` };
    case 'pattern':
      return { field, message: 'has the wrong format' };
    case 'enum':
      return { field, message: `must be one of ${(e.params.allowedValues as unknown[]).map(String).join(', ')}` };
    default:
      return { field, message: `fails the ${e.keyword} rule` };
  }
}
