// End-to-end against an OpenID Certified provider: two instances of panva's
// oidc-provider (two issuers, each with its own login and consent pages),
// portcullis in front of an app written here, and Debian's Chromium.
// Usage: node oidc_provider.mjs <path to the portcullis binary> [artifact dir]
//
// Each provider runs on a loopback address of its own (127.0.0.2, 127.0.0.3)
// and portcullis on 127.0.0.1: cookies are per host, not per port, so each
// keeps its own cookie jar in the browser, as on separate hosts.
import { spawn } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Provider from "oidc-provider";
import { WebSocketServer } from "ws";
import { check, freePort, launchChromium } from "./support.mjs";

const binary = process.argv[2];
const artifacts = process.argv[3];
if (!binary) throw new Error("usage: node oidc_provider.mjs <portcullis binary> [artifact dir]");
if (artifacts) mkdirSync(artifacts, { recursive: true });

/** Access tokens live this long; portcullis refreshes on the first request after. */
const ACCESS_TOKEN_SECONDS = 4;
/** Bob's access tokens outlive the run: only a back-channel logout can end his session. */
const LONG_LIVED = "bob";
const CLIENT_SECRET = randomBytes(24).toString("hex");

const ACCOUNTS = {
  alice: { name: "Alice Liddell", groups: ["staff"] },
  bob: { name: "Bob Builder", groups: ["staff", "builders"] },
};

const stoppers = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Every wait below is on a condition with its own timeout; this one bounds
// the whole run, and still stops what the run started.
setTimeout(() => {
  console.error("FAILED: the run took more than 120 s");
  for (const stop of stoppers.reverse()) stop();
  process.exit(1);
}, 120_000).unref();

// The app: shows the identity headers it got (and a digest of the access
// token, never the token), and echoes over a websocket at /ws.
async function startUpstream() {
  const identity = (req) => {
    const seen = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (name.startsWith("x-forwarded-") && name !== "x-forwarded-access-token") seen[name] = value;
    }
    const token = req.headers["x-forwarded-access-token"];
    if (token) seen.access_token_sha256 = createHash("sha256").update(token).digest("hex");
    return seen;
  };
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><title>app</title><h1>The app</h1>
<pre id="identity">${JSON.stringify(identity(req)).replace(/</g, "\\u003c")}</pre>
<a href="/oauth2/sign_out">Sign out</a>`);
  });
  const wss = new WebSocketServer({ server, path: "/ws" });
  wss.on("connection", (ws, req) => {
    ws.send(JSON.stringify(identity(req)));
    ws.on("message", (data) => ws.send(`echo: ${data}`));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  stoppers.push(() => { wss.close(); server.closeAllConnections(); server.close(); });
  return `http://127.0.0.1:${server.address().port}`;
}

// One oidc-provider: its own issuer, keys, login and consent pages
// (devInteractions), RP-initiated and back-channel logout, refresh tokens.
async function startProvider(id, host, proxy) {
  // Listening first: the issuer names the port.
  const server = createServer();
  await new Promise((r) => server.listen(0, host, r));
  stoppers.push(() => { server.closeAllConnections(); server.close(); });
  const issuer = `http://${host}:${server.address().port}`;
  const seen = { refreshes: 0, backchannel: [], errors: [] };
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: "portcullis",
      client_secret: CLIENT_SECRET,
      redirect_uris: [`${proxy}/oauth2/callback/${id}`],
      post_logout_redirect_uris: [`${proxy}/oauth2/signed_out`],
      backchannel_logout_uri: `${proxy}/oauth2/backchannel_logout/${id}`,
      backchannel_logout_session_required: true,
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    }],
    jwks: { keys: [{ ...privateKey.export({ format: "jwk" }), kid: `${id}-1`, alg: "RS256", use: "sig" }] },
    cookies: { keys: [randomBytes(32).toString("hex")] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
    },
    pkce: { required: () => true },
    scopes: ["openid", "offline_access", "email", "profile", "groups"],
    claims: { email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] },
    issueRefreshToken: async (ctx, client, code) =>
      client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access"),
    ttl: {
      AccessToken: (ctx, token) => (token.accountId === LONG_LIVED ? 600 : ACCESS_TOKEN_SECONDS),
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 3600,
      Grant: 3600,
      Session: 3600,
      Interaction: 600,
    },
    // oidc-provider refuses outgoing requests to special-use addresses
    // (SSRF protection); its back-channel logout goes to portcullis on
    // loopback, so that one origin is let through, and nothing else.
    fetch: (url, { dispatcher, ...options }) => {
      if (new URL(url).origin !== proxy) throw new Error(`unexpected request to ${url}`);
      return globalThis.fetch(url, options);
    },
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => ({
        sub,
        email: `${sub}@example.com`,
        email_verified: true,
        name: ACCOUNTS[sub]?.name ?? sub,
        groups: ACCOUNTS[sub]?.groups ?? [],
      }),
    }),
  });
  provider.on("grant.success", (ctx) => {
    if (ctx.oidc.params.grant_type === "refresh_token") seen.refreshes += 1;
  });
  provider.on("backchannel.success", (ctx, client, sub) => seen.backchannel.push(sub));
  provider.on("backchannel.error", (ctx, err) => seen.errors.push(String(err)));
  provider.on("server_error", (ctx, err) => seen.errors.push(String(err)));
  server.on("request", provider.callback());
  const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  return { id, issuer, seen, endSession: discovery.end_session_endpoint };
}

function providerToml(p, name) {
  return `
[providers.${p.id}]
kind = "oidc"
display_name = "${name}"
issuer = "${p.issuer}"
client_id = "portcullis"
client_secret = "${CLIENT_SECRET}"
extra_scopes = ["groups", "offline_access"]
# oidc-provider issues a refresh token for offline_access only with consent asked.
auth_params = { prompt = "consent" }
idp_logout = true
`;
}

// portcullis with this configuration, ready once /oauth2/readyz says so
// (every provider's metadata and keys loaded).
async function startPortcullis(dir, name, port, toml) {
  const config = join(dir, `${name}.toml`);
  writeFileSync(config, toml);
  const child = spawn(binary, ["run", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  const run = { output: "", child };
  child.stdout.on("data", (d) => (run.output += d));
  child.stderr.on("data", (d) => (run.output += d));
  stoppers.push(() => child.kill("SIGTERM"));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`portcullis ${name} exited:\n${run.output}`);
    if (Date.now() > deadline) throw new Error(`portcullis ${name} not ready:\n${run.output}`);
    const ready = await fetch(`http://127.0.0.1:${port}/oauth2/readyz`).then((r) => r.ok, () => false);
    if (ready) return run;
    await sleep(100);
  }
}

const runs = [];
let browser;
try {
  const started = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), "portcullis-e2e-"));
  stoppers.push(() => rmSync(tmp, { recursive: true, force: true }));
  const ports = new Set();
  while (ports.size < 3) ports.add(await freePort());
  const [proxyPort, metricsPort, loneProxyPort] = ports;
  const proxy = `http://127.0.0.1:${proxyPort}`;
  const upstream = await startUpstream();
  const a = await startProvider("a", "127.0.0.2", proxy);
  const b = await startProvider("b", "127.0.0.3", proxy);
  const main = await startPortcullis(tmp, "main", proxyPort, `
[server]
listen = "127.0.0.1:${proxyPort}"
public_url = "${proxy}"
metrics_listen = "127.0.0.1:${metricsPort}"

[upstream]
url = "${upstream}"
pass_access_token = true

[session]
secret = "${randomBytes(32).toString("hex")}"
refresh_before = "1s"

[[rules]]
path = "/admin"
groups = ["admins"]
${providerToml(a, "Provider A")}${providerToml(b, "Provider B")}`);
  runs.push(main);

  const renewed = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith('portcullis_refreshes_total{result="renewed"}'));
    return Number(line?.split(" ")[1] ?? NaN);
  };
  const shot = async (page, name) => {
    if (artifacts) await page.screenshot({ path: join(artifacts, name) });
  };
  const identity = async (page) => JSON.parse(await page.textContent("#identity"));
  const onSignIn = (page) => page.url().startsWith(`${proxy}/oauth2/sign_in`);
  // Through a provider's own pages: its login form, then its consent form.
  const signIn = async (page, providerName, login) => {
    await page.getByRole("link", { name: `Sign in with ${providerName}` }).click();
    await page.locator('input[name="login"]').fill(login);
    await page.locator('input[name="password"]').fill("any password");
    await page.getByRole("button", { name: "Sign-in" }).click();
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL((url) => url.origin === proxy && !url.pathname.startsWith("/oauth2/"));
  };

  browser = await launchChromium();
  // Small pages: the screenshots are of portcullis' card, not of white space.
  const viewport = { width: 720, height: 560 };
  const aliceContext = await browser.newContext({ viewport });
  aliceContext.setDefaultTimeout(15_000);
  const page = await aliceContext.newPage();

  // 1. The chooser, provider A's login and consent pages, the app.
  await page.goto(`${proxy}/`);
  check(onSignIn(page), `an anonymous visit is sent to the sign-in page (${page.url()})`);
  const buttons = await page.locator("ul.providers a").allTextContents();
  check(buttons.length === 2 && buttons.some((t) => t.includes("Provider A")) && buttons.some((t) => t.includes("Provider B")),
    `the sign-in page offers both providers (${buttons.join(", ")})`);
  await shot(page, "chooser.png");
  await signIn(page, "Provider A", "alice");
  check(page.url() === `${proxy}/`, "after provider A's login and consent pages the browser is back where it started");
  const first = await identity(page);
  check(first["x-forwarded-user"] === "alice" && first["x-forwarded-email"] === "alice@example.com"
    && first["x-forwarded-groups"] === "staff" && first["x-forwarded-provider"] === "a",
    `the app got the identity headers from findAccount (${JSON.stringify(first)})`);
  check(Boolean(first.access_token_sha256), "the app got the access token");

  // 2. Two refreshes: each time the access token has expired, the next
  // request renews it with the refresh token, and the user stays signed in.
  let last = first;
  for (const n of [1, 2]) {
    const [renewedBefore, refreshesBefore] = [await renewed(), a.seen.refreshes];
    // The only wait that is not on a condition: the access token's lifetime.
    await sleep(ACCESS_TOKEN_SECONDS * 1000 + 500);
    await page.reload();
    const now = await identity(page);
    check(now["x-forwarded-user"] === "alice", `refresh ${n}: still signed in after the access token expired`);
    check(now.access_token_sha256 !== last.access_token_sha256, `refresh ${n}: the app got a new access token`);
    check(a.seen.refreshes > refreshesBefore && (await renewed()) > renewedBefore,
      `refresh ${n}: provider A granted a refresh_token grant and portcullis counted it renewed`);
    last = now;
  }

  // 3. A websocket through portcullis, with the session's identity.
  const echo = await page.evaluate(() => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    const got = [];
    ws.onmessage = (e) => {
      got.push(e.data);
      if (got.length === 1) ws.send("hello");
      else { ws.close(); resolve(got); }
    };
    ws.onerror = () => reject(new Error("the websocket failed"));
    setTimeout(() => reject(new Error(`the websocket gave ${got.length} of 2 messages in 10 s`)), 10_000);
  }));
  check(JSON.parse(echo[0])["x-forwarded-user"] === "alice", "the websocket's upgrade reached the app with the identity headers");
  check(echo[1] === "echo: hello", "a message through the websocket came back");

  // The denied and error pages.
  const denied = await page.goto(`${proxy}/admin`);
  const deniedText = await page.textContent("body");
  check(denied.status() === 403 && deniedText.includes("alice@example.com"),
    "a rule the user does not meet gets the 403 page naming the user");
  await shot(page, "denied.png");
  const error = await page.goto(`${proxy}/oauth2/callback/a?code=forged&state=forged`);
  check(error.status() >= 400 && error.status() < 500, `a callback with a forged state gets an error page (${error.status()})`);
  await shot(page, "error.png");

  // 4. RP-initiated logout: portcullis, then provider A's own confirmation,
  // then portcullis' signed-out page.
  await page.goto(`${proxy}/`);
  await page.getByRole("link", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Yes, sign me out" }).click();
  await page.waitForURL(`${proxy}/oauth2/signed_out**`);
  check(/signed out/i.test(await page.textContent("body")), "provider A's end-session page sends the browser to portcullis' signed-out page");
  await shot(page, "signed_out.png");
  check(!(await aliceContext.cookies(proxy)).some((c) => c.name === "_portcullis"), "the session cookie is gone");
  await page.goto(`${proxy}/`);
  check(onSignIn(page), "the app asks for sign-in again");
  await page.getByRole("link", { name: "Sign in with Provider A" }).click();
  await page.locator('input[name="login"]').waitFor();
  check(page.url().startsWith(a.issuer), "provider A asks for a login again: signed out there too");

  // 5. Back-channel logout: Bob signs in with provider B in a browser of his
  // own, then ends his session at provider B's own end-session page (never
  // touching portcullis); provider B posts a logout token to portcullis, and
  // Bob's next request, with his portcullis cookie still sent, needs sign-in.
  const bobContext = await browser.newContext({ viewport });
  bobContext.setDefaultTimeout(15_000);
  const bob = await bobContext.newPage();
  await bob.goto(`${proxy}/`);
  const refused = await bob.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onopen = () => resolve("open");
    ws.onerror = () => resolve("refused");
  }));
  check(refused === "refused", "without a session the websocket is refused");
  await signIn(bob, "Provider B", "bob");
  check((await identity(bob))["x-forwarded-user"] === "bob" && (await identity(bob))["x-forwarded-provider"] === "b",
    "Bob is signed in through provider B");
  await bob.goto(b.endSession);
  await bob.getByRole("button", { name: "Yes, sign me out" }).click();
  await bob.waitForURL((url) => url.origin === b.issuer && url.pathname.endsWith("/success"));
  check(b.seen.backchannel.includes("bob") && b.seen.errors.length === 0,
    `provider B's back-channel logout token was accepted by portcullis (${b.seen.errors.join("; ")})`);
  check(main.output.split("\n").some((l) => l.includes("back-channel logout") && /provider="?b"?( |$)/.test(l) && l.includes("by_sid=true")),
    "portcullis logged provider B's back-channel logout, by the provider's session id (sid)");
  check((await bobContext.cookies(proxy)).some((c) => c.name === "_portcullis"), "Bob's browser still holds its portcullis cookie");
  await bob.goto(`${proxy}/`);
  check(onSignIn(bob), "Bob's next request is sent to sign-in");

  // The sign-in page with one provider (a second portcullis, provider A only).
  await startPortcullis(tmp, "lone", loneProxyPort, `
[server]
listen = "127.0.0.1:${loneProxyPort}"
public_url = "http://127.0.0.1:${loneProxyPort}"

[upstream]
url = "${upstream}"

[session]
secret = "${randomBytes(32).toString("hex")}"
${providerToml(a, "Provider A")}`).then((r) => runs.push(r));
  await page.goto(`http://127.0.0.1:${loneProxyPort}/`);
  check((await page.locator("ul.providers a").count()) === 1, "with one provider the sign-in page shows its one button");
  await shot(page, "sign_in.png");

  check(a.seen.errors.length === 0 && b.seen.errors.length === 0, `the providers logged no errors (${[...a.seen.errors, ...b.seen.errors].join("; ")})`);
  console.log(`all passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (e) {
  console.error(String((e && e.stack) || e));
  for (const run of runs) console.error(`--- portcullis output ---\n${run.output}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  for (const stop of stoppers.reverse()) stop();
}
