// I2VGen-XL node pack: helpers shared by the extensions (a module of exports only: ComfyUI imports every file of
// the web folder, and this one registers nothing).
//
// Everything here uses only what both frontends offer (1.27.10, pinned by ComfyUI 0.3.64, and 1.58): extension
// hooks instead of replaced LGraphNode prototype methods, node.getInputNode instead of input.link/graph.links,
// app.rootGraph, app.extensionManager.setting, and DOM widgets, which the classic canvas overlays on the node and
// Nodes 2.0 (the Vue renderer) mounts inside it, so on-node text shows in both.
import { app } from "../../scripts/app.js";

// The graph the user sees at the top level (app.graph is deprecated in newer frontends).
export function rootGraph() {
  return app.rootGraph ?? app.graph;
}

// Register `extension` once per page. ComfyUI may serve this folder twice (WEB_DIRECTORY under the folder name and
// pyproject's [tool.comfy] web under the project name, when the two differ), and a second registration is an error.
export function registerOnce(extension) {
  const seen = (globalThis.__i2vgenXLExtensions ??= new Set());
  if (seen.has(extension.name)) {
    return false;
  }
  seen.add(extension.name);
  app.registerExtension(extension);
  return true;
}

// A setting's value from the settings store, or `fallback` when it is unset or the store is not there yet.
export function settingValue(id, fallback) {
  const value = app.extensionManager?.setting?.get?.(id);
  return value === undefined || value === null ? fallback : value;
}

// The node whose execution id is `executionId` ("12" in the root graph, "3:12" inside subgraph node 3), or null.
// Node ids are numbers in older frontends and strings in newer ones: both are tried.
export function findNode(executionId) {
  let graph = rootGraph();
  let node = null;
  for (const part of String(executionId).split(":")) {
    node = graph?.getNodeById?.(part) ?? graph?.getNodeById?.(Number(part)) ?? null;
    if (!node) {
      return null;
    }
    graph = node.subgraph ?? graph;
  }
  return node;
}

// The node linked into `node`'s input `inputName`, or null.
export function linkedSource(node, inputName) {
  const slot = node?.findInputSlot?.(inputName) ?? -1;
  return slot >= 0 ? node.getInputNode?.(slot) ?? null : null;
}

// `node`'s widget called `name`, or undefined.
export function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

// The video size an I2VGen-XL Conditioning node will use (nodes/encode.py: size_from_image_latent): its own
// width/height, or with image_latent linked the size of the I2VGen-XL Detail Encode it comes from.
// {linked, width, height}; width/height are null when the linked source's size is not known before a run.
export function conditioningSize(node) {
  const source = linkedSource(node, "image_latent");
  if (!source) {
    return { linked: false, width: widget(node, "width")?.value ?? null, height: widget(node, "height")?.value ?? null };
  }
  if (source.type === "I2VGenXLDetailEncode") {
    return { linked: true, width: widget(source, "width")?.value ?? null, height: widget(source, "height")?.value ?? null };
  }
  return { linked: true, width: null, height: null };
}

// The one mirrored copy of a Python rule: i2vgen_core/sizes.py snap_refiner_size (width to a multiple of 64 with
// halves rounded up; latent height to the nearest value = 2 mod 8, ties to the larger). tests/core/test_sizes.py runs
// this function under node against the Python over a grid of sizes.
export function snapForRefiner(width, height) {
  const w = Math.max(64, Math.round(width / 64) * 64);
  const target = height / 8;
  let best = null;
  for (let lat = 2; lat <= Math.ceil(target) + 16; lat += 8) {
    const key = Math.abs(lat - target);
    if (best === null || key < best.key || (key === best.key && lat > best.lat)) {
      best = { key, lat };
    }
  }
  return [w, best.lat * 8];
}

// ------------------------------------------------------------------------------------------------ on-node text
// One DOM widget per node ("i2vgen_info") holds every text the pack shows on it, in sections: the one-size hint,
// the refiner size, the memory estimate and the missing-model help. It exists only while some section has text.
const INFO_WIDGET = "i2vgen_info";
const SECTION_ORDER = ["size", "refiner", "estimate", "help"];
const TONES = { info: "#9ab", ok: "#8a9", warn: "#e8a33d", help: "#e8a23a" };
const LINE_PX = 14;
const FONT = "11px sans-serif";

let measurer = null;

// The height `lines` take when laid out `width` pixels wide in the panel's font: a hidden copy of the panel on the
// page measures it, so the canvas renderer (which clips a DOM widget to the height the node gives it) shows every
// row, with no feedback from where the canvas last placed the real panel.
function textHeight(lines, width) {
  if (!measurer) {
    measurer = document.createElement("div");
    measurer.setAttribute("aria-hidden", "true");
    document.body.appendChild(measurer);
  }
  measurer.style.cssText = `position:absolute;left:-10000px;top:0;visibility:hidden;width:${width}px;font:${FONT};` +
    `line-height:${LINE_PX}px;white-space:normal;overflow-wrap:anywhere;`;
  measurer.replaceChildren(...lines.map((line) => {
    const row = document.createElement("div");
    row.textContent = line.text;
    return row;
  }));
  return measurer.offsetHeight;
}

function infoState(node) {
  return (node.__i2vgenInfo ??= { sections: new Map(), signature: "", widget: null, element: null });
}

// The panel's height in the classic canvas, where the node sets it: its rows wrapped at the node's width.
function panelHeight(node, state) {
  const width = Math.max(60, (node.size?.[0] ?? 200) - 36);
  const key = `${width}:${state.signature}`;
  if (state.heightKey !== key) { // the canvas asks on every frame: lay the text out only when it or the width changed
    state.heightKey = key;
    // + the panel's padding and the margin the canvas takes off a DOM widget above and below
    state.height = textHeight([...state.sections.values()].flat(), width) + 6 + 2 * (state.widget?.margin ?? 10);
  }
  return state.height;
}

// Grow `node` until its panel shows all of its text (never shrink what the user sized).
function fitPanel(node) {
  const need = node.computeSize?.();
  if (need && node.size && need[1] > node.size[1]) {
    node.setSize?.([node.size[0], need[1]]);
    node.setDirtyCanvas?.(true, true);
  }
}

function createPanel(node, state) {
  const element = document.createElement("div");
  element.className = "i2vgen-xl-info";
  element.style.cssText = `font:${FONT};line-height:${LINE_PX}px;padding:2px 4px;box-sizing:border-box;` +
    "white-space:normal;overflow-wrap:anywhere;overflow:hidden;pointer-events:none;";
  const w = node.addDOMWidget(INFO_WIDGET, "i2vgen_info", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => panelHeight(node, state),
    getHeight: () => panelHeight(node, state),
  });
  w.serialize = false;
  state.widget = w;
  state.element = element;
}

function removePanel(node, state) {
  if (node.widgets?.includes(state.widget)) {
    node.removeWidget(state.widget); // LGraphNode.removeWidget, in both frontends: also unregisters the DOM widget
  }
  state.element?.remove();
  state.widget = null;
  state.element = null;
}

function render(state) {
  state.element.replaceChildren();
  for (const key of SECTION_ORDER) {
    for (const line of state.sections.get(key) ?? []) {
      const row = document.createElement("div");
      row.dataset.section = key;
      row.style.color = TONES[line.tone] ?? TONES.info;
      row.textContent = line.text;
      state.element.appendChild(row);
    }
  }
}

// Show `lines` ([{text, tone}], tone one of info/ok/warn/help) as section `key` of `node`'s on-node text; [] clears
// the section. Cheap when nothing changed, so callers may call it on every refresh.
export function setInfo(node, key, lines) {
  const state = infoState(node);
  if (lines?.length) {
    state.sections.set(key, lines.map((l) => ({ text: String(l.text), tone: l.tone ?? "info" })));
  } else {
    state.sections.delete(key);
  }
  const signature = JSON.stringify(SECTION_ORDER.map((k) => state.sections.get(k) ?? null));
  if (signature === state.signature && (state.widget !== null) === (state.sections.size > 0)) {
    return;
  }
  state.signature = signature;
  if (!state.sections.size) {
    if (state.widget) {
      removePanel(node, state);
      node.setDirtyCanvas?.(true, true);
    }
    return;
  }
  if (!state.widget) {
    createPanel(node, state);
  }
  render(state);
  fitPanel(node);
  node.setDirtyCanvas?.(true, true);
}

// ------------------------------------------------------------------------------------------------ refresh
// The on-node text follows the graph as it is edited: widget values, links, nodes added or pasted, whatever changed
// them. Neither renderer gives one event for all of that, so one timer walks the graph's nodes and each extension's
// updater recomputes its text, which setInfo only applies when it changed.
const REFRESH_MS = 300;
const updaters = [];
let timer = null;

function allNodes(graph, depth = 0, out = []) {
  for (const node of graph?.nodes ?? (graph?._nodes ?? [])) {
    out.push(node);
    if (node.subgraph && depth < 8) {
      allNodes(node.subgraph, depth + 1, out);
    }
  }
  return out;
}

// Refresh every node's text now (the timer does this every REFRESH_MS; tests call it to skip the wait).
export function refreshAll() {
  const nodes = allNodes(rootGraph());
  for (const node of nodes) {
    if (node.__i2vgenInfo?.element) {
      fitPanel(node); // the text may wrap to more rows after the node was narrowed
    }
    for (const { types, update } of updaters) {
      if (types(node)) {
        try {
          update(node);
        } catch (err) {
          console.warn("I2VGen-XL: on-node text failed", err);
        }
      }
    }
  }
}

// Call `update(node)` for every node for which `types(node)` holds, on each refresh.
export function onRefresh(types, update) {
  updaters.push({ types, update });
  if (timer === null) {
    timer = setInterval(() => {
      if (!document.hidden) {
        refreshAll();
      }
    }, REFRESH_MS);
  }
}
