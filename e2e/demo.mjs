// End-to-end: a real browser signs in through `portcullis demo` and out again.
// Usage: node demo.mjs <path to the portcullis binary> [screenshot dir]
import { spawn } from "node:child_process";
import { check, freePort, launchChromium } from "./support.mjs";

const binary = process.argv[2];
const shots = process.argv[3];
if (!binary) throw new Error("usage: node demo.mjs <portcullis binary> [screenshot dir]");

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const demo = spawn(binary, ["demo", "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
let output = "";
demo.stdout.on("data", (d) => (output += d));
demo.stderr.on("data", (d) => (output += d));
const stopDemo = () => demo.kill("SIGTERM");

let browser;
try {
  const deadline = Date.now() + 60_000;
  while (!output.includes("Press Ctrl-C to stop")) {
    if (demo.exitCode !== null) throw new Error(`demo exited early:\n${output}`);
    if (Date.now() > deadline) throw new Error(`demo did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  check(output.includes(`${base}/`), "the demo prints the URL to open");

  browser = await launchChromium();
  const page = await browser.newPage();

  // Anonymous: portcullis sends the browser to its sign-in page.
  await page.goto(`${base}/dashboard?tab=1`);
  check(page.url().startsWith(`${base}/oauth2/sign_in?rd=`), `redirected to sign-in (${page.url()})`);
  if (shots) await page.screenshot({ path: `${shots}/1-sign-in.png` });

  // The sign-in page lists the demo provider; choosing it leads to the provider's login page.
  await page.getByRole("link", { name: /demo/i }).first().click();
  await page.waitForLoadState();
  check(!page.url().startsWith(base), `at the identity provider (${page.url()})`);
  if (shots) await page.screenshot({ path: `${shots}/2-provider.png` });

  // Pick Ada at the provider; back through the callback to where we started.
  await page.getByRole("button", { name: /ada/i }).first().click();
  await page.waitForURL(`${base}/dashboard?tab=1`);
  const body = await page.textContent("body");
  check(body.includes("ada@example.com"), "the app shows the signed-in user's email from X-Forwarded-Email");
  if (shots) await page.screenshot({ path: `${shots}/3-app.png` });

  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "_portcullis");
  check(session && session.httpOnly, "the session cookie is HttpOnly");
  check(!cookies.some((c) => c.name.includes("_flow_")), "the flow cookie is gone after sign-in");

  // The identity endpoint agrees.
  const info = await page.evaluate(async () => (await fetch("/oauth2/userinfo")).json());
  check(info.email === "ada@example.com", "/oauth2/userinfo returns the identity");

  // Sign out, then the app is closed again.
  await page.getByRole("link", { name: /sign out/i }).first().click();
  await page.waitForLoadState();
  if (shots) await page.screenshot({ path: `${shots}/4-signed-out.png` });
  check(!(await page.context().cookies()).some((c) => c.name === "_portcullis"), "sign-out removes the session cookie");
  await page.goto(`${base}/dashboard`);
  check(page.url().startsWith(`${base}/oauth2/sign_in`), "after sign-out the app asks for sign-in again");
  console.log("1 passed, 0 failed");
} catch (e) {
  console.error(String(e && e.stack || e));
  console.error(`--- demo output ---\n${output}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  stopDemo();
}
