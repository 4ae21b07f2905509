// What the browser checks share (frontend_check.mjs, preview_check.mjs): Debian's Chromium through playwright-core,
// a hermetic page on the test server, and ComfyUI's dialogs.
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

// ES modules ignore NODE_PATH; a CommonJS require honours it (and the global folders).
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--no-first-run", "--disable-sync"];

// The text of every dialog on screen (at most `maxChars` of each).
export async function openDialogs(page, maxChars = 2000) {
  return page.evaluate((limit) =>
    [...document.querySelectorAll(".p-dialog, .comfy-modal")]
      .filter((el) => el.offsetParent !== null || getComputedStyle(el).display !== "none")
      .map((el) => el.innerText.slice(0, limit)), maxChars);
}

// The texts of the innermost visible elements outside the canvas that name `needle` (what a user reads about it).
export async function pageMentions(page, needle) {
  return page.evaluate((text) => [...document.querySelectorAll("body *")]
    .filter((el) => el.children.length === 0 || [...el.childNodes].some((c) => c.nodeType === 3 && c.textContent.includes(text)))
    .filter((el) => el.textContent.includes(text) && el.checkVisibility?.() !== false && el.tagName !== "SCRIPT")
    .map((el) => (el.closest("[class*=panel],[class*=dialog],[role=dialog],aside,section") ?? el).innerText.slice(0, 600)),
  needle);
}

// Close what dialogs are open (Escape, close buttons; with `hideModals` also hide the old-style .comfy-modal).
export async function closeDialogs(page, { hideModals = false } = {}) {
  for (let i = 0; i < 5 && (await openDialogs(page)).length; i++) {
    await page.keyboard.press("Escape");
    await page.waitForTimeout(200);
    await page.evaluate((hide) => {
      for (const button of document.querySelectorAll(".p-dialog-close-button, .p-dialog-header-close")) {
        button.click();
      }
      if (hide) {
        for (const modal of document.querySelectorAll(".comfy-modal")) {
          modal.style.display = "none";
        }
      }
    }, hideModals);
    await page.waitForTimeout(200);
  }
}

// Open config.url's origin only (the frontend also calls api.comfy.org) in a fresh Chromium profile, run
// `body(page)`, record a failure as report.fatal, then close and write `report` to config.out; the exit code.
export async function runInBrowser(config, timeout, report, body) {
  // before the page opens: no first-run template browser over the canvas, and the node renderer under test
  // (config.mode "vue" = Nodes 2.0, else the classic canvas), as a user's saved settings would have them
  const settings = { "Comfy.TutorialCompleted": true, "Comfy.VueNodes.Enabled": config.mode === "vue" };
  for (const [id, value] of Object.entries(settings)) {
    await fetch(`${new URL(config.url).origin}/settings/${encodeURIComponent(id)}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(value),
    }).catch(() => {});
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "i2vgen-chromium-"));
  let context = null;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: config.chromium ?? "/usr/bin/chromium", headless: true, args: CHROMIUM_FLAGS,
      viewport: { width: 1600, height: 1000 },
    });
    const origin = new URL(config.url).origin;
    await context.route((url) => url.origin !== origin, (route) => route.abort());
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(timeout);
    await body(page);
  } catch (err) {
    report.fatal = String(err?.stack ?? err);
  } finally {
    await context?.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  fs.writeFileSync(config.out, JSON.stringify(report, null, 1));
  return report.fatal ? 1 : 0;
}
