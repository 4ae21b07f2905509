// I2VGen-XL node pack: shows the estimated peak memory of a run on the nodes that set it up (I2VGen-XL
// Conditioning, I2VGen-XL Refine Sampler). The estimate is computed in Python (i2vgen_core/memory.py, the single
// source of truth); a warning line (the run exceeds the device's free memory, with what to change) is shown in amber.
// * Before a run, both ask the server (GET /i2vgen-xl/memory_estimate[/refine], nodes/estimate_routes.py) whenever
//   what they set up changes, so the warning is there while the graph is edited. Conditioning: its size (or the
//   Detail Encode's), length, batch and links. Refine Sampler: the video it gets, followed up the graph through
//   Latent Upscale (with the refiner snap), Extend and the samplers to the Conditioning that made it, its
//   context_frames and cfg, and its model loader's file, weight_dtype and attention. Where the graph does not tell
//   (e.g. a video loaded from a file), nothing is shown until the node runs.
// * When a node executes, its UI output {"text": [...]} (the same formula, for the run that happened) replaces it.
import { api } from "../../scripts/api.js";
import { conditioningSize, findNode, linkedSource, onRefresh, registerOnce, setInfo, snapForRefiner, widget } from
  "./common.js";

const EXTENSION_NAME = "I2VGenXL.MemoryEstimate";
const NODES = new Set(["I2VGenXLConditioning", "I2VGenXLRefineSampler"]);
const ROUTE = "/i2vgen-xl/memory_estimate";
const REFINE_ROUTE = "/i2vgen-xl/memory_estimate/refine";
const DEBOUNCE_MS = 250;
const SAMPLERS = new Set(["I2VGenXLSampler", "I2VGenXLRefineSampler", "KSampler", "KSamplerAdvanced"]);

const value = (node, name, fallback = null) => widget(node, name)?.value ?? fallback;

// {batch, frames, width, height} of the video latent `node` outputs, as far as the graph tells before a run, or null.
function videoShape(node, depth = 0) {
  if (!node || depth > 64) {
    return null;
  }
  if (node.type === "I2VGenXLConditioning") {
    const size = conditioningSize(node);
    return size.width ? { batch: value(node, "batch_size", 1), frames: value(node, "length"), width: size.width,
                          height: size.height } : null;
  }
  if (SAMPLERS.has(node.type)) {
    return videoShape(linkedSource(node, "latent_image"), depth + 1);
  }
  if (node.type === "I2VGenXLExtend") {
    const before = videoShape(linkedSource(node, "samples"), depth + 1);
    return before ? { ...before, frames: before.frames + value(node, "length", 16) - 1 } : null;
  }
  if (node.type === "I2VGenXLLatentUpscale") {
    const before = videoShape(linkedSource(node, "samples"), depth + 1);
    let [width, height] = [value(node, "width"), value(node, "height")];
    if (value(node, "snap_for_refiner")) {
      [width, height] = snapForRefiner(width, height);
    }
    const frames = value(node, "frames", 0) > 0 ? value(node, "frames") : before?.frames;
    return frames ? { batch: before?.batch ?? 1, frames, width, height } : null;
  }
  return null;
}

// The I2VGen-XL Model Loader a MODEL input comes from (through model-patch nodes), or null.
function modelLoader(node, depth = 0) {
  const source = node && depth < 64 ? linkedSource(node, "model") : null;
  if (!source) {
    return null;
  }
  return source.type === "I2VGenXLModelLoader" ? source : modelLoader(source, depth + 1);
}

// The route and query for `node`'s estimate as the graph stands, or null when it is not known before a run.
function liveQuery(node) {
  if (node.type === "I2VGenXLConditioning") {
    const size = conditioningSize(node);
    if (!size.width || !size.height) {
      return null;
    }
    return `${ROUTE}?${new URLSearchParams({
      width: String(size.width), height: String(size.height),
      length: String(value(node, "length", 16)), batch_size: String(value(node, "batch_size", 1)),
      image_latent: linkedSource(node, "image_latent") ? "1" : "0",
      clip_vision_output: linkedSource(node, "clip_vision_output") ? "1" : "0",
    })}`;
  }
  const video = videoShape(linkedSource(node, "latent_image"));
  if (!video?.width || !video?.height || !video.frames) {
    return null;
  }
  const loader = modelLoader(node);
  return `${REFINE_ROUTE}?${new URLSearchParams({
    width: String(video.width), height: String(video.height), frames: String(video.frames),
    batch_size: String(video.batch), context_frames: String(value(node, "context_frames", 0)),
    cfg: String(value(node, "cfg", 7.5)), unet_name: String(loader ? value(loader, "unet_name", "") : ""),
    weight_dtype: String(loader ? value(loader, "weight_dtype", "auto") : "auto"),
    attention: String(loader ? value(loader, "attention", "auto") : "auto"),
  })}`;
}

// The estimate's lines as on-node text: a WARNING in amber, the rest muted.
function showLines(node, lines) {
  node.i2vgenMemoryText = lines;
  setInfo(node, "estimate", lines.map((text) => ({ text, tone: text.startsWith("WARNING") ? "warn" : "info" })));
}

// Fetch the estimate for `node` when its query changed since the last one (debounced).
function refreshLive(node) {
  const query = liveQuery(node);
  if (!query || query === node.i2vgenEstimateQuery) {
    return;
  }
  node.i2vgenEstimateQuery = query;
  clearTimeout(node.i2vgenEstimateTimer);
  node.i2vgenEstimateTimer = setTimeout(async () => {
    try {
      const response = await api.fetchApi(query);
      const body = await response.json();
      if (node.i2vgenEstimateQuery !== query) {
        return; // changed again meanwhile
      }
      showLines(node, response.ok ? body.lines.map(String) : [`WARNING: ${body.error ?? response.status}`]);
    } catch {
      // an older server without the route: the estimate comes with the run
    }
  }, DEBOUNCE_MS);
}

registerOnce({
  name: EXTENSION_NAME,
  setup() {
    onRefresh((node) => NODES.has(node.type), refreshLive);
    // a node's UI output {"text": [...]} after it ran: the estimate of the run that happened
    api.addEventListener("executed", ({ detail }) => {
      const node = findNode(detail?.display_node ?? detail?.node);
      if (node && NODES.has(node.type) && Array.isArray(detail?.output?.text)) {
        showLines(node, detail.output.text.map(String));
      }
    });
  },
});
