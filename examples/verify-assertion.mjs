// Verifies portcullis' signed identity assertion (README, "Signed identity
// assertion") with jose: `npm install jose`, then in the app, for each request:
//
//   PORTCULLIS_URL=https://auth.example.com APP_AUDIENCE=http://app.internal:9000 \
//   ASSERTION="<the X-Portcullis-Assertion header>" node verify-assertion.mjs
//
// prints the verified claims, or fails.
import { createRemoteJWKSet, jwtVerify } from "jose";

const portcullis = process.env.PORTCULLIS_URL; // server.public_url
// Fetched once, cached, and fetched again for a key it does not know.
const keys = createRemoteJWKSet(new URL("/oauth2/jwks.json", portcullis));

async function identity(assertion) {
  const { payload } = await jwtVerify(assertion, keys, {
    algorithms: ["ES256"],
    issuer: portcullis,
    audience: process.env.APP_AUDIENCE, // the route's url, or its assertion_audience
  });
  return payload; // sub, email, groups, provider, iat, exp, jti
}

console.log(JSON.stringify(await identity(process.env.ASSERTION)));
