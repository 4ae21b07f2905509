// I2VGen-XL node pack: on-node help for missing model files, before a run.
//
// For I2VGen-XL Model Loader, and for ComfyUI's CLIPLoader / CLIPVisionLoader / VAELoader holding one of the pack's
// files (or carrying it in properties.models, as the shipped workflows do), when the file list is empty or the chosen
// file is not on the server, the node shows (in its on-node text, js/common.js setInfo) which file to get, from which public repository and into which
// ComfyUI/models/ folder. The table comes from the server (GET /i2vgen-xl/model_files = i2vgen_core/weights/catalog.py).
import { api } from "../../scripts/api.js";
import { onRefresh, registerOnce, setInfo } from "./common.js";

const EXTENSION_NAME = "I2VGenXL.ModelHelp";
const ROUTE = "/i2vgen-xl/model_files";
const WIDGETS = {
  I2VGenXLModelLoader: "unet_name",
  CLIPLoader: "clip_name",
  CLIPVisionLoader: "clip_name",
  VAELoader: "vae_name",
};

let table = null; // {files: [...]} once fetched

async function loadTable() {
  try {
    const response = await api.fetchApi(ROUTE);
    table = response.ok ? await response.json() : { files: [] };
  } catch {
    table = { files: [] };
  }
}

function basename(name) {
  return String(name ?? "").split(/[\\/]/).pop();
}

function hintFor(file) {
  return `get ${file.path} from huggingface.co/${file.repo} into models/${file.folder}/ as ${file.name}`;
}

// The help lines for a node, or [] when nothing is missing.
export function missingHelp(node) {
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

registerOnce({
  name: EXTENSION_NAME,
  async setup() {
    await loadTable();
    onRefresh((node) => (node.type in WIDGETS) || (node.comfyClass in WIDGETS), (node) => {
      setInfo(node, "help", missingHelp(node).map((text) => ({ text, tone: "help" })));
    });
  },
});
