import { chmodSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { resolveBranding, type Branding } from './branding.js';
import { TesseraConfigError } from './errors.js';

/**
 * Saved accounts, in the file the Python client uses too (`~/.tessera/accounts.json`, created 0600):
 * `{"version": 1, "default": "<name>", "accounts": {"<name>": {"issuer", "client_id", "client_secret",
 * "api_token", "organization_id", "secret_store": "file" | "keyring"}}}`. This client keeps secrets in
 * the file; accounts whose secrets the Python client put in the system keyring cannot be read here.
 * A file that other users can read is refused.
 */
export interface Account {
  name: string;
  issuer?: string;
  clientId?: string;
  clientSecret?: string;
  apiToken?: string;
  organizationId?: string;
  secretStore: 'file' | 'keyring';
  isDefault: boolean;
}

export interface AccountFileOptions {
  /** The accounts file (default: `<PREFIX>_ACCOUNTS_FILE`, else the branding's, else `~/.tessera/accounts.json`). */
  path?: string;
  branding?: Branding;
  env?: Record<string, string | undefined>;
}

export interface SaveAccountOptions {
  issuer?: string;
  clientId?: string;
  clientSecret?: string;
  apiToken?: string;
  organizationId?: string;
  /** Make it the default account (the first account saved is the default anyway). */
  setAsDefault?: boolean;
}

interface AccountEntry {
  issuer?: string;
  client_id?: string;
  client_secret?: string;
  api_token?: string;
  organization_id?: string;
  secret_store?: 'file' | 'keyring';
}

interface AccountFile {
  version: 1;
  default: string | null;
  accounts: Record<string, AccountEntry>;
}

const expand = (p: string, env: Record<string, string | undefined>) => (p === '~' || p.startsWith('~/') ? path.join(env.HOME || homedir(), p.slice(1)) : p);

/** The accounts file path for these options. */
export function accountsPath(o: AccountFileOptions = {}): string {
  const env = o.env ?? process.env;
  const b = resolveBranding(o.branding);
  return expand(o.path ?? (env[b.v('ACCOUNTS_FILE')] || b.accountsFile), env);
}

function readFile(file: string): AccountFile {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, default: null, accounts: {} };
    throw new TesseraConfigError(`cannot read the accounts file ${file}: ${(err as Error).message}`);
  }
  let text: string;
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new TesseraConfigError(
        `the accounts file ${file} can be read by other users (mode 0${mode.toString(8)}); it holds secrets: run \`chmod 600 ${file}\` and try again`,
      );
    }
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new TesseraConfigError(`the accounts file ${file} is not valid JSON (${(err as Error).message}): fix or delete it`);
  }
  const d = data as Partial<AccountFile> | null;
  if (!d || typeof d !== 'object' || (d.accounts !== undefined && (typeof d.accounts !== 'object' || d.accounts === null))) {
    throw new TesseraConfigError(`the accounts file ${file} must hold {"version": 1, "accounts": {...}}: fix or delete it`);
  }
  if ((d.version ?? 1) !== 1) throw new TesseraConfigError(`the accounts file ${file} has version ${String(d.version)}; this client reads version 1`);
  return { version: 1, default: d.default ?? null, accounts: d.accounts ?? {} };
}

function writeFile(file: string, data: AccountFile): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.accounts-${randomBytes(6).toString('hex')}`);
  try {
    writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw err;
  }
}

function toAccount(name: string, e: AccountEntry, data: AccountFile): Account {
  return {
    name,
    ...(e.issuer !== undefined && { issuer: e.issuer }),
    ...(e.client_id !== undefined && { clientId: e.client_id }),
    ...(e.client_secret !== undefined && { clientSecret: e.client_secret }),
    ...(e.api_token !== undefined && { apiToken: e.api_token }),
    ...(e.organization_id !== undefined && { organizationId: e.organization_id }),
    secretStore: e.secret_store === 'keyring' ? 'keyring' : 'file',
    isDefault: data.default === name,
  };
}

/** Saves an account (an SDK key and/or an API token, with its issuer); secrets go into the 0600 file. */
export function saveAccount(name: string, a: SaveAccountOptions, o: AccountFileOptions = {}): Account {
  if (!name.trim()) throw new TesseraConfigError('an account needs a name');
  if ((a.clientId === undefined) !== (a.clientSecret === undefined))
    throw new TesseraConfigError('save both clientId and clientSecret (an SDK key), or neither');
  if (a.clientId === undefined && a.apiToken === undefined)
    throw new TesseraConfigError('an account needs an SDK key (clientId and clientSecret) or an apiToken');
  const file = accountsPath(o);
  const data = readFile(file);
  const entry: AccountEntry = {
    ...(a.issuer !== undefined && { issuer: a.issuer }),
    ...(a.clientId !== undefined && { client_id: a.clientId }),
    ...(a.organizationId !== undefined && { organization_id: a.organizationId }),
    ...(a.clientSecret !== undefined && { client_secret: a.clientSecret }),
    ...(a.apiToken !== undefined && { api_token: a.apiToken }),
    secret_store: 'file',
  };
  data.accounts[name] = entry;
  if (a.setAsDefault || !data.default) data.default = name;
  writeFile(file, data);
  return toAccount(name, entry, data);
}

/** The named account, else the default one. */
export function loadAccount(name?: string, o: AccountFileOptions = {}): Account {
  const file = accountsPath(o);
  const data = readFile(file);
  const chosen = name ?? data.default;
  if (!chosen) throw new TesseraConfigError(`no default account in ${file}: save one with saveAccount(name, { ..., setAsDefault: true })`);
  const entry = data.accounts[chosen];
  if (!entry || typeof entry !== 'object') {
    const known = Object.keys(data.accounts).sort().join(', ') || 'none';
    throw new TesseraConfigError(`no account named '${chosen}' in ${file} (saved accounts: ${known}); save it with saveAccount('${chosen}', {...})`);
  }
  if (entry.secret_store === 'keyring') {
    throw new TesseraConfigError(
      `account '${chosen}' in ${file} keeps its secrets in the system keyring, which this client cannot read; ` +
        'save it again with the secret in the file (tessera-client accounts save --no-keyring)',
    );
  }
  return toAccount(chosen, entry, data);
}

/** The default account's name, or null. */
export function defaultAccountName(o: AccountFileOptions = {}): string | null {
  return readFile(accountsPath(o)).default || null;
}

/** Every saved account (keyring-held secrets are not read). */
export function listAccounts(o: AccountFileOptions = {}): Account[] {
  const data = readFile(accountsPath(o));
  return Object.entries(data.accounts).map(([n, e]) => toAccount(n, e, data));
}

export function deleteAccount(name: string, o: AccountFileOptions = {}): void {
  const file = accountsPath(o);
  const data = readFile(file);
  if (!data.accounts[name]) {
    const known = Object.keys(data.accounts).sort().join(', ') || 'none';
    throw new TesseraConfigError(`no account named '${name}' in ${file} (saved accounts: ${known})`);
  }
  delete data.accounts[name];
  if (data.default === name) data.default = null;
  writeFile(file, data);
}
