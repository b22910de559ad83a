// The provider driven by a certified relying-party library: panva/openid-client 6, using its
// own API for every protocol step. The browser's part (login form, consent, device page,
// logout) is plain fetch with manual redirects and a cookie jar.
//
//   node interop.mjs ISSUER CONFIG_JSON
//
// CONFIG_JSON: {"client": {"id", "secret", "redirectUri", "postLogoutRedirectUri"},
//               "deviceClient": {"id"}, "user": {"login", "password", "email"}}
//
// Prints `PASS <step>` for every step, and exits non-zero with `FAIL <step>: <error>` at the
// first failure.

import * as oidc from 'openid-client';

const [issuer, configJson] = process.argv.slice(2);
if (!issuer || !configJson) {
  console.error('usage: node interop.mjs ISSUER CONFIG_JSON');
  process.exit(2);
}
const { client, deviceClient, user } = JSON.parse(configJson);

setTimeout(() => {
  console.error('FAIL interop: the run took longer than 120 s');
  process.exit(1);
}, 120_000).unref();

class Failure extends Error {}

function expect(cond, message) {
  if (!cond) {
    throw new Failure(message);
  }
}

function describe(err) {
  if (err instanceof Failure) {
    return err.message;
  }
  // openid-client's errors carry the OAuth error and the server's description.
  const parts = [err?.name, err?.code, err?.error, err?.error_description, err?.message]
    .filter((p) => typeof p === 'string' && p.length > 0);
  const cause = err?.cause ? ` (cause: ${JSON.stringify(err.cause)})` : '';
  return `${[...new Set(parts)].join(': ')}${cause}\n${err?.stack ?? ''}`;
}

async function step(name, fn) {
  try {
    const out = await fn();
    console.log(`PASS ${name}`);
    return out;
  } catch (err) {
    console.error(`FAIL ${name}: ${describe(err)}`);
    process.exit(1);
  }
}

// Expects `fn` to be refused with the OAuth error `code`.
async function refusedWith(code, fn, what) {
  let err;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err, `${what} was accepted`);
  expect(err.error === code, `${what} failed with ${describe(err)}, expected ${code}`);
}

// ---------------------------------------------------------------------------------------------
// A browser: cookies kept, redirects followed one at a time.

const jar = new Map();

function storeCookies(resp) {
  for (const line of resp.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const gone = attrs.some((a) => {
      const [k, v = ''] = a.trim().split('=');
      return (k.toLowerCase() === 'max-age' && Number(v) <= 0)
        || (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now());
    });
    if (gone || value === '') {
      jar.delete(name);
    } else {
      jar.set(name, value);
    }
  }
}

async function request(url, init = {}) {
  const headers = { 'accept-language': 'en', ...(init.headers ?? {}) };
  if (jar.size > 0) {
    headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  const resp = await fetch(url, { ...init, headers, redirect: 'manual' });
  storeCookies(resp);
  const location = resp.headers.get('location');
  return {
    url: String(url),
    status: resp.status,
    location: location ? new URL(location, url) : null,
    body: await resp.text(),
  };
}

function postForm(url, pairs) {
  return request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(pairs).toString(),
  });
}

function unescapeHtml(s) {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function inputValue(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  return m ? unescapeHtml(m[1]) : null;
}

// The action of the form that holds `marker`, resolved against the page URL.
function formAction(page, marker) {
  const at = page.body.indexOf(marker);
  expect(at >= 0, `no ${marker} on ${page.url}`);
  const start = page.body.lastIndexOf('<form', at);
  const tag = page.body.slice(start, page.body.indexOf('>', start));
  const m = tag.match(/action="([^"]*)"/);
  expect(m, `the form on ${page.url} has no action`);
  return new URL(unescapeHtml(m[1]), page.url);
}

// Follows the provider's redirects from `url`, signing in and approving on the way, until a
// redirect leaves for `stopAt`. Returns {redirect, loginForms, consents} or, when the run stops
// on a page first (or at the login form with `signIn: false`), {page, loginForms, consents}.
async function browse(url, stopAt, { signIn = true } = {}) {
  let loginForms = 0;
  let consents = 0;
  let page = await request(url);
  for (let hops = 0; hops < 15; hops += 1) {
    if (page.status >= 300 && page.status < 400) {
      expect(page.location, `${page.url} redirected without a Location`);
      if (page.location.href.startsWith(stopAt)) {
        return { redirect: page.location, loginForms, consents };
      }
      expect(page.location.origin === new URL(issuer).origin, `redirected away to ${page.location}`);
      page = await request(page.location);
      continue;
    }
    if (page.status === 200 && page.body.includes('name="password"')) {
      loginForms += 1;
      if (!signIn) {
        break;
      }
      expect(loginForms === 1, 'the login form came back: the password was refused');
      page = await postForm(formAction(page, 'name="password"'), {
        login: user.login,
        password: user.password,
        csrf: inputValue(page.body, 'csrf'),
      });
      continue;
    }
    if (page.status === 200 && page.body.includes('name="approval"')) {
      consents += 1;
      expect(consents === 1, 'the consent screen came back');
      page = await postForm(formAction(page, 'name="approval"'), {
        csrf: inputValue(page.body, 'csrf'),
        req: inputValue(page.body, 'req'),
        approval: 'approve',
      });
      continue;
    }
    break;
  }
  return { page, loginForms, consents };
}

// ---------------------------------------------------------------------------------------------

const insecure = { execute: [oidc.allowInsecureRequests] };
const scope = 'openid profile email groups offline_access';

const config = await step('discovery', async () => {
  const c = await oidc.discovery(
    new URL(issuer),
    client.id,
    undefined,
    oidc.ClientSecretBasic(client.secret),
    insecure,
  );
  const meta = c.serverMetadata();
  expect(meta.issuer === issuer, `issuer ${meta.issuer}, expected ${issuer}`);
  expect(meta.authorization_response_iss_parameter_supported === true, 'RFC 9207 iss is not announced');
  expect(meta.code_challenge_methods_supported?.includes('S256'), 'S256 is not announced');
  expect(meta.device_authorization_endpoint, 'no device_authorization_endpoint');
  return c;
});

// One authorization code run: PKCE, nonce and state generated by the library.
async function authorize(expectLogin) {
  const verifier = oidc.randomPKCECodeVerifier();
  const nonce = oidc.randomNonce();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: client.redirectUri,
    scope,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    nonce,
    state,
  });
  const run = await browse(url, client.redirectUri);
  expect(run.redirect, `the authorization did not return to the client: ${run.page?.status} ${run.page?.body?.slice(0, 500)}`);
  expect(run.loginForms === (expectLogin ? 1 : 0), `${run.loginForms} login forms shown, expected ${expectLogin ? 1 : 0}`);
  expect(run.consents === 0, 'a consent screen was shown although approval is skipped');
  expect(run.redirect.searchParams.get('iss') === issuer, `iss response parameter is ${run.redirect.searchParams.get('iss')}`);
  // The library checks state, iss, the code exchange with PKCE, and the ID token (signature,
  // iss, aud, exp, nonce, at_hash).
  return oidc.authorizationCodeGrant(config, run.redirect, {
    pkceCodeVerifier: verifier,
    expectedNonce: nonce,
    expectedState: state,
    idTokenExpected: true,
  });
}

const tokens = await step('authorization code grant', async () => {
  const t = await authorize(true);
  const claims = t.claims();
  expect(claims, 'no ID token claims');
  expect(/^[a-z0-9]{32}$/.test(claims.sub), `sub ${claims.sub} is not 32 of [a-z0-9]`);
  expect(claims.preferred_username === user.login, `preferred_username ${claims.preferred_username}`);
  expect(claims.email === user.email, `email ${claims.email}`);
  expect(claims.email_verified === true, `email_verified ${claims.email_verified}`);
  expect(t.refresh_token, 'no refresh token for offline_access');
  expect(t.token_type?.toLowerCase() === 'bearer', `token_type ${t.token_type}`);
  return t;
});
const sub = tokens.claims().sub;

await step('userinfo', async () => {
  const info = await oidc.fetchUserInfo(config, tokens.access_token, sub);
  expect(info.sub === sub, `userinfo sub ${info.sub}`);
  expect(info.email === user.email, `userinfo email ${info.email}`);
  expect(info.preferred_username === user.login, `userinfo preferred_username ${info.preferred_username}`);
});

const refreshed = await step('refresh token grant rotates the refresh token', async () => {
  const r = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  expect(r.refresh_token && r.refresh_token !== tokens.refresh_token, 'the refresh token was not rotated');
  expect(r.access_token !== tokens.access_token, 'the same access token came back');
  const claims = r.claims();
  expect(claims?.sub === sub, `refreshed ID token sub ${claims?.sub}`);
  return r;
});

await step('token introspection', async () => {
  const at = await oidc.tokenIntrospection(config, refreshed.access_token);
  expect(at.active === true, `access token introspected as ${JSON.stringify(at)}`);
  expect(at.sub === sub && at.client_id === client.id, `access token introspection ${JSON.stringify(at)}`);
  expect(at.scope?.split(' ').includes('openid'), `scope ${at.scope}`);
  const rt = await oidc.tokenIntrospection(config, refreshed.refresh_token);
  expect(rt.active === true && rt.token_type === 'refresh_token', `refresh token introspected as ${JSON.stringify(rt)}`);
  const old = await oidc.tokenIntrospection(config, tokens.refresh_token);
  expect(old.active === false, `the rotated refresh token introspected as ${JSON.stringify(old)}`);
});

await step('a rotated refresh token is refused and revokes its family', async () => {
  await refusedWith('invalid_grant', () => oidc.refreshTokenGrant(config, tokens.refresh_token), 'the rotated refresh token');
  await refusedWith('invalid_grant', () => oidc.refreshTokenGrant(config, refreshed.refresh_token), 'the newest refresh token of a revoked family');
  const at = await oidc.tokenIntrospection(config, refreshed.access_token);
  expect(at.active === false, `an access token of the revoked family is ${JSON.stringify(at)}`);
});

await step('token revocation', async () => {
  // The browser is still signed in: no login form this time.
  const t = await authorize(false);
  expect((await oidc.tokenIntrospection(config, t.refresh_token)).active === true, 'the new refresh token is not active');
  await oidc.tokenRevocation(config, t.refresh_token);
  const rt = await oidc.tokenIntrospection(config, t.refresh_token);
  expect(rt.active === false, `the revoked refresh token introspected as ${JSON.stringify(rt)}`);
  const at = await oidc.tokenIntrospection(config, t.access_token);
  expect(at.active === false, `the access token of the revoked grant introspected as ${JSON.stringify(at)}`);
  await refusedWith('invalid_grant', () => oidc.refreshTokenGrant(config, t.refresh_token), 'the revoked refresh token');
  // Revoking an unknown token is not an error (RFC 7009 2.2).
  await oidc.tokenRevocation(config, 'not-a-token-we-issued');
});

await step('client credentials grant', async () => {
  const t = await oidc.clientCredentialsGrant(config);
  expect(t.access_token && !t.refresh_token && !t.id_token, `client credentials answer ${JSON.stringify(t)}`);
  const at = await oidc.tokenIntrospection(config, t.access_token);
  expect(at.active === true && at.client_id === client.id && at.sub === client.id, `introspection ${JSON.stringify(at)}`);
  await oidc.tokenRevocation(config, t.access_token);
  expect((await oidc.tokenIntrospection(config, t.access_token)).active === false, 'the revoked client credentials token is still active');
});

await step('device authorization grant', async () => {
  const device = await oidc.discovery(new URL(issuer), deviceClient.id, undefined, oidc.None(), insecure);
  const da = await oidc.initiateDeviceAuthorization(device, { scope: 'openid profile email offline_access' });
  expect(da.user_code && da.verification_uri && da.verification_uri_complete, `device answer ${JSON.stringify(da)}`);
  // Nothing approved yet: the first poll is told to wait.
  await refusedWith(
    'authorization_pending',
    () => oidc.genericGrantRequest(device, 'urn:ietf:params:oauth:grant-type:device_code', { device_code: da.device_code }),
    'a poll before approval',
  );
  // The signed-in user opens the verification page, confirms the code and approves.
  const entry = await request(da.verification_uri_complete);
  expect(entry.status === 200, `the device page answered ${entry.status}`);
  expect(inputValue(entry.body, 'user_code') === da.user_code, 'the device page is not pre-filled with the user code');
  const submitted = await postForm(formAction(entry, 'name="user_code"'), {
    csrf: inputValue(entry.body, 'csrf'),
    user_code: da.user_code,
  });
  expect(submitted.status === 303 && submitted.location, `submitting the code answered ${submitted.status}: ${submitted.body.slice(0, 300)}`);
  const consent = await request(submitted.location);
  expect(consent.status === 200 && consent.body.includes('name="approval"'), `the device approval page answered ${consent.status}`);
  const done = await postForm(formAction(consent, 'name="approval"'), {
    csrf: inputValue(consent.body, 'csrf'),
    req: inputValue(consent.body, 'req'),
    approval: 'approve',
  });
  expect(done.status === 200 && done.body.includes('Device connected'), `approving answered ${done.status}: ${done.body.slice(0, 300)}`);
  // The library waits `interval` seconds before it polls.
  const t = await oidc.pollDeviceAuthorizationGrant(device, da);
  const claims = t.claims();
  expect(claims?.sub === sub && claims.aud === deviceClient.id, `device ID token ${JSON.stringify(claims)}`);
  expect(t.refresh_token, 'no refresh token for offline_access');
  const info = await oidc.fetchUserInfo(device, t.access_token, sub);
  expect(info.email === user.email, `device userinfo ${JSON.stringify(info)}`);
  // The device code is single use.
  await refusedWith(
    'invalid_grant',
    () => oidc.genericGrantRequest(device, 'urn:ietf:params:oauth:grant-type:device_code', { device_code: da.device_code }),
    'a second use of the device code',
  );
});

await step('RP-initiated logout', async () => {
  const state = oidc.randomState();
  const url = oidc.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: client.postLogoutRedirectUri,
    state,
  });
  const out = await browse(url, client.postLogoutRedirectUri);
  expect(out.redirect, `logout did not redirect back: ${out.page?.status} ${out.page?.body?.slice(0, 300)}`);
  expect(out.redirect.searchParams.get('state') === state, `logout returned state ${out.redirect.searchParams.get('state')}`);
  // The session has ended: a new authorization asks for the password again.
  const again = await browse(
    oidc.buildAuthorizationUrl(config, {
      redirect_uri: client.redirectUri,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
      state: oidc.randomState(),
    }),
    client.redirectUri,
    { signIn: false },
  );
  expect(!again.redirect && again.loginForms === 1, 'after logout the browser still got a code without signing in');
});

process.exit(0);
