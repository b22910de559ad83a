// The test-login page in a real browser: Debian's Chromium driven by playwright-core.
//
//   node e2e.mjs ISSUER ARTIFACT_DIR
//
// The provider at ISSUER has the test-login page enabled, a `dingtalk` connector pointed at
// the DingTalk simulator (with requireMembership) and a `local` connector. The simulator is
// steered through E2E_CONTROL_URL: `POST {E2E_CONTROL_URL}/login-as/{unionId}` picks who signs
// in upstream next. The control server answers `{"member": "...", "outsider": "..."}` at
// `GET {E2E_CONTROL_URL}/users`.
//
// Writes six screenshots to ARTIFACT_DIR (chooser, result and error page, English and
// Chinese), prints `SUB <sub>` for every successful sign-in and `PASS <step>` for every step,
// and exits non-zero with the step's name and the reason at the first failed expectation.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [issuer, artifactDir] = process.argv.slice(2);
const control = process.env.E2E_CONTROL_URL;
if (!issuer || !artifactDir || !control) {
  console.error('usage: E2E_CONTROL_URL=URL node e2e.mjs ISSUER ARTIFACT_DIR');
  process.exit(2);
}
const base = issuer.replace(/\/$/, '');
fs.mkdirSync(artifactDir, { recursive: true });

// A hung browser must not hang the test run.
setTimeout(() => {
  console.error(`FAIL ${current}: the browser run took longer than 150 s`);
  process.exit(1);
}, 150_000).unref();

const LANGS = {
  en: {
    locale: 'en-US',
    htmlLang: 'en',
    chooserTitle: 'Test sign-in',
    dingtalkLabel: 'Sign in with DingTalk',
    resultTitle: 'Test sign-in succeeded',
    supportInfo: 'Support information',
  },
  zh: {
    locale: 'zh-CN',
    htmlLang: 'zh-CN',
    chooserTitle: '测试登录',
    dingtalkLabel: '使用钉钉登录',
    resultTitle: '测试登录成功',
    supportInfo: '支持信息',
  },
};

class Failure extends Error {}

function expect(cond, message) {
  if (!cond) {
    throw new Failure(message);
  }
}

let current = 'start';
function pass(step) {
  console.log(`PASS ${step}`);
}

async function steer(method, p) {
  const resp = await fetch(`${control}${p}`, { method });
  expect(resp.ok, `control request ${method} ${p} answered ${resp.status}`);
  return resp.json();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--no-first-run',
    '--disable-sync',
  ],
});

// Each page is a fresh context: no cookie, no language choice carried from one run to the next.
async function freshPage(lang) {
  const context = await browser.newContext({
    locale: LANGS[lang].locale,
    viewport: { width: 1100, height: 900 },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  return { context, page };
}

async function shot(page, name) {
  const file = path.join(artifactDir, name);
  await page.screenshot({ path: file, fullPage: true });
  const size = fs.statSync(file).size;
  expect(size > 0, `screenshot ${name} is empty`);
}

async function bodyText(page) {
  return page.locator('body').innerText();
}

async function expectVisible(page, text, what) {
  const loc = page.getByText(text, { exact: false }).first();
  expect(await loc.isVisible(), `${what}: ${JSON.stringify(text)} is not visible on ${page.url()}`);
}

// Opens the chooser, checks it and clicks the DingTalk connector. Returns the final response of
// the redirect chain (the provider's /callback or /test-login/callback page).
async function chooseDingTalk(page, lang, screenshot) {
  const t = LANGS[lang];
  const resp = await page.goto(`${base}/test-login`);
  expect(resp && resp.status() === 200, `GET /test-login answered ${resp?.status()}`);
  expect(
    (await page.locator('html').getAttribute('lang')) === t.htmlLang,
    `the chooser is not in ${t.htmlLang}: html lang=${await page.locator('html').getAttribute('lang')}`,
  );
  const heading = (await page.locator('h1').first().innerText()).trim();
  expect(heading === t.chooserTitle, `chooser heading is ${JSON.stringify(heading)}, expected ${JSON.stringify(t.chooserTitle)}`);
  const dingtalk = page.locator('a.btn-dingtalk');
  const email = page.locator('a.btn-local');
  expect((await dingtalk.count()) === 1, 'the chooser has no single DingTalk button');
  expect((await email.count()) === 1, 'the chooser has no single Email button');
  expect(await dingtalk.isVisible(), 'the DingTalk button is not visible');
  const label = (await dingtalk.innerText()).trim();
  expect(label.includes(t.dingtalkLabel), `the DingTalk button reads ${JSON.stringify(label)}, expected ${JSON.stringify(t.dingtalkLabel)}`);
  const emailLabel = (await email.innerText()).trim();
  expect(emailLabel.includes('Email'), `the Email button reads ${JSON.stringify(emailLabel)}`);
  const href = await dingtalk.getAttribute('href');
  expect(href && href.includes('/test-login/start?connector=dingtalk'), `DingTalk button goes to ${href}`);
  if (screenshot) {
    await shot(page, screenshot);
  }
  // The simulator signs the chosen user in at once and sends the browser straight back; the
  // last response of the chain is the one the page shows.
  let last;
  const onResponse = (r) => {
    if (r.request().isNavigationRequest() && r.request().frame() === page.mainFrame()) {
      last = r;
    }
  };
  page.on('response', onResponse);
  await Promise.all([
    page.waitForURL((u) => u.pathname.endsWith('/callback'), { waitUntil: 'load' }),
    dingtalk.click(),
  ]);
  page.off('response', onResponse);
  return last;
}

async function signedIn(lang) {
  const t = LANGS[lang];
  const { context, page } = await freshPage(lang);
  try {
    const resp = await chooseDingTalk(page, lang, `chooser-${lang}.png`);
    expect(
      new URL(page.url()).pathname.endsWith('/test-login/callback'),
      `the sign-in ended at ${page.url()}, not at /test-login/callback:\n${await bodyText(page)}`,
    );
    expect(resp && resp.status() === 200, `the result page answered ${resp?.status()}:\n${await bodyText(page)}`);
    expect(
      (await page.locator('html').getAttribute('lang')) === t.htmlLang,
      `the result page is not in ${t.htmlLang}`,
    );
    const heading = (await page.locator('h1').first().innerText()).trim();
    expect(heading === t.resultTitle, `result heading is ${JSON.stringify(heading)}, expected ${JSON.stringify(t.resultTitle)}`);

    // The first panel holds the verified ID token's claims as JSON.
    const raw = await page.locator('pre.code code').first().innerText();
    let claims;
    try {
      claims = JSON.parse(raw);
    } catch (e) {
      throw new Failure(`the ID token claims panel is not JSON (${e.message}): ${raw}`);
    }
    expect(typeof claims.sub === 'string' && /^[a-z0-9]{32}$/.test(claims.sub), `sub ${JSON.stringify(claims.sub)} is not 32 of [a-z0-9]`);
    expect(claims.preferred_username === 'zhang-san', `preferred_username is ${JSON.stringify(claims.preferred_username)}`);
    expect(claims.email === 'zhangsan@corp.example.com', `email is ${JSON.stringify(claims.email)}`);
    expect(claims.email_verified === true, `email_verified is ${JSON.stringify(claims.email_verified)}`);
    expect(claims.aud === 'idbridge-test-login', `aud is ${JSON.stringify(claims.aud)}`);
    expect(claims.iss === issuer, `iss is ${JSON.stringify(claims.iss)}, expected ${issuer}`);
    expect(Array.isArray(claims.groups) && claims.groups.includes('研发部'), `groups are ${JSON.stringify(claims.groups)}`);
    for (const text of [claims.sub, '"preferred_username": "zhang-san"', 'zhangsan@corp.example.com']) {
      await expectVisible(page, text, 'the result page');
    }
    // The userinfo panel agrees with the ID token.
    const userinfo = JSON.parse(await page.locator('pre.code code').nth(1).innerText());
    expect(userinfo.sub === claims.sub, `userinfo sub ${userinfo.sub} differs from the ID token's ${claims.sub}`);
    console.log(`SUB ${claims.sub}`);
    await shot(page, `result-${lang}.png`);
    return claims.sub;
  } finally {
    await context.close();
  }
}

async function refused(lang) {
  const t = LANGS[lang];
  const { context, page } = await freshPage(lang);
  try {
    const resp = await chooseDingTalk(page, lang, null);
    expect(
      new URL(page.url()).pathname === `${new URL(base).pathname.replace(/\/$/, '')}/callback`,
      `the refused sign-in ended at ${page.url()}:\n${await bodyText(page)}`,
    );
    expect(resp && resp.status() === 403, `the error page answered ${resp?.status()}, expected 403:\n${await bodyText(page)}`);
    expect((await page.locator('section.card-error').count()) === 1, 'the page is not an error page');
    expect(
      (await page.locator('html').getAttribute('lang')) === t.htmlLang,
      `the error page is not in ${t.htmlLang}`,
    );
    await expectVisible(page, t.supportInfo, 'the error page');
    // DingTalk's own error code and the request id a support desk asks for.
    await expectVisible(page, '60121', 'the error page');
    await expectVisible(page, 'SIMREQ', 'the error page');
    await shot(page, `error-${lang}.png`);
  } finally {
    await context.close();
  }
}

let code = 0;
try {
  const users = await steer('GET', '/users');
  current = 'signed in through DingTalk (English)';
  await steer('POST', `/login-as/${users.member}`);
  const subEn = await signedIn('en');
  pass(current);

  current = 'signed in through DingTalk (Chinese)';
  const subZh = await signedIn('zh');
  expect(subEn === subZh, `the same upstream user got two subjects: ${subEn} and ${subZh}`);
  pass(current);

  current = 'non-member refused with the upstream code (English)';
  await steer('POST', `/login-as/${users.outsider}`);
  await refused('en');
  pass(current);

  current = 'non-member refused with the upstream code (Chinese)';
  await refused('zh');
  pass(current);
} catch (err) {
  const reason = err instanceof Failure ? err.message : (err?.stack ?? String(err));
  console.error(`FAIL ${current}: ${reason}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
