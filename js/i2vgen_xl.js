// I2VGen-XL node pack: small frontend helpers (no effect on what the graph computes).
//  * gives the pack's nodes one colour so the cascade is easy to follow on the canvas;
//  * on "I2VGen-XL Latent Upscale", shows the size the MS-Vid2Vid-XL refiner will really get when
//    snap_for_refiner is on (width a multiple of 64, latent height = 2 mod 8: 720 stays 720, 704 becomes 720).
// ComfyUI may serve this file twice (WEB_DIRECTORY under the folder name, pyproject's [tool.comfy] web under the
// project name, whenever the two differ): the second copy must not register again, or the frontend logs
// "Extension named 'I2VGenXL.NodeHelpers' already registered" as an error.
import { app } from "../../scripts/app.js";
import { snapForRefiner } from "./common.js";

const EXTENSION_NAME = "I2VGenXL.NodeHelpers";
const NODE_PREFIX = "I2VGenXL";
const COLOR = "#233047";
const BGCOLOR = "#1b2433";

function widgetValue(node, name) {
  const widget = node.widgets?.find((w) => w.name === name);
  return widget ? widget.value : undefined;
}

function alreadyRegistered() {
  return Boolean(app.extensions?.some?.((extension) => extension.name === EXTENSION_NAME));
}

if (!alreadyRegistered()) {
  app.registerExtension({
    name: EXTENSION_NAME,
    async beforeRegisterNodeDef(nodeType, nodeData) {
      if (!nodeData?.name?.startsWith(NODE_PREFIX)) {
        return;
      }
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        this.color = this.color ?? COLOR;
        this.bgcolor = this.bgcolor ?? BGCOLOR;
        return result;
      };

      if (nodeData.name !== "I2VGenXLLatentUpscale") {
        return;
      }
      const onDrawForeground = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const result = onDrawForeground?.apply(this, arguments);
        if (this.flags?.collapsed || !widgetValue(this, "snap_for_refiner")) {
          return result;
        }
        const width = Number(widgetValue(this, "width"));
        const height = Number(widgetValue(this, "height"));
        if (!Number.isFinite(width) || !Number.isFinite(height) || width <= 0 || height <= 0) {
          return result;
        }
        const [w, h] = snapForRefiner(width, height);
        const text = w === width && h === height ? `refiner size ${w}x${h}` : `snapped to ${w}x${h} for the refiner`;
        ctx.save();
        ctx.font = "11px sans-serif";
        ctx.fillStyle = w === width && h === height ? "#8a9" : "#db8";
        ctx.textAlign = "right";
        ctx.fillText(text, this.size[0] - 8, -6);
        ctx.restore();
        return result;
      };
    },
  });
}
