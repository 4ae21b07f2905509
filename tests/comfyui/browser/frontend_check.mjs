// Drives ComfyUI's real frontend in headless Chromium (playwright-core) and writes what it saw as JSON.
// It only collects facts; tests/comfyui/browser/test_frontend.py makes the assertions.
//
//   NODE_PATH=/path/to/node_modules node tests/comfyui/browser/frontend_check.mjs config.json
//
// config.json: {"url": "http://127.0.0.1:PORT", "out": "report.json", "chromium": "/usr/bin/chromium",
//               "workflows": [{"name": "NAME", "path": "workflows/NAME.json"}, ...],
//               "snap_cases": [[width, height], ...], "timeout_ms": 120000}
import fs from "node:fs";

import { closeDialogs as close, openDialogs as open, pageMentions, runInBrowser } from "./browser.mjs";

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
  const result = { name, error: null, nodes: [], prompt: null, draw_error: null, info: {} };
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
  }
  try {
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
  } catch (err) {
    result.draw_error = String(err?.stack ?? err);
  }
  await new Promise((resolve) => setTimeout(resolve, 1000)); // the on-node text refreshes on a timer
  for (const node of app.graph.nodes) {
    const sections = node.__i2vgenInfo?.sections;
    if (sections?.size) {
      result.info[node.id] = Object.fromEntries([...sections].map(([key, lines]) => [key, lines.map((l) => l.text)]));
    }
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

// Runs in the page: the refiner-size text js/i2vgen_xl.js gives a fresh Latent Upscale node for each (width, height).
async function snapTexts({ cases, packUrl }) {
  const { refinerLine } = await import(`${packUrl}i2vgen_xl.js`);
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
  const texts = () => {
    const line = refinerLine(node);
    return line ? [line.text] : [];
  };
  const out = [];
  for (const [width, height] of cases) {
    set("width", width);
    set("height", height);
    set("snap_for_refiner", true);
    out.push({ width, height, texts: texts() });
  }
  set("snap_for_refiner", false);
  return { cases: out, texts_when_off: texts() };
}

// Runs in the page: load a workflow, let the pack's on-node text appear (the model help on loaders whose files are
// missing, the size hints), put the largest memory estimate (`estimateLines`, with a warning) on Conditioning and
// Refine Sampler; each node's box (title and body, grown to hold its text) and every pair of boxes that overlap.
async function layoutCheck({ graph, name, estimateLines, packUrl }) {
  const app = window.app;
  const { refreshAll, setInfo } = await import(`${packUrl}common.js`);
  await app.loadGraphData(graph, true, true, name);
  await new Promise((resolve) => setTimeout(resolve, 1200)); // the live estimates arrive
  for (const node of app.graph.nodes) {
    if (estimateLines && ["I2VGenXLConditioning", "I2VGenXLRefineSampler"].includes(node.type)) {
      setInfo(node, "estimate", estimateLines.map((text) => ({ text, tone: text.startsWith("WARNING") ? "warn" : "info" })));
    }
  }
  refreshAll();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const title = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
  const boxes = app.graph.nodes.map((node) => ({
    id: node.id, type: node.type, x: node.pos[0], y: node.pos[1] - title, w: node.size[0], h: node.size[1] + title,
    texts: [...(node.__i2vgenInfo?.sections?.values() ?? [])].reduce((n, lines) => n + lines.length, 0),
  }));
  const hit = (a, b) => Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x) > 0.5 &&
    Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y) > 0.5;
  const overlaps = [];
  for (const a of boxes) {
    for (const b of boxes) {
      if (String(a.id) < String(b.id) && hit(a, b)) {
        overlaps.push({ node: `${a.id} ${a.type}`, other: `${b.id} ${b.type}` });
      }
    }
  }
  return { boxes, overlaps };
}

// Runs in the page: bring node `id` to the middle of the screen at zoom 1 and say what of its on-node text is really
// on screen: the panel element's box, whether it lies inside the node's box on screen (the Vue node's element in
// Nodes 2.0, the node's canvas box otherwise), whether it is the topmost element at its centre (nothing covers it),
// its text, and (Conditioning) whether width/height show as disabled.
async function onScreen({ id, mode }) {
  const app = window.app;
  const node = app.graph.getNodeById(id) ?? app.graph.getNodeById(Number(id));
  const ds = app.canvas.ds;
  ds.scale = 1;
  const rect = app.canvas.canvas.getBoundingClientRect();
  ds.offset[0] = rect.width / 2 / ds.scale - node.pos[0] - node.size[0] / 2;
  ds.offset[1] = rect.height / 2 / ds.scale - node.pos[1] - node.size[1] / 2;
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
  await new Promise((resolve) => setTimeout(resolve, 400));
  const panel = node.__i2vgenInfo?.element ?? null;
  const title = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
  const nodeElement = document.querySelector(`[data-node-id="${node.id}"]`);
  const box = (r) => ({ x: r.left, y: r.top, w: r.width, h: r.height });
  const nodeBox = mode === "vue" && nodeElement ? box(nodeElement.getBoundingClientRect())
    : { x: (node.pos[0] + ds.offset[0]) * ds.scale + rect.left, y: (node.pos[1] - title + ds.offset[1]) * ds.scale + rect.top,
        w: node.size[0] * ds.scale, h: (node.size[1] + title) * ds.scale };
  const out = { id: String(node.id), type: node.type, node_box: nodeBox, has_panel: Boolean(panel), panel_box: null,
                connected: false, inside: false, on_top: false, text: null, disabled: null };
  if (panel) {
    const r = panel.getBoundingClientRect();
    out.panel_box = box(r);
    out.connected = panel.isConnected;
    out.text = panel.innerText;
    out.visible = panel.isConnected && r.width > 20 && r.height > 8 && (panel.checkVisibility?.() ?? true);
    out.inside = r.left >= nodeBox.x - 2 && r.top >= nodeBox.y - 2 && r.right <= nodeBox.x + nodeBox.w + 2 &&
      r.bottom <= nodeBox.y + nodeBox.h + 2;
    // the panel lets pointer events through to the node; take them for the probe so it can be hit
    const before = panel.style.pointerEvents;
    panel.style.pointerEvents = "auto";
    const hit = document.elementFromPoint(r.left + Math.min(r.width / 2, 40), r.top + Math.min(r.height / 2, 7));
    panel.style.pointerEvents = before;
    out.on_top = Boolean(hit && panel.contains(hit));
    out.clipped = panel.scrollHeight > panel.clientHeight + 1;
  }
  if (node.type === "I2VGenXLConditioning") {
    const widgets = ["width", "height"].map((n) => node.widgets.find((w) => w.name === n));
    out.disabled = { widgets: widgets.map((w) => Boolean(w?.disabled)) };
    if (mode === "vue" && nodeElement) {
      out.disabled.dom = nodeElement.querySelectorAll("input:disabled, [aria-disabled='true'], .p-disabled").length;
    }
  }
  return out;
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
    // the node renderer under test: the classic canvas or Nodes 2.0 (Vue)
    report.mode = config.mode ?? "canvas";
    report.mode_set = await page.evaluate(async (vue) => {
      await window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", vue);
      return window.app.extensionManager.setting.get("Comfy.VueNodes.Enabled");
    }, report.mode === "vue");
    await page.waitForTimeout(500);
    await closeDialogs(page);

    // Negative control: a workflow with an unknown node must be seen as such (else the checks below prove nothing).
    if (config.workflows.length) {
      const graph = JSON.parse(fs.readFileSync(config.workflows[0].path, "utf8"));
      graph.nodes[0].type = MISSING_NODE_TYPE;
      const control = await page.evaluate(loadAndDescribe, { graph, name: "control", toPrompt: false });
      await page.waitForTimeout(500);
      control.dialogs = await openDialogs(page);
      control.missing_type = MISSING_NODE_TYPE;
      // newer frontends list missing nodes in a side panel ("Issues"/errors tab) instead of a dialog
      control.mentions = await pageMentions(page, MISSING_NODE_TYPE);
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
      const packUrl = config.pack_url;
      const present = await page.evaluate(layoutCheck, { graph, name, estimateLines: lines, packUrl });
      const missing = await page.evaluate(layoutCheck, { graph: withMissingModels(graph), name, estimateLines: lines,
                                                         packUrl });
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
    report.snap = await page.evaluate(snapTexts, { cases: config.snap_cases ?? [], packUrl: config.pack_url });
    // What of the on-node text is really on screen, node by node, in the workflow with every model file missing
    // (so the loaders show their help too); a screenshot of each kind of node.
    if (config.on_screen_workflow) {
      const graph = withMissingModels(JSON.parse(fs.readFileSync(config.on_screen_workflow, "utf8")));
      await page.evaluate(async (g) => { await window.app.loadGraphData(g, true, true, "on_screen"); }, graph);
      await page.waitForTimeout(1500);
      await closeDialogs(page);
      const ids = await page.evaluate(() => window.app.graph.nodes.filter((n) => n.__i2vgenInfo?.sections?.size)
        .map((n) => String(n.id)));
      report.on_screen = [];
      const shot = new Set();
      for (const id of ids) {
        const seen = await page.evaluate(onScreen, { id, mode: report.mode });
        report.on_screen.push(seen);
        if (config.screenshot_dir && !shot.has(seen.type)) {
          shot.add(seen.type);
          const b = seen.node_box;
          await page.screenshot({ path: `${config.screenshot_dir}/${report.mode}-${seen.type}.png`,
                                  clip: { x: Math.max(0, b.x - 20), y: Math.max(0, b.y - 20), width: b.w + 40,
                                          height: b.h + 40 } }).catch(() => {});
        }
      }
    }
  });
}

process.exitCode = await main();
