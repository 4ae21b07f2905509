// I2VGen-XL node pack: one size per stage.
//
// I2VGen-XL Conditioning takes its video size from image_latent when that input is connected (nodes/encode.py:
// size_from_image_latent), so its own width/height are then ignored. This extension greys those two widgets out
// while the input is linked and shows the size the video will get ("size from image_latent: 1280x704", read from
// the I2VGen-XL Detail Encode it comes from), so the size is typed once, on Detail Encode.
import { conditioningSize, onRefresh, registerOnce, setInfo, widget } from "./common.js";

const EXTENSION_NAME = "I2VGenXL.OneSize";
const NODE = "I2VGenXLConditioning";

// {linked, text} for a Conditioning node.
export function sizeRule(node) {
  const size = conditioningSize(node);
  if (!size.linked) {
    return { linked: false, text: null };
  }
  return { linked: true, text: size.width ? `size from image_latent: ${size.width}x${size.height}` : "size from image_latent" };
}

registerOnce({
  name: EXTENSION_NAME,
  setup() {
    onRefresh((node) => node.type === NODE, (node) => {
      const rule = sizeRule(node);
      for (const name of ["width", "height"]) {
        const w = widget(node, name);
        if (w && Boolean(w.disabled) !== rule.linked) {
          w.disabled = rule.linked;
          node.setDirtyCanvas?.(true, true);
        }
      }
      setInfo(node, "size", rule.text ? [{ text: rule.text, tone: "ok" }] : []);
    });
  },
});
