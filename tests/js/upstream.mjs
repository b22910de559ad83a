// An independent OpenID provider (panva/oidc-provider) used as the upstream of the `oidc`
// connector in the integration tests.
//
//   node upstream.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI
//
// Listens on 127.0.0.1 at UPSTREAM_PORT (a free port when unset) and prints `LISTENING <port>`
// once ready. Logins and
// consents complete without a person: the interaction route signs in the account chosen through
// the control API (alice by default) and grants what was asked for.
//
// Control API (test use only):
//   POST /_control/login-as?user=bob      account for the next logins
//   POST /_control/disable?user=alice     the account disappears: its refresh tokens stop working
//   GET  /_control/stats                  {"grants":{"authorization_code":n,"refresh_token":n}}

import http from 'node:http';
import Provider from 'oidc-provider';

const [clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!clientId || !clientSecret || !redirectUri) {
  console.error('usage: node upstream.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI');
  process.exit(2);
}

const accounts = new Map([
  ['alice', {
    sub: 'alice-0001',
    preferred_username: 'alice',
    name: 'Alice Liddell',
    email: 'alice@example.com',
    email_verified: true,
    idaas: { groups: ['dev', 'ops'], employee_id: 'E1001' },
  }],
  ['bob', {
    sub: 'bob-0002',
    preferred_username: 'bob',
    name: '鲍勃',
    email: 'bob@example.com',
    // Some providers send the string instead of a boolean.
    email_verified: 'true',
    idaas: { groups: ['研发部'] },
  }],
]);
const bySub = new Map([...accounts.values()].map((a) => [a.sub, a]));
const disabled = new Set();
let loginAs = 'alice';
const grants = { authorization_code: 0, refresh_token: 0 };

async function findAccount(_ctx, sub) {
  const account = bySub.get(sub);
  if (!account || disabled.has(sub)) {
    return undefined;
  }
  return {
    accountId: sub,
    async claims() {
      return { ...account };
    },
  };
}

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.env.UPSTREAM_PORT ?? 0), '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['idaas'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['idbridge-test-upstream-only'] },
  ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 86400 },
});
provider.on('grant.success', (ctx) => {
  const type = ctx.oidc.params.grant_type;
  grants[type] = (grants[type] ?? 0) + 1;
});
provider.on('server_error', (_ctx, err) => console.error('upstream server_error', err));

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const account = accounts.get(loginAs);
    return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, {
      mergeWithLastSubmission: false,
    });
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) {
      grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    }
    if (missing.missingOIDCClaims) {
      grant.addOIDCClaims(missing.missingOIDCClaims);
    }
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
  }
  res.statusCode = 400;
  res.end(`unexpected prompt ${prompt.name}`);
}

function control(url, req, res) {
  const user = url.searchParams.get('user');
  const reply = (status, body) => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  };
  if (req.method === 'POST' && url.pathname === '/_control/login-as' && accounts.has(user)) {
    loginAs = user;
    return reply(200, { loginAs });
  }
  if (req.method === 'POST' && url.pathname === '/_control/disable' && accounts.has(user)) {
    disabled.add(accounts.get(user).sub);
    return reply(200, { disabled: [...disabled] });
  }
  if (req.method === 'GET' && url.pathname === '/_control/stats') {
    return reply(200, { grants });
  }
  return reply(404, { error: 'unknown control request' });
}

const handle = provider.callback();
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname.startsWith('/interaction/')) {
      await interaction(req, res);
    } else if (url.pathname.startsWith('/_control/')) {
      control(url, req, res);
    } else {
      handle(req, res);
    }
  } catch (err) {
    console.error('upstream error', err);
    if (!res.headersSent) {
      res.statusCode = 500;
    }
    res.end(String(err));
  }
});

// The parent test reads this line to learn the port.
console.log(`LISTENING ${port}`);

// Stop when the parent goes away, even if it could not kill us.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
