// Shared helpers of the panel's browser tests: playwright-core (from ui/node_modules: it is a
// devDependency of the panel) driving Debian's /usr/bin/chromium headless. No browser is ever
// downloaded. tests/integration/test_ui.py starts the servers and runs these scripts.

const path = require("path");
const fs = require("fs");
const { createRequire } = require("module");

const root = path.resolve(__dirname, "..", "..");
const uiRequire = createRequire(path.join(root, "ui", "package.json"));
const { chromium } = uiRequire("playwright-core");

const env = {
  url: process.env.TRAPLINE_UI_URL,                // http://127.0.0.1:PORT/
  user: process.env.TRAPLINE_UI_USER,
  password: process.env.TRAPLINE_UI_PASSWORD,
  token: process.env.TRAPLINE_API_TOKEN,           // bearer token: changes "from elsewhere"
  shots: process.env.TRAPLINE_UI_SCREENSHOTS || path.join(root, "build", "ui-screenshots"),
  chromium: process.env.CHROMIUM || "/usr/bin/chromium",
};

class Failure extends Error {}
function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}
function say(msg) {
  process.stdout.write(`  ${msg}\n`);
}

async function launch(width = 1280, height = 860) {
  const browser = await chromium.launch({
    executablePath: env.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width, height }, baseURL: env.url });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // a refused CSP, a script error: both are bugs of the panel
    if (m.type() === "error" && /Content Security Policy|Uncaught|TypeError|ReferenceError/.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });
  page.setDefaultTimeout(15000);
  return { browser, context, page, problems };
}

async function login(page, user = env.user, password = env.password) {
  await page.goto(env.url + "#/login");
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("[data-test=user]").waitFor();
}

async function shot(page, name) {
  fs.mkdirSync(env.shots, { recursive: true });
  const w = page.viewportSize().width;
  const file = path.join(env.shots, `${name}-${w}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

// A request with the bearer token, outside the browser: a change made "by someone else".
async function apiAsToken(method, p, body) {
  const res = await fetch(new URL(p, env.url), {
    method,
    headers: { Authorization: `Bearer ${env.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  check(res.ok, `${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function waitFor(fn, timeoutMs, what, intervalMs = 100) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < timeoutMs) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Failure(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

// Runs scenarios[name](args) for `node script.cjs NAME 'JSON args'`; prints "RESULT <json>"
// with what the scenario returned, exits 1 on failure (with the reason on stderr).
function main(scenarios) {
  const [name, rawArgs] = process.argv.slice(2);
  const fn = scenarios[name];
  if (!fn) {
    process.stderr.write(`unknown scenario '${name}'; known: ${Object.keys(scenarios).join(", ")}\n`);
    process.exit(2);
  }
  const args = rawArgs ? JSON.parse(rawArgs) : {};
  const t0 = Date.now();
  fn(args).then((result) => {
    process.stdout.write(`RESULT ${JSON.stringify(result ?? {})}\n`);
    say(`${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    process.exit(0);
  }, (e) => {
    process.stderr.write(`${name} failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  });
}

// Opens a browser, logs in, runs fn(page), closes; page errors and CSP refusals fail the test.
async function withPanel(fn, width = 1280) {
  const b = await launch(width);
  try {
    await login(b.page);
    const r = await fn(b.page, b);
    check(b.problems.length === 0, `the page reported: ${b.problems.join("; ")}`);
    return r;
  } catch (e) {
    try {
      await shot(b.page, "failure");
    } catch {
      // nothing more to show
    }
    throw e;
  } finally {
    await b.browser.close();
  }
}

module.exports = { env, check, say, launch, login, shot, apiAsToken, waitFor, main, withPanel, Failure };
