// In a real browser: animated every-frame previews during a run, the opt-out setting, on-node help for
// missing models, ComfyUI's missing-models dialog from properties.models, and the one-size rule on Conditioning.
// It only collects facts; tests/comfyui/browser/test_frontend_previews.py makes the assertions.
//
//   NODE_PATH=/path/to/node_modules node tests/comfyui/browser/preview_check.mjs config.json
//
// config.json: {"url", "out", "chromium", "screenshot_dir", "prompt" (API graph with two samplers),
//               "samplers": ["ID", ...], "frames": F, "workflow" (a UI workflow path), "timeout_ms"}
import fs from "node:fs";
import path from "node:path";

import { closeDialogs, openDialogs, pageMentions, runInBrowser } from "./browser.mjs";

const SETTING_ID = "I2VGen-XL.AnimatedPreview";

// In the page: record every preview message and the run's end, from now on.
function startRecording() {
  const rec = { layouts: [], sheets: [], thumbnails: [], core: [], done: [], errors: [] };
  window.__i2vgenRec = rec;
  const api = window.comfyAPI.api.api;
  const t0 = performance.now();
  api.addEventListener("i2vgen-xl.preview", ({ detail }) => rec.layouts.push({ ...detail, t: performance.now() - t0 }));
  api.addEventListener("b_preview_with_metadata", ({ detail }) => {
    // jobId: the prompt id newer frontends read (and keep the image as the job's thumbnail when there is one)
    const item = { node: String(detail.nodeId), display: String(detail.displayNodeId), t: performance.now() - t0,
                   job: detail.jobId ?? null };
    const kind = { "i2vgen-xl-preview": rec.sheets, "i2vgen-xl-thumbnail": rec.thumbnails }[detail.displayNodeId];
    (kind ?? rec.core).push(item);
  });
  for (const kind of ["execution_success", "execution_error", "execution_interrupted"]) {
    api.addEventListener(kind, ({ detail }) => rec.done.push({ kind, t: performance.now() - t0,
                                                               error: detail?.exception_message ?? null }));
  }
}

// In the page: what the sampler nodes' preview widgets hold.
function describePreviews(ids) {
  const out = {};
  for (const id of ids) {
    const node = window.app.graph.getNodeById(Number(id)) ?? window.app.graph.getNodeById(id);
    const s = node?.__i2vgenPreview;
    out[id] = s ? {
      type: node.type, frames: s.frames.length, sheets: s.sheets, draws: s.draws, shown: s.shown.size,
      frame_size: s.frames.length ? [s.frames[0].width, s.frames[0].height] : null, step: s.step,
      widget_in_dom: document.body.contains(s.element), dataset: { ...s.element.dataset },
      canvas: [s.canvas.width, s.canvas.height],
    } : { type: node?.type ?? null, frames: 0 };
  }
  return out;
}

// In the page: the memory-estimate lines js/estimate.js keeps and draws under a node.
function describeEstimates(ids) {
  const out = {};
  for (const id of ids) {
    const node = window.app.graph.getNodeById(Number(id)) ?? window.app.graph.getNodeById(id);
    const texts = (node?.__i2vgenInfo?.sections?.get("estimate") ?? []).map((l) => l.text);
    out[id] = { type: node?.type ?? null, lines: node?.i2vgenMemoryText ?? null, drawn: texts,
                on_page: Boolean(node?.__i2vgenInfo?.element?.isConnected) };
  }
  return out;
}

async function runOnce(page, seed, timeout) {
  await page.evaluate(async (seed) => {
    window.__i2vgenRec.done.length = 0;
    for (const node of window.app.graph.nodes) {
      const w = node.widgets?.find((x) => x.name === "seed" || x.name === "noise_seed");
      if (w) w.value = seed;
    }
    await window.app.queuePrompt(0, 1);
  }, seed);
  await page.waitForFunction(() => window.__i2vgenRec.done.length > 0, null, { timeout });
}

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const timeout = config.timeout_ms ?? 300000;
  const report = { console: [], page_errors: [], setting_posts: [] };
  return runInBrowser(config, timeout, report, async (page) => {
    page.on("console", (m) => report.console.push({ type: m.type(), text: m.text(), url: m.location()?.url ?? "" }));
    page.on("pageerror", (e) => report.page_errors.push({ message: e.message, stack: e.stack ?? "" }));
    page.on("request", (r) => {
      if (r.url().includes("/i2vgen-xl/preview") && r.method() === "POST") {
        report.setting_posts.push(JSON.parse(r.postData() ?? "{}"));
      }
    });
    await page.goto(config.url, { waitUntil: "load" });
    await page.waitForFunction(() => Boolean(window.app?.graph && window.app?.canvas && window.comfyAPI &&
      Object.keys(window.LiteGraph.registered_node_types).some((t) => t.startsWith("I2VGenXL"))), null, { timeout });
    await page.waitForFunction(() => Boolean(window.comfyAPI.api.api.clientId), null, { timeout });
    await page.waitForTimeout(1500);
    await closeDialogs(page);
    report.extensions = await page.evaluate(() => (window.app.extensions ?? []).map((e) => e.name));
    report.setting_default = await page.evaluate((id) => window.app.extensionManager.setting.get(id), SETTING_ID);
    report.client_id = await page.evaluate(() => window.comfyAPI.api.api.clientId);

    // 1. a run with the setting on: both samplers get animated previews of every frame
    await page.evaluate(async (prompt) => { await window.app.loadApiJson(prompt, "i2vgen_preview_test"); },
                        config.prompt);
    await page.waitForTimeout(500);
    await closeDialogs(page);
    report.node_types = await page.evaluate(() => window.app.graph.nodes.map((n) => [String(n.id), n.type]));
    await page.evaluate(startRecording);
    await runOnce(page, 11, timeout);
    report.on_run = await page.evaluate(() => JSON.parse(JSON.stringify(window.__i2vgenRec)));
    report.previews_at_end = await page.evaluate(describePreviews, config.samplers);
    await page.waitForTimeout(2500); // keeps playing after the run
    report.previews_later = await page.evaluate(describePreviews, config.samplers);
    fs.mkdirSync(config.screenshot_dir, { recursive: true });
    await page.evaluate(() => { window.app.canvas.ds.scale = 0.8; window.app.canvas.setDirty(true, true); });
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(config.screenshot_dir, "animated_preview.png") });
    const first = config.samplers[0];
    const el = await page.evaluateHandle((id) => window.app.graph.getNodeById(Number(id))?.__i2vgenPreview?.element,
                                         first);
    if (el.asElement()) {
      await el.asElement().screenshot({ path: path.join(config.screenshot_dir, "animated_preview_widget.png") })
        .catch((err) => { report.widget_screenshot_error = String(err); });
    }

    // 1b. the memory estimate drawn under the conditioning node and the refine sampler after the run
    report.estimates = await page.evaluate(describeEstimates, config.estimate_nodes ?? []);

    // 2. opt-out: the setting off gives ComfyUI's own (first-frame) preview and no sheets
    const posted = page.waitForResponse((r) => r.url().includes("/i2vgen-xl/preview") &&
      r.request().method() === "POST" && JSON.parse(r.request().postData() ?? "{}").animated === false);
    await page.evaluate(async (id) => { await window.app.extensionManager.setting.set(id, false); }, SETTING_ID);
    await posted;
    await page.waitForTimeout(300);
    await page.evaluate(startRecording);
    await runOnce(page, 12, timeout);
    report.off_run = await page.evaluate(() => JSON.parse(JSON.stringify(window.__i2vgenRec)));
    await page.evaluate(async (id) => { await window.app.extensionManager.setting.set(id, true); }, SETTING_ID);
    await page.waitForTimeout(500);

    // 3. missing models: a workflow whose UNet and VAE files are not on the server
    const wf = JSON.parse(fs.readFileSync(config.workflow, "utf8"));
    const renamed = {};
    for (const node of wf.nodes) {
      if (["I2VGenXLModelLoader", "VAELoader"].includes(node.type) && node.properties?.models?.length) {
        const name = `missing_${node.widgets_values[0]}`;
        renamed[node.id] = name;
        node.widgets_values[0] = name;
        node.properties.models[0].name = name;
      }
    }
    await page.evaluate(async (graph) => { await window.app.loadGraphData(graph, true, true, "missing_models"); }, wf);
    await page.waitForTimeout(1500);
    report.missing_dialogs = await openDialogs(page);
    // newer frontends list missing models in a side panel instead of a dialog, behind an "N issues found" notice
    const details = page.getByRole("button", { name: "View details" });
    if (await details.count()) {
      await details.first().click().catch(() => {});
      await page.waitForTimeout(1500);
      await page.screenshot({ path: path.join(config.screenshot_dir, "missing_models_issues_panel.png") });
    }
    report.missing_mentions = [
      ...(await pageMentions(page, "missing_non_ema_0035000.pth")),
      ...(await pageMentions(page, "missing_i2vgen_xl_vae.fp16.safetensors")),
    ];
    await page.screenshot({ path: path.join(config.screenshot_dir, "missing_models_dialog.png") });
    await closeDialogs(page);
    report.missing_help = await page.evaluate(async ({ ids, packUrl }) => {
      const { missingHelp } = await import(`${packUrl}model_help.js`);
      const out = {};
      for (const node of window.app.graph.nodes) {
        const texts = (node.__i2vgenInfo?.sections?.get("help") ?? []).map((l) => l.text);
        out[node.id] = { type: node.type, renamed: ids.includes(String(node.id)), texts, help: missingHelp(node),
                         on_page: Boolean(node.__i2vgenInfo?.element?.isConnected) };
      }
      return out;
    }, { ids: Object.keys(renamed), packUrl: config.pack_url });
    await page.evaluate(() => { window.app.canvas.setDirty(true, true); window.app.canvas.draw(true, true); });
    await page.screenshot({ path: path.join(config.screenshot_dir, "missing_models_on_node.png") });

    // 4. one size: Conditioning with image_latent linked shows the Detail Encode size and greys its own out
    report.one_size = await page.evaluate(async (packUrl) => {
      const { sizeRule } = await import(`${packUrl}one_size.js`);
      const out = [];
      for (const node of window.app.graph.nodes.filter((n) => n.type === "I2VGenXLConditioning")) {
        const texts = (node.__i2vgenInfo?.sections?.get("size") ?? []).map((l) => l.text);
        out.push({ id: node.id, rule: sizeRule(node), texts,
                   disabled: node.widgets.filter((w) => ["width", "height"].includes(w.name)).map((w) => !!w.disabled) });
      }
      return out;
    }, config.pack_url);

    // 5. a run larger than the device's free memory: the conditioning node warns, naming what to change
    if (config.warning_prompt) {
      await page.evaluate(async (prompt) => { await window.app.loadApiJson(prompt, "i2vgen_memory_warning"); },
                          config.warning_prompt);
      await page.waitForTimeout(500);
      await closeDialogs(page);
      await page.evaluate(startRecording);
      await runOnce(page, 13, timeout);
      report.warning_run = await page.evaluate(() => JSON.parse(JSON.stringify(window.__i2vgenRec.done)));
      report.warning_estimates = await page.evaluate(describeEstimates, ["1"]);
      await page.evaluate(() => {
        const node = window.app.graph.getNodeById(1);
        window.app.canvas.ds.scale = 1.0;
        window.app.canvas.ds.offset = [-node.pos[0] + 40, -node.pos[1] + 60];
        window.app.canvas.setDirty(true, true);
        window.app.canvas.draw(true, true);
      });
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(config.screenshot_dir, "memory_warning_on_node.png") });
    }
  });
}

process.exitCode = await main();
