/**
 * How a platform brands the client when its own SDK embeds it: the environment-variable prefix
 * (`<PREFIX>_SDK_KEY`, `<PREFIX>_CLIENT_ID`, ...), a default issuer, the saved-accounts file. The Python
 * client (`clients/python`) takes the same options.
 */
export interface Branding {
  /** Default `TESSERA`. */
  envPrefix?: string;
  /** Issuer used when no option, key file, variable or account names one. */
  defaultIssuer?: string;
  /** Saved-accounts file, `~` expanded (default `~/.tessera/accounts.json`); `<PREFIX>_ACCOUNTS_FILE` overrides it. */
  accountsFile?: string;
  /** Name in messages (default `Tessera`). */
  product?: string;
}

export interface ResolvedBranding {
  envPrefix: string;
  defaultIssuer: string | undefined;
  accountsFile: string;
  product: string;
  /** `<PREFIX>_<name>` */
  v(name: string): string;
}

export function resolveBranding(b: Branding = {}): ResolvedBranding {
  const envPrefix = b.envPrefix ?? 'TESSERA';
  return {
    envPrefix,
    defaultIssuer: b.defaultIssuer,
    accountsFile: b.accountsFile ?? '~/.tessera/accounts.json',
    product: b.product ?? 'Tessera',
    v: (name) => `${envPrefix}_${name}`,
  };
}
