import { readFileSync } from 'node:fs';
import { defaultAccountName, loadAccount } from './accounts.js';
import { resolveBranding, type Branding } from './branding.js';
import { TesseraConfigError } from './errors.js';

export interface SdkCredentials {
  clientId: string;
  clientSecret: string;
  /** Where they came from: `options`, `account`, `key_file`, or `environment`. */
  source: 'options' | 'account' | 'key_file' | 'environment';
  /** The issuer named in the key file or account, if any. */
  issuer?: string;
  /** The organization named in the key file or account, if any. */
  organizationId?: string;
  /** The saved account used, if any. */
  account?: string;
}

export interface CredentialOptions {
  clientId?: string;
  clientSecret?: string;
  /** Path of a JSON key file `{ "client_id", "client_secret" }` (default: `TESSERA_SDK_KEY`). */
  keyFile?: string;
  /** A saved account by name (see `saveAccount`). */
  account?: string;
  /** The saved-accounts file (default `TESSERA_ACCOUNTS_FILE`, else `~/.tessera/accounts.json`). */
  accountsFile?: string;
  /** Environment-variable prefix, default issuer and accounts file of a platform embedding the client. */
  branding?: Branding;
  /** The environment read (default `process.env`). */
  env?: Record<string, string | undefined>;
}

/**
 * Resolves SDK-key credentials like the platform SDKs do (and as the Python client does), first match wins:
 * 1. explicit options: `clientId` + `clientSecret`, or `account` (that saved account);
 * 2. a JSON key file: `keyFile`, else the path in `TESSERA_SDK_KEY` (`{client_id, client_secret[, issuer]}`);
 * 3. `TESSERA_CLIENT_ID` + `TESSERA_CLIENT_SECRET`;
 * 4. a saved account: `TESSERA_ACCOUNT`, else the default one.
 * (`TESSERA` is the branding's prefix.)
 */
export function resolveCredentials(o: CredentialOptions = {}): SdkCredentials {
  const env = o.env ?? process.env;
  const b = resolveBranding(o.branding);
  const fileOpts = { ...(o.accountsFile !== undefined && { path: o.accountsFile }), ...(o.branding && { branding: o.branding }), env };
  if (o.clientId !== undefined || o.clientSecret !== undefined) {
    if (!o.clientId || !o.clientSecret) throw new TesseraConfigError('pass both clientId and clientSecret');
    return { clientId: o.clientId, clientSecret: o.clientSecret, source: 'options' };
  }
  if (o.account !== undefined) return fromAccount(o.account, fileOpts);
  if (o.keyFile !== undefined) return readKeyFile(o.keyFile);
  const envKey = env[b.v('SDK_KEY')];
  if (envKey) return readKeyFile(envKey, b.v('SDK_KEY'));
  const id = env[b.v('CLIENT_ID')];
  const secret = env[b.v('CLIENT_SECRET')];
  if (id && secret) return { clientId: id, clientSecret: secret, source: 'environment' };
  if (id || secret) {
    throw new TesseraConfigError(`${id ? b.v('CLIENT_SECRET') : b.v('CLIENT_ID')} is not set: set both ${b.v('CLIENT_ID')} and ${b.v('CLIENT_SECRET')}`);
  }
  const named = env[b.v('ACCOUNT')];
  if (named) return fromAccount(named, fileOpts);
  if (defaultAccountName(fileOpts)) return fromAccount(undefined, fileOpts);
  throw new TesseraConfigError(
    `no ${b.product} credentials: pass clientId and clientSecret, set ${b.v('SDK_KEY')} to a key file, ` +
      `set ${b.v('CLIENT_ID')} and ${b.v('CLIENT_SECRET')}, or save an account (saveAccount, or \`tessera-client accounts save NAME --default ...\`)`,
  );
}

function fromAccount(name: string | undefined, fileOpts: Parameters<typeof loadAccount>[1]): SdkCredentials {
  const a = loadAccount(name, fileOpts);
  if (!a.clientId || !a.clientSecret) throw new TesseraConfigError(`account '${a.name}' holds no SDK key (client_id and client_secret)`);
  return {
    clientId: a.clientId,
    clientSecret: a.clientSecret,
    source: 'account',
    account: a.name,
    ...(a.issuer !== undefined && { issuer: a.issuer }),
    ...(a.organizationId !== undefined && { organizationId: a.organizationId }),
  };
}

function readKeyFile(path: string, variable?: string): SdkCredentials {
  const via = variable ? ` (from ${variable})` : '';
  const shape = '{"client_id": "s_...", "client_secret": "..."}';
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TesseraConfigError(`cannot read the SDK key file ${path}${via}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new TesseraConfigError(`the SDK key file ${path}${via} is not JSON; it must hold ${shape}`);
  }
  const k = parsed as { client_id?: unknown; client_secret?: unknown; issuer?: unknown; organization_id?: unknown };
  if (typeof k?.client_id !== 'string' || !k.client_id || typeof k.client_secret !== 'string' || !k.client_secret) {
    throw new TesseraConfigError(`the SDK key file ${path}${via} must hold ${shape}`);
  }
  return {
    clientId: k.client_id,
    clientSecret: k.client_secret,
    source: 'key_file',
    ...(typeof k.issuer === 'string' && k.issuer ? { issuer: k.issuer } : {}),
    ...(typeof k.organization_id === 'string' && k.organization_id ? { organizationId: k.organization_id } : {}),
  };
}
