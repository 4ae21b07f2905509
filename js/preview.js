// I2VGen-XL node pack: animated previews of every frame while sampling (nodes/preview.py is the server side).
//
// ComfyUI shows only frame 0 of a video latent while sampling. With the setting "I2VGen-XL.AnimatedPreview" on (the
// default), this extension tells the server (POST /i2vgen-xl/preview with its client id); the server then sends, per
// sampling step of a sampler on an I2VGen-XL MODEL (the pack's samplers and KSampler alike), a JSON event
// "i2vgen-xl.preview" {node, frames, cols, rows, fps, step} followed by one sprite-sheet image of all frames whose
// display node id is "i2vgen-xl-preview" (so ComfyUI's own node preview ignores it). Here the sheet is cut into its
// frames and played in a loop in a canvas widget on the sampler node. Setting off: ComfyUI's first-frame preview.
import { api } from "../../scripts/api.js";
import { findNode, registerOnce, settingValue as storedSetting } from "./common.js";

const EXTENSION_NAME = "I2VGenXL.AnimatedPreview";
const SETTING_ID = "I2VGen-XL.AnimatedPreview";
const EVENT = "i2vgen-xl.preview";
const SHEET_NODE_ID = "i2vgen-xl-preview";
const ROUTE = "/i2vgen-xl/preview";
const WIDGET_NAME = "i2vgen_animated_preview";

const pendingLayouts = []; // layouts announced, in order; each sheet takes the first one for its node

function settingValue() {
  return storedSetting(SETTING_ID, true) !== false;
}

let lastSent = null;
async function syncSetting(force = false, value = undefined) {
  const clientId = api.clientId ?? api.initialClientId;
  if (!clientId) {
    return;
  }
  const animated = value === undefined ? settingValue() : value !== false;
  const key = `${clientId}:${animated}`;
  if (!force && key === lastSent) {
    return;
  }
  lastSent = key;
  try {
    await api.fetchApi(ROUTE, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ client_id: clientId, animated }),
    });
  } catch (err) {
    lastSent = null;
    console.warn(`${EXTENSION_NAME}: could not send the preview setting`, err);
  }
}

function previewState(node) {
  if (node.__i2vgenPreview) {
    return node.__i2vgenPreview;
  }
  const element = document.createElement("div");
  element.className = "i2vgen-xl-animated-preview";
  element.style.cssText = "width:100%;height:100%;display:flex;align-items:center;justify-content:center;";
  const canvas = document.createElement("canvas");
  canvas.style.cssText = "max-width:100%;max-height:100%;image-rendering:auto;";
  canvas.width = 1;
  canvas.height = 1;
  element.appendChild(canvas);
  const state = { node, element, canvas, frames: [], index: 0, fps: 8, timer: null, sheets: 0, draws: 0,
                  shown: new Set(), aspect: 9 / 16, step: 0 };
  const widget = node.addDOMWidget(WIDGET_NAME, "i2vgen_preview", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => 96,
  });
  widget.serialize = false;
  state.widget = widget;
  node.__i2vgenPreview = state;
  node.setSize?.([Math.max(node.size[0], 256), Math.max(node.size[1], node.computeSize?.()[1] ?? 0)]);
  return state;
}

function stop(state) {
  if (state.timer) {
    clearInterval(state.timer);
    state.timer = null;
  }
}

function draw(state) {
  const count = state.frames.length;
  if (!state.node.graph) {
    stop(state); // the node was removed from its graph: stop playing
    return;
  }
  if (!count) {
    return;
  }
  const index = state.index % count;
  const frame = state.frames[index];
  const ctx = state.canvas.getContext("2d");
  ctx.clearRect(0, 0, state.canvas.width, state.canvas.height);
  ctx.drawImage(frame, 0, 0, state.canvas.width, state.canvas.height);
  state.shown.add(index);
  state.draws += 1;
  state.element.dataset.frame = String(index);
  state.element.dataset.shown = String(state.shown.size);
  state.index = index + 1;
}

async function showSheet(node, layout, blob) {
  const state = previewState(node);
  const sheet = await createImageBitmap(blob);
  const width = Math.floor(sheet.width / layout.cols);
  const height = Math.floor(sheet.height / layout.rows);
  const frames = await Promise.all(
    Array.from({ length: layout.frames }, (_, i) =>
      createImageBitmap(sheet, (i % layout.cols) * width, Math.floor(i / layout.cols) * height, width, height)),
  );
  sheet.close?.();
  for (const old of state.frames) {
    old.close?.();
  }
  state.frames = frames;
  state.sheets += 1;
  state.step = layout.step;
  state.fps = layout.fps || 8;
  state.aspect = height / Math.max(1, width);
  if (state.canvas.width !== width || state.canvas.height !== height) {
    // upscale tiny latent-sized frames on the canvas itself so they are not a blur of a few pixels
    const scale = Math.max(1, Math.floor(256 / Math.max(1, width)));
    state.canvas.width = width * scale;
    state.canvas.height = height * scale;
  }
  Object.assign(state.element.dataset, {
    frames: String(frames.length), sheets: String(state.sheets), step: String(layout.step),
    frameWidth: String(width), frameHeight: String(height),
  });
  state.element.style.display = "flex";
  if (!state.timer) {
    state.timer = setInterval(() => draw(state), 1000 / state.fps);
  }
  draw(state);
  node.setDirtyCanvas?.(true, true);
}

function takeLayout(nodeId) {
  const at = pendingLayouts.findIndex((layout) => String(layout.node) === String(nodeId));
  return at < 0 ? null : pendingLayouts.splice(at, 1)[0];
}

registerOnce({
  name: EXTENSION_NAME,
  settings: [
    {
      id: SETTING_ID,
      category: ["I2VGen-XL", "Previews", "Animated preview"],
      name: "Animated preview of every frame while sampling",
      tooltip: "Plays all frames of the video being sampled on the sampler node (I2VGen-XL models only). Off: " +
        "ComfyUI's preview of the first frame.",
      type: "boolean",
      defaultValue: true,
      // called before the store holds the new value: send the value it is given
      onChange: (value) => {
        syncSetting(true, value);
      },
    },
  ],
  async setup() {
    api.addEventListener("status", () => syncSetting());
    api.addEventListener("reconnected", () => syncSetting(true));
    api.addEventListener(EVENT, ({ detail }) => {
      pendingLayouts.push(detail);
      if (pendingLayouts.length > 64) {
        pendingLayouts.shift();
      }
    });
    api.addEventListener("b_preview_with_metadata", ({ detail }) => {
      if (detail?.displayNodeId !== SHEET_NODE_ID) {
        return;
      }
      const layout = takeLayout(detail.nodeId);
      const node = layout ? findNode(detail.nodeId) : null;
      if (!node || !settingValue()) {
        return;
      }
      showSheet(node, layout, detail.blob).catch((err) => console.warn(`${EXTENSION_NAME}: bad preview`, err));
    });
    syncSetting(true);
  },
});
