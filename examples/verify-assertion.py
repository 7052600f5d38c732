# Verifies portcullis' signed identity assertion (README, "Signed identity
# assertion") with PyJWT: `pip install "pyjwt[crypto]"`, then in the app, for
# each request:
#
#   PORTCULLIS_URL=https://auth.example.com APP_AUDIENCE=http://app.internal:9000 \
#   ASSERTION="<the X-Portcullis-Assertion header>" python3 verify-assertion.py
#
# prints the verified claims, or fails.
import json
import os

import jwt

portcullis = os.environ["PORTCULLIS_URL"]  # server.public_url
# Fetched once, cached, and fetched again for a key it does not know.
keys = jwt.PyJWKClient(portcullis + "/oauth2/jwks.json")


def identity(assertion):
    key = keys.get_signing_key_from_jwt(assertion)
    return jwt.decode(
        assertion,
        key,
        algorithms=["ES256"],
        issuer=portcullis,
        audience=os.environ["APP_AUDIENCE"],  # the route's url, or its assertion_audience
    )  # sub, email, groups, provider, iat, exp, jti


print(json.dumps(identity(os.environ["ASSERTION"])))
