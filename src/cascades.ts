import { CascadeRegistry } from './platform/cascades.js';
import { registerApiTokenCascades } from './api-tokens/api-tokens.cascades.js';
import { registerSessionCascades } from './sessions/sessions.cascades.js';
import { registerSdkKeyCascades } from './oauth/sdk-keys.cascades.js';

/**
 * The credential cascades of every feature, in the order they run: API tokens, then sessions,
 * then SDK keys. Each composition root that changes credentials (the application, the CLI) builds one.
 */
export function credentialCascades(): CascadeRegistry {
  const registry = new CascadeRegistry();
  registerApiTokenCascades(registry);
  registerSessionCascades(registry);
  registerSdkKeyCascades(registry);
  return registry;
}
