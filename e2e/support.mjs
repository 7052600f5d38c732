// What the end-to-end scripts share: free ports, checks, Debian's Chromium.
import { createServer } from "node:net";
import { chromium } from "playwright-core";

/** A port nobody listens on at 127.0.0.1, for a process started next. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** One step of the run: prints `ok - what`, or throws `FAILED: what`. */
export function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok - ${what}`);
}

/**
 * Debian's Chromium (never a downloaded one), headless. Host names other than
 * 127.0.0.x do not resolve, so nothing leaves loopback (pages that import
 * web fonts load without them).
 */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.*"],
  });
}
