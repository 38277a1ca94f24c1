// Tessera's client SDK: `import { ClientCredentials, createVerifier } from 'tessera/client'`.
// Depends on jose and Node built-ins only (the Fastify plugin is 'tessera/client/fastify').
export {
  accountsPath,
  defaultAccountName,
  deleteAccount,
  listAccounts,
  loadAccount,
  saveAccount,
  type Account,
  type AccountFileOptions,
  type SaveAccountOptions,
} from './accounts.js';
export { resolveBranding, type Branding } from './branding.js';
export { ClientCredentials, ClientCredentialsAuth, type AccessToken, type ClientCredentialsOptions } from './client-credentials.js';
export { resolveCredentials, type CredentialOptions, type SdkCredentials } from './credentials.js';
export {
  PERMANENT_OAUTH_ERRORS,
  TesseraConfigError,
  TesseraError,
  TesseraNetworkError,
  TesseraOAuthError,
  TesseraVerifyError,
  type VerifyFailureReason,
} from './errors.js';
export { type ClientLogger, type FetchLike, type RetryOptions, type ServerMetadata, type TransportOptions } from './http.js';
export { DpopKey, dpopFetch } from './dpop.js';
export { JWT_BEARER_ASSERTION, PrivateKeyJwt } from './private-key-jwt.js';
export { RevocationStream, type RevocationStreamOptions, type StreamVerdict } from './revocation-stream.js';
export { TokenLogin, type Session, type TokenLoginOptions } from './token-login.js';
export {
  createVerifier,
  extractToken,
  redisProofReplayStore,
  TESSERA_ALGORITHMS,
  type ProofReplayStore,
  type RedisSetNx,
  type RemoteCheckOptions,
  type VerifiedToken,
  type VerifierOptions,
  type Verifier,
  type VerifyCallOptions,
} from './verifier.js';
