// I2VGen-XL node pack: on-node help for missing model files, before a run.
//
// For I2VGen-XL Model Loader, and for ComfyUI's CLIPLoader / CLIPVisionLoader / VAELoader holding one of the pack's
// files (or carrying it in properties.models, as the shipped workflows do), when the file list is empty or the chosen
// file is not on the server, the node shows which file to get, from which public repository and into which
// ComfyUI/models/ folder. The table comes from the server (GET /i2vgen-xl/model_files = i2vgen_core/model_files.py).
import { app } from "../../scripts/app.js";
import { wrapText } from "./common.js";
import { api } from "../../scripts/api.js";

const EXTENSION_NAME = "I2VGenXL.ModelHelp";
const ROUTE = "/i2vgen-xl/model_files";
const WIDGETS = {
  I2VGenXLModelLoader: "unet_name",
  CLIPLoader: "clip_name",
  CLIPVisionLoader: "clip_name",
  VAELoader: "vae_name",
};
const COLOR = "#e8a23a";

let table = null; // {files: [...]} once fetched

async function loadTable() {
  try {
    const response = await api.fetchApi(ROUTE);
    table = response.ok ? await response.json() : { files: [] };
  } catch {
    table = { files: [] };
  }
  app.graph?.setDirtyCanvas?.(true, true);
}

function basename(name) {
  return String(name ?? "").split(/[\\/]/).pop();
}

function hintFor(file) {
  return `get ${file.path} from huggingface.co/${file.repo} into models/${file.folder}/ as ${file.name}`;
}

// The help lines for a node, or [] when nothing is missing (exported on window for the browser test).
function missingHelp(node) {
  const widgetName = WIDGETS[node.type] ?? WIDGETS[node.comfyClass];
  const widget = widgetName && node.widgets?.find((w) => w.name === widgetName);
  if (!widget || !table) {
    return [];
  }
  const options = widget.options?.values;
  const list = Array.isArray(options) ? options : typeof options === "function" ? options() : [];
  const value = widget.value;
  if (list.length && list.includes(value)) {
    return [];
  }
  const files = table.files ?? [];
  const ours = node.type === "I2VGenXLModelLoader";
  const declared = (node.properties?.models ?? []).find((m) => m?.name === value);
  let entry = files.find((f) => f.name === basename(value));
  if (!entry && declared) {
    entry = { name: declared.name, folder: declared.directory, path: declared.url, repo: "" };
  }
  if (!entry && !ours) {
    return []; // not one of the pack's files: leave other packs' nodes alone
  }
  const head = list.length
    ? `Missing: ${value} is not in models/${entry?.folder ?? "diffusion_models"}/`
    : `No file in models/${entry?.folder ?? "diffusion_models"}/ yet`;
  if (entry?.repo) {
    return [head, hintFor(entry)];
  }
  if (entry) {
    return [head, `get it from ${entry.path} into models/${entry.folder}/`];
  }
  return [head, ...files.filter((f) => f.role === "unet").map(hintFor)];
}

function alreadyRegistered() {
  return Boolean(app.extensions?.some?.((extension) => extension.name === EXTENSION_NAME));
}

if (!alreadyRegistered()) {
  window.I2VGenXLModelHelp = { missingHelp };
  app.registerExtension({
    name: EXTENSION_NAME,
    async setup() {
      await loadTable();
    },
    async beforeRegisterNodeDef(nodeType, nodeData) {
      if (!(nodeData?.name in WIDGETS)) {
        return;
      }
      const onDrawForeground = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const result = onDrawForeground?.apply(this, arguments);
        if (this.flags?.collapsed) {
          return result;
        }
        const lines = missingHelp(this);
        this.i2vgenMissingHelp = lines;
        if (!lines.length) {
          return result;
        }
        ctx.save();
        ctx.font = "11px sans-serif";
        ctx.fillStyle = COLOR;
        ctx.textAlign = "left";
        // inside the node, under its widgets: grow the node to fit the wrapped lines
        const rows = lines.flatMap((line) => wrapText(ctx, line, this.size[0] - 12));
        const top = this.computeSize?.()[1] ?? this.size[1];
        const need = top + 6 + 13 * rows.length;
        if (this.size[1] < need) {
          this.setSize?.([this.size[0], need]);
        }
        rows.forEach((row, i) => ctx.fillText(row, 6, top + 13 * (i + 1)));
        ctx.restore();
        return result;
      };
    },
  });
}
