// The benchmark peer: oidc-provider (a certified OpenID Provider) configured like idbridge's
// benchmark configuration: RS256, the same clients and secrets, client-credentials access
// tokens as RS256 JWTs for a resource indicator (opaque without one), introspection and
// revocation on, development interactions off. A custom interaction signs the one user in
// and grants consent at once, so a scripted login can obtain a user access token.
//
// Environment: PORT (required), KEYS_FILE (a JWKS with the private RSA key; created when
// missing, so later starts run with existing keys, like idbridge's).

import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
if (!port) {
  console.error('PORT is required');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const keysFile = process.env.KEYS_FILE || 'peer-keys.json';

function loadKeys() {
  if (existsSync(keysFile)) {
    return JSON.parse(readFileSync(keysFile, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-rs256', alg: 'RS256', use: 'sig' };
  const jwks = { keys: [jwk] };
  writeFileSync(keysFile, JSON.stringify(jwks));
  return jwks;
}

// The user of the scripted login, with the claims idbridge gives its local user.
const USER = {
  sub: 'bench-user',
  email: 'bench@example.com',
  email_verified: true,
  name: 'Bench User',
  preferred_username: 'bench',
  groups: ['developers'],
};

export const RESOURCE = 'https://api.bench.example';

const configuration = {
  jwks: loadKeys(),
  clients: [
    {
      client_id: 'bench-cc',
      client_secret: 'bench-cc-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api',
    },
    {
      client_id: 'bench-app',
      client_secret: 'bench-app-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:9/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups', 'api'],
  findAccount: async (ctx, id) => (id === USER.sub
    ? { accountId: id, claims: async () => USER }
    : undefined),
  cookies: { keys: ['bench-cookie-key-0123456789abcdef'] },
  ttl: {
    AccessToken: 3600,
    ClientCredentials: 3600,
    IdToken: 3600,
    AuthorizationCode: 120,
    Session: 43200,
    Grant: 43200,
    Interaction: 600,
    RefreshToken: 2592000,
  },
  pkce: { required: () => false },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new Error('unknown resource');
        }
        return {
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// Signs the one user in and grants what was asked, in one step.
async function autoLogin(req, res) {
  try {
    const details = await provider.interactionDetails(req, res);
    const result = {};
    if (details.prompt.name === 'login') {
      result.login = { accountId: USER.sub };
    }
    const accountId = details.session?.accountId || USER.sub;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: details.params.client_id });
    if (details.params.scope) {
      grant.addOIDCScope(details.params.scope);
    }
    result.consent = { grantId: await grant.save() };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  } catch (err) {
    console.error('interaction failed', err);
    res.statusCode = 500;
    res.end('interaction failed');
  }
}

const handler = provider.callback();
createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    autoLogin(req, res);
  } else {
    handler(req, res);
  }
}).listen(port, '127.0.0.1', () => {
  console.log(`peer ready on ${issuer}`);
});
