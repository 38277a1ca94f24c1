import { cascades } from './platform/cascades.js';
import { registerApiTokenCascades } from './api-tokens/api-tokens.cascades.js';
import { registerSessionCascades } from './sessions/sessions.cascades.js';
import { registerSdkKeyCascades } from './oauth/sdk-keys.cascades.js';

/**
 * Registers every feature's cascade handlers, in the order they run: API tokens, then sessions,
 * then SDK keys. Called by every composition root that changes credentials (the application and
 * the CLI); calling it again changes nothing.
 */
export function installCascades(): void {
  registerApiTokenCascades(cascades);
  registerSessionCascades(cascades);
  registerSdkKeyCascades(cascades);
}
