// An SDK script: gets a token with its SDK key and calls a protected route (run `npm run build` first).
//   TESSERA_URL=http://localhost:8080 TESSERA_SDK_KEY=./key.json node examples/sdk-client.mjs http://127.0.0.1:3000/jobs
// Credentials: TESSERA_SDK_KEY (a JSON file {client_id, client_secret}) or TESSERA_CLIENT_ID/TESSERA_CLIENT_SECRET.
import { ClientCredentials, ClientCredentialsAuth, TesseraOAuthError } from 'tessera/client';

const credentials = new ClientCredentials({ scope: 'api' });
const auth = new ClientCredentialsAuth(credentials);
const url = process.argv[2] ?? `${credentials.issuer}/api/users/me`;

try {
  const res = await auth.fetch(url); // Authorization: Bearer <cached, auto-renewed token>
  console.log(res.status, await res.text());
  process.exitCode = res.ok ? 0 : 1;
} catch (err) {
  if (err instanceof TesseraOAuthError) console.error(`Tessera refused the SDK key: ${err.code}`);
  else console.error(err);
  process.exitCode = 1;
}
