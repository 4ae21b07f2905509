// I2VGen-XL node pack: shows the estimated peak GPU memory of a run under the nodes that set it up
// (I2VGen-XL Conditioning, I2VGen-XL Refine Sampler). The estimate is computed in Python (i2vgen_core/memory.py, the
// single source of truth) and arrives as the node's UI output {"text": [...]} when it executes; a warning line
// (the run exceeds the device's free memory, with what to change) is drawn in amber.
import { app } from "../../scripts/app.js";
import { wrapText } from "./text.js";

const EXTENSION_NAME = "I2VGenXL.MemoryEstimate";
const NODES = new Set(["I2VGenXLConditioning", "I2VGenXLRefineSampler"]);
const LINE = 13;

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
      const onDrawForeground = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const result = onDrawForeground?.apply(this, arguments);
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
