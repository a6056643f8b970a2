"""Who may do what at the gateway: roles and scopes, API keys, JWTs from the company's IdP.

- roles.py: the scope vocabulary and what each role grants;
- keys.py: the API key tables, hashing, creation, rotation, revocation;
- resolver.py: the hot-path lookup from an Authorization header to a Principal;
- jwt.py: JWTs checked against the IdP's JWKS;
- endpoints.py: /v1/api-keys and /v1/me.
"""
