import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type AuthenticatorTransport,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { peopleDb, peopleTrx } from './db.js';

/** Where passkeys are valid: the issuer's origin and host name. */
export interface RelyingParty {
  name: string;
  id: string;
  origin: string;
}

export function relyingPartyOf(issuer: string): RelyingParty {
  const u = new URL(issuer);
  return { name: 'Tessera', id: u.hostname, origin: u.origin };
}

export const MAX_PASSKEYS_PER_USER = 10;

function uuidBytes(id: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(id.replace(/-/g, ''), 'hex'));
}

/** Options for creating a passkey for a user (discoverable, user verification required), excluding those they hold. */
export async function registrationOptions(
  db: Kysely<Database>,
  rp: RelyingParty,
  user: { id: string; email: string; name: string },
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const existing = await peopleDb(db).selectFrom('passkeys').select(['credential_id', 'transports']).where('user_id', '=', user.id).execute();
  return generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: user.email,
    userDisplayName: user.name,
    userID: uuidBytes(user.id),
    attestationType: 'none',
    excludeCredentials: existing.map((c) => ({ id: c.credential_id, transports: c.transports as AuthenticatorTransport[] })),
    authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
  });
}

/**
 * Verifies a new passkey against the challenge this server issued and stores it in the caller's
 * transaction. False when the response does not verify, or the user holds the most passkeys allowed.
 */
export async function addPasskey(
  trx: Transaction<Database>,
  rp: RelyingParty,
  actor: Actor,
  input: { userId: string; response: RegistrationResponseJSON; expectedChallenge: string; name: string },
): Promise<{ ok: true; id: string } | { ok: false; reason: string }> {
  let verified;
  try {
    verified = await verifyRegistrationResponse({
      response: input.response,
      expectedChallenge: input.expectedChallenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: true,
    });
  } catch {
    return { ok: false, reason: 'The passkey could not be verified. Try again.' };
  }
  if (!verified.verified) return { ok: false, reason: 'The passkey could not be verified. Try again.' };
  const p = peopleTrx(trx);
  await trx.selectFrom('users').select('id').where('id', '=', input.userId).forUpdate().executeTakeFirst();
  const count = await p
    .selectFrom('passkeys')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('user_id', '=', input.userId)
    .executeTakeFirstOrThrow();
  if (Number(count.n) >= MAX_PASSKEYS_PER_USER) return { ok: false, reason: `You hold ${MAX_PASSKEYS_PER_USER} passkeys, the most allowed: remove one first.` };
  const c = verified.registrationInfo.credential;
  const row = await p
    .insertInto('passkeys')
    .values({
      user_id: input.userId,
      credential_id: c.id,
      public_key: Buffer.from(c.publicKey),
      counter: c.counter,
      transports: c.transports ?? [],
      name: input.name,
    })
    .onConflict((oc) => oc.column('credential_id').doNothing())
    .returning('id')
    .executeTakeFirst();
  if (!row) return { ok: false, reason: 'This passkey is already registered.' };
  await recordAudit(trx, actor, { action: 'passkey.create', targetType: 'passkey', targetId: row.id, details: { name: input.name } });
  return { ok: true, id: row.id };
}

/** Options for signing in with any passkey of this site (the browser offers the ones it holds). */
export function authenticationOptions(rp: RelyingParty): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return generateAuthenticationOptions({ rpID: rp.id, userVerification: 'required', allowCredentials: [] });
}

/**
 * The user a passkey assertion proves, after checking it against the stored public key, the
 * challenge this server issued, the origin, user verification and the signature counter. Null
 * when anything fails (one answer for every cause).
 */
export async function verifyPasskeySignIn(
  db: Kysely<Database>,
  rp: RelyingParty,
  input: { response: AuthenticationResponseJSON; expectedChallenge: string; now: Date },
): Promise<{ userId: string; passkeyId: string } | null> {
  const p = peopleDb(db);
  if (typeof input.response?.id !== 'string' || input.response.id.length > 1024) return null;
  const row = await p.selectFrom('passkeys').selectAll().where('credential_id', '=', input.response.id).executeTakeFirst();
  if (!row) return null;
  let result;
  try {
    result = await verifyAuthenticationResponse({
      response: input.response,
      expectedChallenge: input.expectedChallenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: true,
      credential: {
        id: row.credential_id,
        publicKey: new Uint8Array(row.public_key),
        counter: Number(row.counter),
        transports: row.transports as AuthenticatorTransport[],
      },
    });
  } catch {
    return null;
  }
  if (!result.verified) return null;
  await p.updateTable('passkeys').set({ counter: result.authenticationInfo.newCounter, last_used_at: input.now }).where('id', '=', row.id).execute();
  return { userId: row.user_id, passkeyId: row.id };
}

export async function listPasskeys(db: Kysely<Database>, userId: string) {
  return peopleDb(db).selectFrom('passkeys').select(['id', 'name', 'created_at', 'last_used_at']).where('user_id', '=', userId).orderBy('created_at').execute();
}

export async function renamePasskey(db: Kysely<Database>, actor: Actor, userId: string, id: string, name: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const r = await peopleTrx(trx).updateTable('passkeys').set({ name }).where('id', '=', id).where('user_id', '=', userId).returning('id').executeTakeFirst();
    if (r) await recordAudit(trx, actor, { action: 'passkey.rename', targetType: 'passkey', targetId: id, details: { name } });
    return !!r;
  });
}

export async function removePasskey(db: Kysely<Database>, actor: Actor, userId: string, id: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const r = await peopleTrx(trx).deleteFrom('passkeys').where('id', '=', id).where('user_id', '=', userId).returning('id').executeTakeFirst();
    if (r) await recordAudit(trx, actor, { action: 'passkey.delete', targetType: 'passkey', targetId: id });
    return !!r;
  });
}
