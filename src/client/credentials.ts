import { readFileSync } from 'node:fs';
import { TesseraConfigError } from './errors.js';

export interface SdkCredentials {
  clientId: string;
  clientSecret: string;
  /** Where they came from: `options`, `key_file`, or `environment`. */
  source: 'options' | 'key_file' | 'environment';
  /** The issuer named in the key file, if any. */
  issuer?: string;
}

export interface CredentialOptions {
  clientId?: string;
  clientSecret?: string;
  /** Path of a JSON key file `{ "client_id", "client_secret" }` (default: `TESSERA_SDK_KEY`). */
  keyFile?: string;
  /** The environment read (default `process.env`). */
  env?: Record<string, string | undefined>;
}

/**
 * Resolves SDK-key credentials like the platform SDKs do, first match wins:
 * 1. explicit `clientId` + `clientSecret`;
 * 2. a JSON key file: `keyFile`, else the path in `TESSERA_SDK_KEY` (`{client_id, client_secret[, issuer]}`);
 * 3. `TESSERA_CLIENT_ID` + `TESSERA_CLIENT_SECRET`.
 */
export function resolveCredentials(o: CredentialOptions = {}): SdkCredentials {
  const env = o.env ?? process.env;
  if (o.clientId !== undefined || o.clientSecret !== undefined) {
    if (!o.clientId || !o.clientSecret) throw new TesseraConfigError('pass both clientId and clientSecret');
    return { clientId: o.clientId, clientSecret: o.clientSecret, source: 'options' };
  }
  const keyFile = o.keyFile ?? (env.TESSERA_SDK_KEY || undefined);
  if (keyFile !== undefined) return readKeyFile(keyFile);
  const id = env.TESSERA_CLIENT_ID;
  const secret = env.TESSERA_CLIENT_SECRET;
  if (id && secret) return { clientId: id, clientSecret: secret, source: 'environment' };
  if (id || secret) throw new TesseraConfigError('set both TESSERA_CLIENT_ID and TESSERA_CLIENT_SECRET');
  throw new TesseraConfigError(
    'no Tessera credentials: pass clientId and clientSecret, set TESSERA_SDK_KEY to a key file, ' + 'or set TESSERA_CLIENT_ID and TESSERA_CLIENT_SECRET',
  );
}

function readKeyFile(path: string): SdkCredentials {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TesseraConfigError(`cannot read the SDK key file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new TesseraConfigError(`the SDK key file ${path} is not JSON`);
  }
  const k = parsed as { client_id?: unknown; client_secret?: unknown; issuer?: unknown };
  if (typeof k?.client_id !== 'string' || !k.client_id || typeof k.client_secret !== 'string' || !k.client_secret) {
    throw new TesseraConfigError(`the SDK key file ${path} must hold {"client_id": "...", "client_secret": "..."}`);
  }
  return {
    clientId: k.client_id,
    clientSecret: k.client_secret,
    source: 'key_file',
    ...(typeof k.issuer === 'string' ? { issuer: k.issuer } : {}),
  };
}
