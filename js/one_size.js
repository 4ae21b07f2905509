// I2VGen-XL node pack: one size per stage.
//
// I2VGen-XL Conditioning takes its video size from image_latent when that input is connected (nodes/encode.py:
// size_from_image_latent), so its own width/height are then ignored. This extension greys those two widgets out
// while the input is linked and writes the size the video will get ("size from image_latent: 1280x704", read from
// the I2VGen-XL Detail Encode it comes from), so the size is typed once, on Detail Encode.
import { app } from "../../scripts/app.js";
import { conditioningSize, widget } from "./common.js";

const EXTENSION_NAME = "I2VGenXL.OneSize";
const NODE = "I2VGenXLConditioning";

// {linked, text} for a Conditioning node (exported on window for the browser test).
function sizeRule(node) {
  const size = conditioningSize(node);
  if (!size.linked) {
    return { linked: false, text: null };
  }
  return { linked: true, text: size.width ? `size from image_latent: ${size.width}x${size.height}` : "size from image_latent" };
}

function alreadyRegistered() {
  return Boolean(app.extensions?.some?.((extension) => extension.name === EXTENSION_NAME));
}

if (!alreadyRegistered()) {
  window.I2VGenXLOneSize = { sizeRule };
  app.registerExtension({
    name: EXTENSION_NAME,
    async beforeRegisterNodeDef(nodeType, nodeData) {
      if (nodeData?.name !== NODE) {
        return;
      }
      const onDrawForeground = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const result = onDrawForeground?.apply(this, arguments);
        const rule = sizeRule(this);
        for (const name of ["width", "height"]) {
          const w = widget(this, name);
          if (w) {
            w.disabled = rule.linked;
          }
        }
        if (rule.text && !this.flags?.collapsed) {
          ctx.save();
          ctx.font = "11px sans-serif";
          ctx.fillStyle = "#8a9";
          ctx.textAlign = "right";
          ctx.fillText(rule.text, this.size[0] - 8, -6);
          ctx.restore();
        }
        return result;
      };
    },
  });
}
