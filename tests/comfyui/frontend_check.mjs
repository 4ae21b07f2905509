// Drives ComfyUI's real frontend in headless Chromium (playwright-core) and writes what it saw as JSON.
// It only collects facts; tests/comfyui/test_frontend.py makes the assertions.
//
//   NODE_PATH=/path/to/node_modules node tests/comfyui/frontend_check.mjs config.json
//
// config.json: {"url": "http://127.0.0.1:PORT", "out": "report.json", "chromium": "/usr/bin/chromium",
//               "workflows": [{"name": "NAME", "path": "workflows/NAME.json"}, ...],
//               "snap_cases": [[width, height], ...], "timeout_ms": 120000}
import fs from "node:fs";

import { closeDialogs as close, openDialogs as open, runInBrowser } from "./browser.mjs";

const openDialogs = (page) => open(page, 600);
const closeDialogs = (page) => close(page, { hideModals: true });
const MISSING_NODE_TYPE = "I2VGenXLNoSuchNodeForTheTest";

function summarise(value) {
  if (value === null || ["string", "number", "boolean"].includes(typeof value)) {
    return value;
  }
  if (value === undefined) {
    return null;
  }
  try {
    return JSON.parse(JSON.stringify(value));
  } catch {
    return String(value);
  }
}

// Runs in the page: load one UI-format workflow and describe the graph the frontend made of it.
async function loadAndDescribe({ graph, name, toPrompt }) {
  const app = window.app;
  const result = { name, error: null, nodes: [], prompt: null, draw_error: null, foreground_text: {} };
  try {
    await app.loadGraphData(graph, true, true, name);
  } catch (err) {
    result.error = `loadGraphData: ${err?.stack ?? err}`;
    return result;
  }
  for (const node of app.graph.nodes) {
    let serialized = null;
    try {
      serialized = node.serialize().widgets_values ?? null;
    } catch (err) {
      serialized = `serialize failed: ${err}`;
    }
    result.nodes.push({
      id: node.id,
      type: node.type,
      title: node.title,
      registered: Boolean(window.LiteGraph.registered_node_types[node.type]),
      has_errors: Boolean(node.has_errors),
      color: node.color ?? null,
      bgcolor: node.bgcolor ?? null,
      widgets: (node.widgets ?? []).map((w) => ({ name: w.name, type: w.type, value: w.value })),
      widgets_values: serialized,
    });
    // What our extension draws above the node (I2VGenXLLatentUpscale's refiner-size hint).
    if (typeof node.onDrawForeground === "function") {
      const ctx = document.createElement("canvas").getContext("2d");
      const texts = [];
      const fillText = ctx.fillText.bind(ctx);
      ctx.fillText = (text, ...rest) => {
        texts.push(String(text));
        return fillText(text, ...rest);
      };
      try {
        node.onDrawForeground(ctx, app.canvas);
        result.foreground_text[node.id] = texts;
      } catch (err) {
        result.foreground_text[node.id] = [`onDrawForeground threw: ${err?.stack ?? err}`];
      }
    }
  }
  try {
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
  } catch (err) {
    result.draw_error = String(err?.stack ?? err);
  }
  if (toPrompt) {
    try {
      const { output } = await app.graphToPrompt();
      result.prompt = output;
    } catch (err) {
      result.error = `graphToPrompt: ${err?.stack ?? err}`;
    }
  }
  return result;
}

// Runs in the page: the hint text our extension draws on a fresh Latent Upscale node for each (width, height).
function snapTexts(cases) {
  const node = window.LiteGraph.createNode("I2VGenXLLatentUpscale");
  if (!node) {
    return { error: "LiteGraph.createNode('I2VGenXLLatentUpscale') returned nothing" };
  }
  const set = (name, value) => {
    const widget = node.widgets?.find((w) => w.name === name);
    if (!widget) {
      throw new Error(`I2VGenXLLatentUpscale has no widget ${name}`);
    }
    widget.value = value;
  };
  const out = [];
  for (const [width, height] of cases) {
    set("width", width);
    set("height", height);
    set("snap_for_refiner", true);
    const texts = [];
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.fillText = (text) => texts.push(String(text));
    node.onDrawForeground?.(ctx, window.app.canvas);
    out.push({ width, height, texts });
  }
  set("snap_for_refiner", false);
  const texts = [];
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.fillText = (text) => texts.push(String(text));
  node.onDrawForeground?.(ctx, window.app.canvas);
  return { cases: out, texts_when_off: texts };
}

// Runs in the page: load a workflow; each node's box (title and body, after the model help has grown a loader whose
// files are missing) and the box of every text the pack draws around it (the memory estimate, given as
// `estimateLines`, under Conditioning / Refine Sampler; size hints in the title bar); every node box that overlaps
// another node's box, and every drawn text that overlaps another node's box.
async function layoutCheck({ graph, name, estimateLines }) {
  const app = window.app;
  await app.loadGraphData(graph, true, true, name);
  const title = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
  let boxes = [];
  for (let pass = 0; pass < 2; pass++) { // the model help resizes its node while it draws
    boxes = [];
    for (const node of app.graph.nodes) {
      if (estimateLines && ["I2VGenXLConditioning", "I2VGenXLRefineSampler"].includes(node.type)) {
        node.i2vgenMemoryText = estimateLines;
      }
      const ctx = document.createElement("canvas").getContext("2d");
      const texts = [];
      const fillText = ctx.fillText.bind(ctx);
      ctx.fillText = (text, x, y, ...rest) => {
        const width = ctx.measureText(String(text)).width;
        const left = ctx.textAlign === "right" || ctx.textAlign === "end" ? x - width
          : ctx.textAlign === "center" ? x - width / 2 : x;
        texts.push({ text: String(text), x: node.pos[0] + left, y: node.pos[1] + y - 11, w: width, h: 14 });
        return fillText(text, x, y, ...rest);
      };
      node.onDrawForeground?.(ctx, app.canvas);
      boxes.push({ id: node.id, type: node.type, x: node.pos[0], y: node.pos[1] - title, w: node.size[0],
                   h: node.size[1] + title, texts });
    }
  }
  const hit = (a, b) => Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x) > 0.5 &&
    Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y) > 0.5;
  const overlaps = [];
  for (const a of boxes) {
    for (const b of boxes) {
      if (a === b) {
        continue;
      }
      if (a.id < b.id && hit(a, b)) {
        overlaps.push({ node: `${a.id} ${a.type}`, other: `${b.id} ${b.type}` });
      }
      for (const t of a.texts) {
        if (hit(t, b)) {
          overlaps.push({ text: t.text, of: `${a.id} ${a.type}`, other: `${b.id} ${b.type}` });
        }
      }
    }
  }
  return { boxes: boxes.map(({ texts, ...box }) => ({ ...box, texts: texts.length })), overlaps };
}

// A copy of a UI workflow whose every model file (the widgets that properties.models names) is not on the server.
function withMissingModels(graph) {
  const copy = JSON.parse(JSON.stringify(graph));
  for (const node of copy.nodes) {
    for (const model of node.properties?.models ?? []) {
      const index = node.widgets_values?.indexOf(model.name) ?? -1;
      if (index >= 0) {
        node.widgets_values[index] = `missing_${model.name}`;
        model.name = `missing_${model.name}`;
      }
    }
  }
  return copy;
}

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const timeout = config.timeout_ms ?? 120000;
  const report = { console: [], page_errors: [], failed_requests: [], extension_responses: [], workflows: {} };
  return runInBrowser(config, timeout, report, async (page) => {
    page.on("console", (msg) =>
      report.console.push({ type: msg.type(), text: msg.text(), url: msg.location()?.url ?? "" }),
    );
    page.on("pageerror", (err) => report.page_errors.push({ message: err.message, stack: err.stack ?? "" }));
    page.on("requestfailed", (req) =>
      report.failed_requests.push({ url: req.url(), error: req.failure()?.errorText ?? "" }),
    );
    page.on("response", (res) => {
      if (res.url().includes("/extensions/") && !res.url().includes("/extensions/core/")) {
        report.extension_responses.push({ url: res.url(), status: res.status() });
      }
    });

    await page.goto(config.url, { waitUntil: "load" });
    await page.waitForFunction(
      () => Boolean(window.app?.graph && window.app?.canvas && window.comfyAPI && window.LiteGraph),
      null,
      { timeout },
    );
    // Extensions are imported while the app sets up; node types are registered after them.
    await page.waitForFunction(
      () => Object.keys(window.LiteGraph.registered_node_types).some((t) => t.startsWith("I2VGenXL")),
      null,
      { timeout },
    ).catch(() => {});
    await page.waitForTimeout(1000);
    Object.assign(
      report,
      await page.evaluate(() => ({
        frontend_version: window.__COMFYUI_FRONTEND_VERSION__ ?? null,
        extensions: (window.app.extensions ?? []).map((e) => e.name),
        registered_node_types: Object.keys(window.LiteGraph.registered_node_types),
      })),
    );
    report.dialogs_at_start = await openDialogs(page);
    await closeDialogs(page);

    // Negative control: a workflow with an unknown node must be seen as such (else the checks below prove nothing).
    if (config.workflows.length) {
      const graph = JSON.parse(fs.readFileSync(config.workflows[0].path, "utf8"));
      graph.nodes[0].type = MISSING_NODE_TYPE;
      const control = await page.evaluate(loadAndDescribe, { graph, name: "control", toPrompt: false });
      await page.waitForTimeout(500);
      control.dialogs = await openDialogs(page);
      control.missing_type = MISSING_NODE_TYPE;
      report.control = control;
      await closeDialogs(page);
    }

    for (const { name, path: file } of config.workflows) {
      const graph = JSON.parse(fs.readFileSync(file, "utf8"));
      const described = await page.evaluate(loadAndDescribe, { graph, name, toPrompt: true });
      await page.waitForTimeout(300);
      described.dialogs = await openDialogs(page);
      report.workflows[name] = described;
      await closeDialogs(page);
    }
    report.layouts = {};
    for (const { name, path: file } of config.workflows) {
      const graph = JSON.parse(fs.readFileSync(file, "utf8"));
      const lines = config.estimate_lines ?? null;
      const present = await page.evaluate(layoutCheck, { graph, name, estimateLines: lines });
      const missing = await page.evaluate(layoutCheck, { graph: withMissingModels(graph), name, estimateLines: lines });
      await page.waitForTimeout(300);
      await closeDialogs(page);
      report.layouts[name] = { present, missing };
    }
    // The memory estimate of I2VGen-XL Conditioning before any run, and again after its length and the Detail
    // Encode's size change (js/estimate.js asks the server as the widgets change).
    if (config.live_estimate_workflow) {
      const graph = JSON.parse(fs.readFileSync(config.live_estimate_workflow, "utf8"));
      await page.evaluate(async (g) => { await window.app.loadGraphData(g, true, true, "live_estimate"); }, graph);
      await closeDialogs(page);
      const read = async (change) => {
        await page.evaluate((c) => {
          const app = window.app;
          if (c) {
            const node = app.graph.nodes.find((n) => n.type === c.type);
            const w = node.widgets.find((x) => x.name === c.widget);
            w.value = c.value;
            w.callback?.(c.value);
          }
          app.canvas.setDirty(true, true);
          app.canvas.draw(true, true);
        }, change);
        await page.waitForTimeout(1500);
        return page.evaluate(() => {
          window.app.canvas.draw(true, true);
          const of = (type) => {
            const node = window.app.graph.nodes.find((n) => n.type === type);
            return { lines: node.i2vgenMemoryText ?? null, query: node.i2vgenEstimateQuery ?? null };
          };
          return { ...of("I2VGenXLConditioning"), refine: of("I2VGenXLRefineSampler") };
        });
      };
      report.live_estimate = {
        loaded: await read(null),
        length_48: await read({ type: "I2VGenXLConditioning", widget: "length", value: 48 }),
        detail_320: await read({ type: "I2VGenXLDetailEncode", widget: "width", value: 320 }),
        windows_16: await read({ type: "I2VGenXLRefineSampler", widget: "context_frames", value: 16 }),
      };
    }
    report.snap = await page.evaluate(snapTexts, config.snap_cases ?? []);
  });
}

process.exitCode = await main();
