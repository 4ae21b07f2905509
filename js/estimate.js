// I2VGen-XL node pack: shows the estimated peak memory of a run under the nodes that set it up (I2VGen-XL
// Conditioning, I2VGen-XL Refine Sampler). The estimate is computed in Python (i2vgen_core/memory.py, the single
// source of truth); a warning line (the run exceeds the device's free memory, with what to change) is drawn in amber.
// * Before a run, I2VGen-XL Conditioning asks the server (GET /i2vgen-xl/memory_estimate) whenever its size, length,
//   batch or links change, so the warning is there while the graph is edited.
// * When a node executes, its UI output {"text": [...]} (the same formula, for the run that happened) replaces it;
//   the Refine Sampler, whose latent size is only known when it runs, shows it from then on.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { conditioningSize, linkedSource, widget, wrapText } from "./common.js";

const EXTENSION_NAME = "I2VGenXL.MemoryEstimate";
const NODES = new Set(["I2VGenXLConditioning", "I2VGenXLRefineSampler"]);
const LINE = 13;
const ROUTE = "/i2vgen-xl/memory_estimate";
const LIVE_NODE = "I2VGenXLConditioning";
const DEBOUNCE_MS = 250;

// The query for a Conditioning node's estimate as it stands, or null when its size is not known before a run.
function liveQuery(node) {
  const size = conditioningSize(node);
  if (!size.width || !size.height) {
    return null;
  }
  const params = new URLSearchParams({
    width: String(size.width), height: String(size.height),
    length: String(widget(node, "length")?.value ?? 16), batch_size: String(widget(node, "batch_size")?.value ?? 1),
    image_latent: linkedSource(node, "image_latent") ? "1" : "0",
    clip_vision_output: linkedSource(node, "clip_vision_output") ? "1" : "0",
  });
  return params.toString();
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
      const response = await api.fetchApi(`${ROUTE}?${query}`);
      const body = await response.json();
      if (node.i2vgenEstimateQuery !== query) {
        return; // changed again meanwhile
      }
      node.i2vgenMemoryText = response.ok ? body.lines.map(String) : [`WARNING: ${body.error ?? response.status}`];
      node.setDirtyCanvas?.(true, true);
    } catch {
      // an older server without the route: the estimate comes with the run
    }
  }, DEBOUNCE_MS);
}

if (!app.extensions?.some?.((extension) => extension.name === EXTENSION_NAME)) {
  app.registerExtension({
    name: EXTENSION_NAME,
    async beforeRegisterNodeDef(nodeType, nodeData) {
      if (!NODES.has(nodeData?.name)) {
        return;
      }
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (message) {
        const result = onExecuted?.apply(this, arguments);
        if (Array.isArray(message?.text)) {
          this.i2vgenMemoryText = message.text.map(String);
          this.setDirtyCanvas?.(true, true);
        }
        return result;
      };
      const live = nodeData.name === LIVE_NODE;
      const onDrawForeground = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const result = onDrawForeground?.apply(this, arguments);
        if (live) {
          refreshLive(this); // cheap when nothing changed: compares the query string
        }
        if (this.flags?.collapsed || !this.i2vgenMemoryText?.length) {
          return result;
        }
        ctx.save();
        ctx.font = "11px sans-serif";
        ctx.textAlign = "left";
        let y = this.size[1] + LINE;
        for (const entry of this.i2vgenMemoryText) {
          ctx.fillStyle = entry.startsWith("WARNING") ? "#e8a33d" : "#9ab";
          for (const line of wrapText(ctx, entry, Math.max(200, this.size[0]))) {
            ctx.fillText(line, 0, y);
            y += LINE;
          }
        }
        ctx.restore();
        return result;
      };
    },
  });
}
